"""Prompt messages -> tracker prompts, and when each prompt applies.

Messages (fields are read duck-typed, so this module is tested without ROS):

* ``visualization_msgs/ImageMarker`` on ``~/prompt``: ``id`` = object id (1 to 65535; 0 is the
  label images' background); ``action`` ADD (0) adds or refines, REMOVE (1) removes; ``type``
  POINTS (4): ``points[i].x, .y`` pixels and ``.z`` the label (1 foreground, 0 background);
  LINE_STRIP (1) or POLYGON (3) with exactly 2 points: a box (corners in any order); ``ns``: an
  optional class label; ``header.stamp``: the frame it refers to (zero: the latest).
* ``sensor_msgs/Image`` mono8 / mono16 on ``~/prompt_mask``: a label image, one mask prompt per
  object id present.
* ``geometry_msgs/Point`` on ``~/click``: a foreground click starting a new object.

Timing (:class:`PromptQueue`): a prompt stamped with a frame's stamp applies to that frame:
to a frame still waiting when it is tracked; to a frame already tracked while its features are
in the tracker's prompt buffer (the last ``prompt_buffer`` tracked frames: the node passes their
stamps to :meth:`PromptQueue.take`, which returns these prompts in ``Batch.past``; the tracker
applies them to that frame, as ``Tracker.prompt_past``, before the next frame). A prompt stamped
with a frame that is not buffered (older, or dropped by ``frame_policy: latest``) applies to the
next tracked frame, with a warning. A zero stamp means the latest frame received when the
prompt arrives (the one a person clicking on the camera image sees); with no frame received
yet, the next one. A prompt stamped ahead of every frame received waits for its frame, at most
``prompt_buffer`` tracked frames (a clock mismatch would otherwise hold it forever), then
applies with a warning.

Limits (a prompt flood must not grow memory or delay): a marker has at most
:data:`MAX_POINTS` points; a label image gives at most ``max_ids`` objects (the node passes
``max_objects``); at most :data:`MAX_PENDING_PER_OBJECT` prompts wait per object and
:data:`MAX_PENDING` (and :data:`MAX_PENDING_BYTES` of masks) in all: beyond, the oldest waiting
prompt is dropped, counted in ``PromptQueue.dropped`` and reported in the next batch's warnings.

Against the frame (:func:`fit_to_frame`): points outside the frame are refused (not clipped: a
click outside the image means the coordinates are for another image); a box reaching past the
border is clipped to the frame with a note (detectors' boxes often do), and refused when nothing
of it is inside.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, List, Mapping, Optional, Set

import numpy as np

from sam2_ros.tracking.types import Prompt, PromptError  # noqa: F401 (re-exported for the node)

MAX_ID = 65535  # label images are mono16; 0 is the background
MAX_POINTS = 64  # points in one marker (clicks); more is refused
MAX_PENDING_PER_OBJECT = 4  # prompts waiting per object; beyond, the oldest is dropped
MAX_PENDING = 256  # prompts waiting in all
MAX_PENDING_BYTES = 256 * 2 ** 20  # bytes of waiting mask prompts

# visualization_msgs/ImageMarker constants
CIRCLE, LINE_STRIP, LINE_LIST, POLYGON, POINTS = 0, 1, 2, 3, 4
ADD, REMOVE = 0, 1
_TYPE_NAMES = {CIRCLE: 'CIRCLE', LINE_STRIP: 'LINE_STRIP', LINE_LIST: 'LINE_LIST',
               POLYGON: 'POLYGON', POINTS: 'POINTS'}


class PromptMessageError(ValueError):
    """A prompt message that cannot be used; the text says why and what is accepted."""


@dataclass
class PromptOp:
    """One thing to do to the tracker: add/refine (``prompt`` set) or remove an object."""

    kind: str  # 'add' | 'remove'
    obj_id: int
    prompt: Optional[Prompt] = None
    label: Optional[str] = None  # class label (ImageMarker.ns)
    stamp_ns: int = 0  # the frame it refers to; 0 = the latest
    source: str = ''  # for messages: '~/prompt', '~/click', ...
    waited: int = 0  # tracked frames it has waited for its stamp
    latest: bool = False  # sent with a zero stamp: stamped with the latest frame on arrival

    def describe(self) -> str:
        what = 'remove' if self.kind == 'remove' else 'prompt'
        return f'{self.source} {what} for object {self.obj_id}'


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def check_id(obj_id, what: str = 'object id') -> int:
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise PromptMessageError(f'{what} must be an integer, got {obj_id!r}')
    if not 1 <= obj_id <= MAX_ID:
        raise PromptMessageError(f'{what} {obj_id} is out of range: ids are 1 to {MAX_ID} '
                                 '(0 is the background of the label images)')
    return int(obj_id)


def marker_to_op(marker, source: str = '~/prompt') -> PromptOp:
    """ImageMarker -> PromptOp, or :class:`PromptMessageError` saying what is wrong."""
    obj_id = check_id(marker.id, 'ImageMarker.id (the object id)')
    stamp = stamp_to_ns(marker.header.stamp)
    if marker.action == REMOVE:
        return PromptOp('remove', obj_id, stamp_ns=stamp, source=source)
    if marker.action != ADD:
        raise PromptMessageError(f'object {obj_id}: ImageMarker.action {marker.action} is not '
                                 'supported; use ADD (0) to add or refine, REMOVE (1) to remove')
    if len(marker.points) > MAX_POINTS:
        raise PromptMessageError(f'object {obj_id}: {len(marker.points)} points; a prompt has at most '
                                 f'{MAX_POINTS}')
    pts = np.array([[p.x, p.y, p.z] for p in marker.points], dtype=np.float64).reshape(-1, 3)
    if not (np.isfinite(pts).all() and (np.abs(pts[:, :2]) < 1e9).all()):
        raise PromptMessageError(f'object {obj_id}: point coordinates must be finite numbers (pixels), '
                                 f'got {pts[:, :2].tolist()[:4]}')
    label = marker.ns or None
    if marker.type == POINTS:
        if len(pts) == 0:
            raise PromptMessageError(f'object {obj_id}: a POINTS marker needs at least one point '
                                     '(x, y pixels; z = 1 foreground, 0 background)')
        z = pts[:, 2]
        if not np.all((z == 0) | (z == 1)):
            raise PromptMessageError(f'object {obj_id}: point labels (z) must be 1 (foreground) or '
                                     f'0 (background), got {z.tolist()}')
        prompt = Prompt(obj_id, points=pts[:, :2].astype(np.float32), labels=z.astype(np.int32))
    elif marker.type in (LINE_STRIP, POLYGON):
        if len(pts) != 2:
            raise PromptMessageError(f'object {obj_id}: a box is a {_TYPE_NAMES[marker.type]} with '
                                     f'exactly 2 points (opposite corners), got {len(pts)}')
        (xa, ya), (xb, yb) = pts[:, :2]
        box = [min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)]
        prompt = Prompt(obj_id, box=np.asarray(box, np.float32))
    else:
        name = _TYPE_NAMES.get(marker.type, str(marker.type))
        raise PromptMessageError(f'object {obj_id}: ImageMarker.type {name} is not a prompt; use '
                                 'POINTS (4) for clicks or LINE_STRIP (1) / POLYGON (3) with 2 points '
                                 'for a box')
    return PromptOp('add', obj_id, prompt, label, stamp, source)


def labels_to_ops(labels: np.ndarray, stamp_ns: int = 0, source: str = '~/prompt_mask',
                  max_ids: Optional[int] = None) -> List[PromptOp]:
    """H x W label image (pixel = object id, 0 = none) -> a mask prompt per id present
    (at most ``max_ids`` ids: each becomes an H x W mask)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size == 0:
        raise PromptMessageError('the label image has no object (every pixel is 0); pixel value = '
                                 'object id, 0 = none')
    if max_ids is not None and ids.size > max_ids:
        raise PromptMessageError(f'the label image has {ids.size} object ids, more than max_objects = '
                                 f'{max_ids}; pixel value = object id, 0 = none')
    return [PromptOp('add', int(i), Prompt(int(i), mask=labels == i), None, stamp_ns, source)
            for i in ids]


