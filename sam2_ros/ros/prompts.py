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

Timing (:class:`PromptQueue`): a prompt applies to the first frame tracked after it arrives
whose stamp is >= the prompt's stamp. So a prompt stamped with a frame still waiting in the
queue applies to exactly that frame; one stamped with a frame already tracked (or dropped by
``frame_policy: latest``) applies to the next tracked frame (the tracker keeps no past image
features to go back to); a zero stamp means the next tracked frame. A prompt stamped ahead of
every frame received waits for its frame, at most ``prompt_buffer`` tracked frames (a clock
mismatch would otherwise hold it forever), then applies with a warning. A prompt stamped
before the last ``prompt_buffer`` frames received applies with a warning (its coordinates
may be stale).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Iterable, List, Optional, Set

import numpy as np

from sam2_ros.tracker import Prompt, PromptError  # noqa: F401 (re-exported for the node)

MAX_ID = 65535  # label images are mono16; 0 is the background

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
    pts = np.array([[p.x, p.y, p.z] for p in marker.points], dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(pts).all():
        raise PromptMessageError(f'object {obj_id}: point coordinates must be finite')
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


def labels_to_ops(labels: np.ndarray, stamp_ns: int = 0, source: str = '~/prompt_mask') -> List[PromptOp]:
    """H x W label image (pixel = object id, 0 = none) -> a mask prompt per id present."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size == 0:
        raise PromptMessageError('the label image has no object (every pixel is 0); pixel value = '
                                 'object id, 0 = none')
    return [PromptOp('add', int(i), Prompt(int(i), mask=labels == i), None, stamp_ns, source)
            for i in ids]


def click_to_op(point, obj_id: int, source: str = '~/click') -> PromptOp:
    """geometry_msgs/Point (x, y pixels) -> a foreground click for a new object ``obj_id``."""
    x, y = float(point.x), float(point.y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PromptMessageError(f'click coordinates must be finite, got ({x}, {y})')
    return PromptOp('add', check_id(obj_id), Prompt(obj_id, points=[[x, y]], labels=[1]),
                    None, 0, source)


@dataclass
class Batch:
    """What the queue hands the tracker for one frame."""

    removes: List[PromptOp] = field(default_factory=list)
    adds: List[PromptOp] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


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

    def set_buffer(self, frames: int) -> None:
        with self._lock:
            self.buffer_frames = frames
            self._stamps = deque(self._stamps, maxlen=max(1, frames))

    def push(self, op: PromptOp) -> None:
        with self._lock:
            if op.kind == 'remove':
                # a removal also cancels the object's prompts still waiting for their frame
                self._ops = [o for o in self._ops if o.obj_id != op.obj_id]
            self._ops.append(op)

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

    def take(self, frame_stamp_ns: int) -> Batch:
        """The removals and prompts to apply on the frame stamped ``frame_stamp_ns`` (at most one
        prompt per object: a second one waits for the next frame)."""
        batch = Batch()
        keep: List[PromptOp] = []
        with self._lock:
            oldest = self._stamps[0] if len(self._stamps) else None
            full = len(self._stamps) >= self.buffer_frames
            seen: Set[int] = set()
            for op in self._ops:
                if op.obj_id in seen:  # one prompt (or removal) per object and frame
                    keep.append(op)
                    continue
                if op.stamp_ns and op.stamp_ns > frame_stamp_ns:
                    op.waited += 1
                    if op.waited <= self.buffer_frames:
                        keep.append(op)
                        continue
                    batch.warnings.append(
                        f'{op.describe()}: no frame stamped {_fmt(op.stamp_ns)} arrived within '
                        f'{self.buffer_frames} tracked frames (prompt_buffer); applied to the frame '
                        f'stamped {_fmt(frame_stamp_ns)} (is the prompt stamped with the camera\'s clock?)')
                elif (op.stamp_ns and oldest is not None and full and op.stamp_ns < oldest
                      and op.kind == 'add'):
                    batch.warnings.append(
                        f'{op.describe()}: its stamp {_fmt(op.stamp_ns)} is older than the last '
                        f'{self.buffer_frames} frames (prompt_buffer); applied to the frame stamped '
                        f'{_fmt(frame_stamp_ns)}')
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


def _fmt(ns: int) -> str:
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'
