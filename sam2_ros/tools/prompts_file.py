"""Reading prompts files (the YAML format shared by the demo and the evaluation tool).

::

    prompts:
      - {frame: 0, object_id: 1, points: [[x, y], [x, y]], labels: [1, 0]}
      - {frame: 0, object_id: 2, box: [x0, y0, x1, y1]}
      - {frame: 12, object_id: 3, mask: path/to/mask.png}
      - {stamp: 1700000000.250000000, object_id: 4, points: [[x, y]]}
      - {frame: 0, text: "person . red cup"}

``frame`` is the index of the image in the video or topic; ``stamp`` (``sec.nanosec``) may
replace it where images carry time stamps. ``labels`` default to 1 (foreground) for every point.
A ``mask`` path is relative to the prompts file; nonzero pixels are the object. A ``text`` entry
is a text prompt for the tracker's detector (phrases separated by " . ", "" stops detecting): it
has no ``object_id``, the detector numbers the objects it starts; ``label`` gives an object
prompt its class label.
No rclpy here, and torch only when needed: :meth:`PromptSpec.to_prompt` imports :class:`sam2_ros.Prompt`
lazily, and a text entry is checked by :func:`sam2_ros.model.text_query.parse_text_prompt`.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np
import yaml

__all__ = ['PromptSpec', 'PromptsFileError', 'load_prompts', 'parse_prompts']


class PromptsFileError(ValueError):
    """A prompts file that cannot be read or is malformed (the message says where and why)."""


@dataclasses.dataclass
class PromptSpec:
    """One prompt of a prompts file."""

    object_id: int | None                 # None for a text prompt
    frame: int | None = None              # index of the image, or
    stamp: tuple[int, int] | None = None  # (sec, nanosec) of the image
    points: np.ndarray | None = None      # (K, 2) float32 x, y pixels
    labels: np.ndarray | None = None      # (K,) int32, 1 foreground / 0 background
    box: np.ndarray | None = None         # (4,) float32 x0, y0, x1, y1
    mask_path: pathlib.Path | None = None
    text: str | None = None               # a text prompt ("person . red cup"; "" stops detecting)
    label: str | None = None              # the object's class label

    def load_mask(self) -> np.ndarray | None:
        """The mask prompt as an (H, W) bool array (None without a mask)."""
        if self.mask_path is None:
            return None
        import cv2

        image = cv2.imread(str(self.mask_path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise PromptsFileError(f'object {self.object_id}: cannot read mask {self.mask_path}')
        if image.ndim == 3:
            image = image.max(axis=2)
        return image > 0

    def to_prompt(self, frame_shape: tuple[int, ...] | None = None):
        """A :class:`sam2_ros.Prompt`, checked against the frame's (H, W, ...) shape if given."""
        from sam2_ros import Prompt

        if self.text is not None:
            return Prompt(text=self.text)
        mask = self.load_mask()
        if frame_shape is not None:
            height, width = frame_shape[:2]
            if mask is not None and mask.shape != (height, width):
                raise PromptsFileError(
                    f'object {self.object_id}: mask {self.mask_path} is {mask.shape[1]}x'
                    f'{mask.shape[0]}, the frames are {width}x{height}')
            for name, xy in (('points', self.points), ('box', self.box)):
                if xy is None:
                    continue
                xy = xy.reshape(-1, 2)
                if (xy < 0).any() or (xy[:, 0] > width).any() or (xy[:, 1] > height).any():
                    raise PromptsFileError(
                        f'object {self.object_id}: {name} {xy.tolist()} outside the '
                        f'{width}x{height} frame')
        return Prompt(obj_id=self.object_id,
                      points=None if self.points is None else self.points.tolist(),
                      labels=None if self.labels is None else self.labels.tolist(),
                      box=None if self.box is None else self.box.tolist(),
                      mask=mask, label=self.label)


def _parse_stamp(value: Any, where: str) -> tuple[int, int]:
    text = str(value).strip()
    sec, _, nsec = text.partition('.')
    try:
        sec_i = int(sec)
        nsec_i = int((nsec + '000000000')[:9]) if nsec else 0
    except ValueError:
        raise PromptsFileError(f'{where}: stamp must be sec.nanosec, got {value!r}') from None
    if sec_i < 0:
        raise PromptsFileError(f'{where}: negative stamp {value!r}')
    return sec_i, nsec_i


