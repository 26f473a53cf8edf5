"""What the tracker takes and gives: :class:`Prompt` (validated against the frame),
:class:`TrackResult`, and the errors a caller can act on (no rclpy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch import Tensor

ArrayLike = Union[np.ndarray, Sequence, Tensor]


class PromptError(ValueError):
    """A prompt that cannot be used; the message says what was wrong and what is accepted."""


class FrameNotBuffered(ValueError):
    """:meth:`Tracker.prompt_past` was given a frame whose features are no longer (or never
    were) in the prompt buffer; the message names the frames that are."""


@dataclass
class Prompt:
    """A prompt for one object on the frame passed with it, or a text prompt.

    Attributes:
        obj_id: the object's id (an int >= 0). A new id starts an object; an existing id
            corrects it (points/box) or resets its mask (mask).
        points: (K, 2) x, y pixels of the frame; ``labels`` (K,) 1 foreground, 0 background.
        box: (4,) x0, y0, x1, y1 pixels (may be combined with points).
        mask: (H, W) bool mask at the frame's resolution (not combined with points or box).
        text: a text prompt, alone (no obj_id): phrases separated by " . " ("person . red cup")
            that the tracker's detector turns into objects labelled with their phrase; it stays
            in force until the next one, "" stops detecting
            (:mod:`sam2_ros.tracking.text_tracking`; needs ``Tracker(detector=...)``).
        label: the object's class label (:attr:`TrackResult.labels`), or None.
    """

    obj_id: Optional[int] = None
    points: Optional[ArrayLike] = None
    labels: Optional[ArrayLike] = None
    box: Optional[ArrayLike] = None
    mask: Optional[ArrayLike] = None
    text: Optional[str] = None
    label: Optional[str] = None

    def parsed(self, frame_hw: Tuple[int, int]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
        """Validate against a frame of size (H, W): returns (points (K, 2) with the box corners
        first, labels (K,) with 2/3 for box corners, mask (H, W) bool) or raises PromptError."""
        h, w = frame_hw
        oid = self.obj_id
        if self.text is not None:
            raise PromptError("a text prompt (Prompt(text=...)) is for Tracker.track with a detector, "
                              "not for one object")
        if isinstance(oid, bool) or not isinstance(oid, (int, np.integer)) or oid < 0:
            raise PromptError(f"obj_id must be an integer >= 0, got {oid!r}"
                              + ("; a text prompt is Prompt(text='person . red cup')" if oid is None else ""))
        if self.mask is not None:
            if self.points is not None or self.box is not None:
                raise PromptError(f"object {oid}: a mask prompt cannot be combined with points or a box; send them separately")
            mask = np.asarray(self.mask)
            if mask.shape != (h, w):
                raise PromptError(f"object {oid}: mask has shape {mask.shape}, the frame is {h} x {w}; masks must match the frame")
            return None, None, mask.astype(bool)
        if self.points is None and self.box is None:
            raise PromptError(f"object {oid}: the prompt has no points, box or mask")
        pts = np.zeros((0, 2), np.float32)
        labs = np.zeros((0,), np.int32)
        if (self.points is None) != (self.labels is None):
            raise PromptError(f"object {oid}: points and labels go together (labels: 1 foreground, 0 background)")
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float32).reshape(-1, 2) if np.size(self.points) else pts
            labs = np.asarray(self.labels).reshape(-1)
            if len(pts) == 0:
                raise PromptError(f"object {oid}: the point list is empty")
            if labs.shape != (len(pts),):
                raise PromptError(f"object {oid}: {len(pts)} points but {labs.size} labels")
            if not np.isin(labs, (0, 1)).all():
                raise PromptError(f"object {oid}: labels must be 1 (foreground) or 0 (background), got {labs.tolist()}")
            labs = labs.astype(np.int32)
            _check_in_frame(pts, frame_hw, f"object {oid}: point")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float32).reshape(-1)
            if box.shape != (4,):
                raise PromptError(f"object {oid}: box must be x0, y0, x1, y1, got {box.size} numbers")
            corners = box.reshape(2, 2)
            _check_in_frame(corners, frame_hw, f"object {oid}: box corner")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise PromptError(f"object {oid}: box {box.tolist()} needs x1 > x0 and y1 > y0")
            # SAM 2 takes a box as two labelled corner points, before any clicks.
            pts = np.concatenate((corners, pts))
            labs = np.concatenate((np.array([2, 3], np.int32), labs))
        return pts, labs, None


def _check_in_frame(pts: np.ndarray, frame_hw: Tuple[int, int], what: str) -> None:
    h, w = frame_hw
    if not np.isfinite(pts).all():
        raise PromptError(f"{what} coordinates must be finite, got {pts.tolist()}")
    bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
    if bad.any():
        raise PromptError(f"{what} {pts[bad][0].tolist()} lies outside the {w} x {h} frame (x in [0, {w}], y in [0, {h}])")


@dataclass
class TrackResult:
    """The tracker's answer for one frame."""

    frame_index: int
    object_ids: List[int]  # ascending
    logits: Tensor  # (N, H, W) float32 mask logits at the frame's resolution
    scores: Tensor  # (N,) object-presence probability
    mask_threshold: float = 0.0
    labels: Dict[int, Optional[str]] = field(default_factory=dict)  # object id -> class label or None

    @property
    def masks(self) -> Tensor:
        """(N, H, W) bool."""
        return self.logits > self.mask_threshold