def click_to_op(point, obj_id: int, source: str = '~/click') -> PromptOp:
    """geometry_msgs/Point (x, y pixels) -> a foreground click for a new object ``obj_id``."""
    x, y = float(point.x), float(point.y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PromptMessageError(f'click coordinates must be finite, got ({x}, {y})')
    return PromptOp('add', check_id(obj_id), Prompt(obj_id, points=[[x, y]], labels=[1]),
                    None, 0, source)


def fit_to_frame(op: PromptOp, frame_hw) -> Optional[str]:
    """Check ``op``'s prompt against a frame of size (H, W) before it goes to the tracker.

    A box reaching past the frame's border is clipped to it (``op.prompt`` is replaced) and a
    note saying so is returned; everything else is checked as the tracker checks it. Raises
    :class:`PromptError` (points outside the frame, a box entirely outside, a mask of another
    size, ...) saying what is wrong.
    """
    prompt = op.prompt
    h, w = int(frame_hw[0]), int(frame_hw[1])
    note = None
    if prompt is not None and prompt.box is not None and prompt.mask is None:
        box = np.asarray(prompt.box, np.float64).reshape(-1)
        if box.shape == (4,) and np.isfinite(box).all():
            clipped = np.array([min(max(box[0], 0.0), w), min(max(box[1], 0.0), h),
                                min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)])
            if (clipped != box).any():
                if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                    raise PromptError(f'object {op.obj_id}: box {box.tolist()} lies outside the {w} x {h} '
                                      f'frame (x in [0, {w}], y in [0, {h}])')
                op.prompt = prompt = dataclasses.replace(prompt, box=clipped.astype(np.float32))
                note = (f'{op.describe()}: box {box.tolist()} reaches past the {w} x {h} frame; '
                        f'clipped to {clipped.tolist()}')
    try:
        prompt.parsed((h, w))
    except PromptError as error:
        if 'lies outside' in str(error) and 'point' in str(error):
            raise PromptError(f'{error}; points outside the frame are refused, not clipped (are the '
                              'coordinates for another image size?)') from None
        raise
    return note