def _array(value: Any, shape_tail: tuple[int, ...], dtype, where: str, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise PromptsFileError(f'{where}: {name} must be numbers, got {value!r}') from None
    if shape_tail == (2,) and array.ndim == 1 and array.shape[0] == 2:
        array = array[None]  # a single point [x, y]
    if array.ndim != len(shape_tail) + (0 if shape_tail == (4,) else 1) or \
            array.shape[array.ndim - len(shape_tail):] != shape_tail or array.size == 0:
        expected = 'a list of [x, y]' if shape_tail == (2,) else '[x0, y0, x1, y1]'
        raise PromptsFileError(f'{where}: {name} must be {expected}, got {value!r}')
    if not np.isfinite(array).all():
        raise PromptsFileError(f'{where}: {name} must be finite, got {value!r}')
    return array


def _frame_or_stamp(spec: PromptSpec, entry: dict, where: str) -> None:
    if ('frame' in entry) == ('stamp' in entry):
        raise PromptsFileError(f'{where}: give exactly one of frame and stamp')
    if 'frame' in entry:
        frame = entry['frame']
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise PromptsFileError(f'{where}: frame must be an integer >= 0, got {frame!r}')
        spec.frame = frame
    else:
        spec.stamp = _parse_stamp(entry['stamp'], where)


def _text_spec(entry: dict, where: str) -> PromptSpec:
    """A text prompt entry: ``{frame: 0, text: "person . red cup"}`` (checked as the tracker
    checks it: phrases, length, characters)."""
    from sam2_ros.model.text_query import TextPromptError, parse_text_prompt

    other = set(entry) - {'frame', 'stamp', 'text'}
    if other:
        raise PromptsFileError(f'{where}: a text prompt takes frame or stamp and text only, not {sorted(other)} '
                               '(the detector numbers and labels the objects it starts)')
    text = entry['text']
    if text is None:
        text = ''
    if not isinstance(text, str):
        raise PromptsFileError(f'{where}: text must be a string of phrases separated by " . ", got {text!r}')
    try:
        parse_text_prompt(text)
    except TextPromptError as error:
        raise PromptsFileError(f'{where}: {error}') from None
    spec = PromptSpec(object_id=None, text=text)
    _frame_or_stamp(spec, entry, where)
    return spec


def parse_prompts(data: Any, base_dir: pathlib.Path | str = '.') -> list[PromptSpec]:
    """Validate a loaded prompts document; returns the prompts in file order."""
    base_dir = pathlib.Path(base_dir)
    if not isinstance(data, dict) or not isinstance(data.get('prompts'), list):
        raise PromptsFileError("a prompts file holds a list under the key 'prompts'")
    specs = []
    for index, entry in enumerate(data['prompts']):
        where = f'prompts[{index}]'
        if not isinstance(entry, dict):
            raise PromptsFileError(f'{where}: must be a mapping, got {entry!r}')
        unknown = set(entry) - {'frame', 'stamp', 'object_id', 'points', 'labels', 'box', 'mask', 'text', 'label'}
        if unknown:
            raise PromptsFileError(f'{where}: unknown keys {sorted(unknown)} (known: frame or stamp, '
                                   'object_id, points and labels, box, mask, label; or text)')
        if 'text' in entry:
            specs.append(_text_spec(entry, where))
            continue
        obj_id = entry.get('object_id')
        if isinstance(obj_id, bool) or not isinstance(obj_id, int) or not 1 <= obj_id <= 65535:
            raise PromptsFileError(f'{where}: object_id must be an integer in 1..65535, '
                                   f'got {obj_id!r}')
        spec = PromptSpec(object_id=obj_id)
        _frame_or_stamp(spec, entry, where)
        if entry.get('points') is not None:
            spec.points = _array(entry['points'], (2,), np.float32, where, 'points')
            count = spec.points.shape[0]
            labels = entry.get('labels')
            if labels is None:
                spec.labels = np.ones(count, np.int32)
            else:
                spec.labels = np.asarray(labels).reshape(-1)
                if spec.labels.shape[0] != count or not np.isin(spec.labels, (0, 1)).all():
                    raise PromptsFileError(
                        f'{where}: labels must be {count} values of 1 (foreground) or 0 '
                        f'(background), got {labels!r}')
                spec.labels = spec.labels.astype(np.int32)
        elif entry.get('labels') is not None:
            raise PromptsFileError(f'{where}: labels without points')
        if entry.get('box') is not None:
            spec.box = _array(entry['box'], (4,), np.float32, where, 'box')
            if spec.box[2] <= spec.box[0] or spec.box[3] <= spec.box[1]:
                raise PromptsFileError(f'{where}: box must be [x0, y0, x1, y1] with x1 > x0 and '
                                       f'y1 > y0, got {entry["box"]!r}')
        if entry.get('mask') is not None:
            spec.mask_path = base_dir / str(entry['mask'])
        if spec.points is None and spec.box is None and spec.mask_path is None:
            raise PromptsFileError(f'{where}: needs points, a box or a mask')
        if entry.get('label') is not None:
            spec.label = entry['label']
            if not isinstance(spec.label, str) or not spec.label.strip():
                raise PromptsFileError(f'{where}: label must be a non-empty string, got {entry["label"]!r}')
        specs.append(spec)
    return specs


def load_prompts(path: pathlib.Path | str) -> list[PromptSpec]:
    """Read and validate a prompts YAML file (mask paths are relative to it)."""
    path = pathlib.Path(path)
    try:
        with open(path, encoding='utf-8') as stream:
            data = yaml.safe_load(stream)
    except OSError as error:
        raise PromptsFileError(f'cannot read prompts file {path}: {error}') from None
    except yaml.YAMLError as error:
        raise PromptsFileError(f'prompts file {path} is not valid YAML: {error}') from None
    try:
        return parse_prompts(data, path.parent)
    except PromptsFileError as error:
        raise PromptsFileError(f'{path}: {error} (the format: README.md, "Prompts files")') from None
