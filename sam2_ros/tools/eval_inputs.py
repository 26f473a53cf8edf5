"""What an evaluation is measured against: the prompts, placed on the frames of the bag (from a
prompts file or the ImageMarkers recorded in the bag), and the ground truth (a label-image topic
of the bag, or a folder of label PNGs)."""
from __future__ import annotations

import dataclasses
import pathlib

import cv2
import numpy as np

from sam2_ros.tools import bagio
from sam2_ros.tools.labelpng import LabelPngError, read_label_png
from sam2_ros.tools.prompts_file import PromptSpec


class EvaluationError(ValueError):
    """Bad input: the message says what and why (exit code 2)."""


# --- prompts --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Action:
    kind: str              # 'prompt' or 'remove'
    object_id: int | None  # None: a text prompt
    spec: PromptSpec | None = None
    source: str = ''


def stamp_ns(stamp: tuple[int, int]) -> int:
    return int(stamp[0]) * 1_000_000_000 + int(stamp[1])


def fmt_stamp(ns: int) -> str:
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


def schedule_prompts(specs: list[PromptSpec], markers: list[bagio.MarkerPrompt],
                     frames: list[bagio.ImageFrame], truncated: bool) -> tuple[dict, list[str]]:
    """Map prompts to frame indices: ``({frame: [Action]}, warnings)``.

    YAML ``frame`` is the index in the topic, ``stamp`` must equal a frame's header stamp.
    Markers refer to the frame with their header stamp; a zero stamp means the latest frame
    received before the marker. Prompts past the last frame are an error unless
    ``--max-frames`` cut the topic short (then they are skipped with a warning)."""
    by_stamp = {f.header.stamp_ns: f.index for f in frames}
    last = frames[-1]
    out: dict[int, list[Action]] = {}
    warnings: list[str] = []

    def place(index: int | None, action: Action, what: str, beyond: bool) -> None:
        if index is None:
            if beyond and truncated:
                warnings.append(f'{what} is after the last evaluated frame: skipped')
                return
            raise EvaluationError(f'{what} matches no frame of the image topic')
        out.setdefault(index, []).append(action)

    for n, spec in enumerate(specs):
        what = f'prompt {n} (' + ('text' if spec.text is not None else f'object {spec.object_id}') + ')'
        if spec.frame is not None:
            index = spec.frame if spec.frame <= last.index else None
            beyond = True
            what += f' on frame {spec.frame}'
        else:
            ns = stamp_ns(spec.stamp)
            index = by_stamp.get(ns)
            beyond = ns > last.header.stamp_ns
            what += f' at stamp {fmt_stamp(ns)}'
            if index is None:
                near = min(frames, key=lambda f: abs(f.header.stamp_ns - ns))
                what += f' (nearest image stamp {fmt_stamp(near.header.stamp_ns)}, frame {near.index})'
        place(index, Action('prompt', spec.object_id, spec, 'yaml'), what, beyond)

    log_times = np.array([f.log_time for f in frames], np.int64)
    for marker in markers:
        ns = marker.header.stamp_ns
        what = f'ImageMarker prompt for object {marker.object_id} (stamp {fmt_stamp(ns)})'
        if ns == 0:
            k = int(np.searchsorted(log_times, marker.log_time, side='right')) - 1
            index, beyond = max(k, 0), False
            if truncated and marker.log_time > log_times[-1]:
                index, beyond = None, True
        else:
            index = by_stamp.get(ns)
            beyond = ns > last.header.stamp_ns
        if marker.action == bagio.MARKER_REMOVE:
            action = Action('remove', marker.object_id, None, 'marker')
        else:
            spec = PromptSpec(object_id=marker.object_id, frame=index, points=marker.points,
                              labels=marker.labels, box=marker.box)
            action = Action('prompt', marker.object_id, spec, 'marker')
        place(index, action, what, beyond)
    for index, actions in out.items():
        seen = set()
        for a in actions:
            if a.kind == 'prompt':
                if a.object_id in seen:
                    raise EvaluationError(f'frame {index}: two text prompts; put every phrase in one' if a.object_id
                                          is None else f'frame {index}: two prompts for object {a.object_id}; '
                                          'put all its points in one prompt')
                seen.add(a.object_id)
    return out, warnings


# --- ground truth -------------------------------------------------------------------------------

class GroundTruth:
    """Label images by frame index, kept PNG-compressed in memory."""

    def __init__(self, source: str):
        self.source = source
        self._png: dict[int, bytes] = {}
        self._paths: dict[int, pathlib.Path] = {}

    def __len__(self) -> int:
        return len(self._png) + len(self._paths)

    def frames(self) -> list[int]:
        return sorted(set(self._png) | set(self._paths))

    def put(self, index: int, label: np.ndarray) -> None:
        ok, buf = cv2.imencode('.png', label.astype(np.uint16))
        self._png[index] = buf.tobytes()

    def get(self, index: int) -> np.ndarray | None:
        if index in self._png:
            return cv2.imdecode(np.frombuffer(self._png[index], np.uint8), cv2.IMREAD_UNCHANGED)
        if index in self._paths:
            try:
                return read_label_png(self._paths[index])
            except LabelPngError as error:
                raise EvaluationError(str(error)) from None
        return None

    @classmethod
    def from_topic(cls, bag, topic: str, frames: list[bagio.ImageFrame]) -> 'GroundTruth':
        gt = cls(f'topic {topic}')
        by_stamp = {f.header.stamp_ns: f.index for f in frames}
        unmatched = 0
        for msg in bagio.iter_labels(bag, topic):
            index = by_stamp.get(msg.header.stamp_ns)
            if index is None:
                unmatched += 1
                continue
            gt.put(index, msg.image)
        if not len(gt):
            raise EvaluationError(f'no ground-truth label image on {topic} has the header stamp '
                                  f'of an image on the image topic ({unmatched} unmatched)')
        gt.unmatched = unmatched
        return gt

    @classmethod
    def from_dir(cls, directory, frames: list[bagio.ImageFrame]) -> 'GroundTruth':
        directory = pathlib.Path(directory)
        if not directory.is_dir():
            raise EvaluationError(f'--gt-dir {directory} is not a folder')
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() == '.png')
        if not files:
            raise EvaluationError(f'no PNG label images in {directory}')
        gt = cls(f'folder {directory}')
        numeric = all(p.stem.isdigit() for p in files)
        for pos, path in enumerate(files):
            index = int(path.stem) if numeric else pos
            if index <= frames[-1].index:
                gt._paths[index] = path
        gt.unmatched = len(files) - len(gt._paths)
        if not len(gt):
            raise EvaluationError(f'no label image in {directory} belongs to an evaluated frame')
        return gt