@dataclass
class Batch:
    """What the queue hands the tracker for one frame."""

    removes: List[PromptOp] = field(default_factory=list)
    adds: List[PromptOp] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    past: Dict[int, List[PromptOp]] = field(default_factory=dict)  # buffered frame index -> prompts


class PromptQueue:
    """Pending prompts and the stamps of recent frames (thread-safe).

    ``push`` is called from message callbacks, ``note_frame`` for every frame received and
    ``take`` by the worker for each frame it tracks (see the module docstring for the rule).
    """

    def __init__(self, buffer_frames: int = 8) -> None:
        self._lock = threading.Lock()
        self._ops: List[PromptOp] = []
        self._stamps: Deque[int] = deque(maxlen=max(1, buffer_frames))
        self.buffer_frames = buffer_frames
        self.dropped = 0  # prompts dropped because too many were waiting
        self._drop_notes: List[str] = []

    def set_buffer(self, frames: int) -> None:
        with self._lock:
            self.buffer_frames = frames
            self._stamps = deque(self._stamps, maxlen=max(1, frames))

    def push(self, op: PromptOp) -> int:
        """Queue ``op``; returns how many waiting prompts were dropped to make room (the
        oldest of the object beyond :data:`MAX_PENDING_PER_OBJECT`, the oldest of all beyond
        :data:`MAX_PENDING` or :data:`MAX_PENDING_BYTES`)."""
        with self._lock:
            if op.kind == 'remove':
                # a removal also cancels the object's prompts still waiting for their frame
                self._ops = [o for o in self._ops if o.obj_id != op.obj_id]
            elif not op.stamp_ns and len(self._stamps):
                op.stamp_ns, op.latest = self._stamps[-1], True  # zero stamp: the latest frame
            self._ops.append(op)
            return self._bound(op)

    def _bound(self, op: PromptOp) -> int:
        dropped = 0
        same = [o for o in self._ops if o.obj_id == op.obj_id]
        for old in same[:max(0, len(same) - MAX_PENDING_PER_OBJECT)]:
            self._ops.remove(old)
            dropped += 1
        if dropped:
            self._note_drop(f'prompts arrive faster than frames are tracked: at most {MAX_PENDING_PER_OBJECT} '
                            'wait per object, the oldest were dropped (counted in prompts_dropped)')
        total = 0
        while len(self._ops) > MAX_PENDING or (
                len(self._ops) > 1 and sum(_nbytes(o) for o in self._ops) > MAX_PENDING_BYTES):
            self._ops.pop(0)
            total += 1
        if total:
            self._note_drop(f'too many prompts waiting (at most {MAX_PENDING}, '
                            f'{MAX_PENDING_BYTES // 2 ** 20} MiB of masks): the oldest were dropped')
        self.dropped += dropped + total
        return dropped + total

    def _note_drop(self, text: str) -> None:
        if text not in self._drop_notes and len(self._drop_notes) < 16:
            self._drop_notes.append(text)

    def note_frame(self, stamp_ns: int) -> None:
        with self._lock:
            self._stamps.append(stamp_ns)

    def clear(self) -> None:
        with self._lock:
            self._ops.clear()

    def pending_ids(self) -> Set[int]:
        with self._lock:
            return {o.obj_id for o in self._ops if o.kind == 'add'}

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def take(self, frame_stamp_ns: int, buffered: Optional[Mapping[int, int]] = None) -> Batch:
        """The removals and prompts to apply on the frame stamped ``frame_stamp_ns`` (at most one
        prompt per object: a second one waits for the next frame).

        ``buffered``: stamp -> tracker frame index of the tracked frames that can still be
        prompted (the prompt buffer); prompts stamped with one of them go to ``Batch.past``.
        None: no frame can be prompted after it was tracked (and a prompt stamped before the
        last ``prompt_buffer`` frames received is warned about)."""
        batch = Batch()
        keep: List[PromptOp] = []
        with self._lock:
            batch.warnings.extend(self._drop_notes)
            self._drop_notes = []
            oldest = self._stamps[0] if len(self._stamps) else None
            full = len(self._stamps) >= self.buffer_frames
            seen: Set[int] = set()
            for op in self._ops:
                if op.obj_id in seen:  # one prompt (or removal) per object and frame
                    keep.append(op)
                    continue
                if (buffered is not None and op.kind == 'add' and op.stamp_ns
                        and op.stamp_ns != frame_stamp_ns and op.stamp_ns in buffered):
                    seen.add(op.obj_id)
                    batch.past.setdefault(buffered[op.stamp_ns], []).append(op)
                    continue
                if op.stamp_ns and op.stamp_ns > frame_stamp_ns:
                    op.waited += 1
                    if op.waited <= self.buffer_frames or op.latest:  # a frame received: it comes
                        keep.append(op)
                        continue
                    batch.warnings.append(
                        f'{op.describe()}: no frame stamped {format_stamp(op.stamp_ns)} arrived within '
                        f'{self.buffer_frames} tracked frames (prompt_buffer); applied to the frame '
                        f'stamped {format_stamp(frame_stamp_ns)} (is the prompt stamped with the camera\'s clock?)')
                elif (buffered is not None and op.kind == 'add' and op.stamp_ns
                      and op.stamp_ns < frame_stamp_ns and not op.latest):
                    if not buffered or op.stamp_ns < min(buffered):
                        why = (f'is older than the last {self.buffer_frames} tracked frames '
                               '(prompt_buffer): its frame is no longer buffered')
                    else:
                        why = 'is not the stamp of a tracked frame (dropped, refused or never received)'
                    batch.warnings.append(
                        f'{op.describe()}: its stamp {format_stamp(op.stamp_ns)} {why}; applied to the next '
                        f'frame, stamped {format_stamp(frame_stamp_ns)}')
                elif (buffered is None and op.stamp_ns and oldest is not None and full
                      and op.stamp_ns < oldest and op.kind == 'add'):
                    batch.warnings.append(
                        f'{op.describe()}: its stamp {format_stamp(op.stamp_ns)} is older than the last '
                        f'{self.buffer_frames} frames (prompt_buffer); applied to the frame stamped '
                        f'{format_stamp(frame_stamp_ns)}')
                seen.add(op.obj_id)
                (batch.removes if op.kind == 'remove' else batch.adds).append(op)
            self._ops = keep
        return batch


def next_free_id(used: Iterable[int]) -> int:
    """The id for a new object: one more than the largest in use, or the lowest free id when
    that passes :data:`MAX_ID`."""
    used = set(used)
    top = max(used, default=0) + 1
    if top <= MAX_ID:
        return top
    for i in range(1, MAX_ID + 1):
        if i not in used:
            return i
    raise PromptMessageError(f'every object id 1 to {MAX_ID} is in use')


def _nbytes(op: PromptOp) -> int:
    mask = op.prompt.mask if op.prompt is not None else None
    return int(getattr(mask, 'nbytes', 0)) if mask is not None else 0


def format_stamp(ns: int) -> str:
    """Nanoseconds as ROS prints a stamp: sec.nanosec."""
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'
