"""Detections from another model (YOLO, Grounding DINO, ...) as prompts for the tracker.

Pure numpy (no torch, no rclpy): the node turns each ``vision_msgs/Detection2DArray`` on
``~/prompt_boxes`` into plain arrays (boxes, scores, class ids) and :class:`Reseeder` decides
what to do with them.

Matching: each detection is matched to at most one tracked object and each object to at most
one detection, **greedily by IoU**: all (detection, object) pairs with a box IoU of at least
``iou_threshold`` are taken in decreasing IoU order (ties: higher detection score, then lower
object id), skipping pairs whose detection or object is already taken. An object's box is the
bounding box of its current mask, or, when it is occluded or lost (empty mask), of the last
mask it had. When both a detection and an object have a class label and they differ, they do
not match. (Greedy and Hungarian matching agree whenever the overlaps are unambiguous, which is
the case this is for: a detector's boxes around tracked objects; greedy needs no scipy.)

What happens (``mode``):

* ``none``: tracked objects are left alone;
* ``every_n_frames``: every ``every_n`` tracked frames, each matched object is prompted again
  with its detection's box (same id; SAM 2 then corrects its mask on that frame and the frame
  becomes a conditioning frame): this pulls a drifting mask back onto the detector's object;
* ``on_loss``: only matched objects whose state is ``lost`` are prompted again.

Unmatched detections start new objects only with ``new_objects`` (best scores first, up to
the free object slots). Objects just started (:meth:`Reseeder.started`) count as tracked, with
their detection's box, until the tracker reports them (a detector publishing every frame must
not start the same object twice before its prompt reaches the tracker). Detections scored below
``min_score`` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

MODES = ("none", "every_n_frames", "on_loss")
STARTED_TIMEOUT = 30  # tracked frames a started object waits to be reported before it is forgotten


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) x0, y0, x1, y1 boxes: (N, M). Empty boxes have IoU 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match(det_boxes: np.ndarray, obj_boxes: np.ndarray, iou_threshold: float,
          det_scores: Optional[Sequence[float]] = None, det_classes: Optional[Sequence[Optional[str]]] = None,
          obj_classes: Optional[Sequence[Optional[str]]] = None) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU (see the module doc): [(detection index, object index,
    IoU)], in the order taken."""
    n, m = len(det_boxes), len(obj_boxes)
    if n == 0 or m == 0:
        return []
    iou = box_iou(det_boxes, obj_boxes)
    scores = np.zeros(n) if det_scores is None else np.asarray(det_scores, np.float64)
    pairs = []
    for i in range(n):
        for j in range(m):
            if iou[i, j] < iou_threshold or iou[i, j] <= 0:
                continue
            dc = det_classes[i] if det_classes is not None else None
            oc = obj_classes[j] if obj_classes is not None else None
            if dc and oc and dc != oc:
                continue
            pairs.append((-iou[i, j], -scores[i], j, i))
    pairs.sort()
    used_d, used_o, out = set(), set(), []
    for neg_iou, _, j, i in pairs:
        if i in used_d or j in used_o:
            continue
        used_d.add(i)
        used_o.add(j)
        out.append((i, j, -neg_iou))
    return out


@dataclass
class Tracked:
    """What the reseeder needs to know of a tracked object."""

    box: Optional[Tuple[float, float, float, float]]  # current mask box, else its last one, else None
    state: str = "visible"  # visible | occluded | lost (sam2_ros.tracking.object_state)
    label: Optional[str] = None  # class label, if known


@dataclass
class Plan:
    """What to do with one set of detections."""

    reprompt: List[Tuple[int, np.ndarray, Optional[str]]] = field(default_factory=list)  # (object id, box, class)
    new: List[Tuple[np.ndarray, Optional[str], float]] = field(default_factory=list)  # (box, class, score)
    matched: Dict[int, int] = field(default_factory=dict)  # detection index -> object id
    ignored: int = 0  # detections below min_score or degenerate


class Reseeder:
    """Decides, for each set of detections, which tracked objects to prompt again with their
    detection's box and which detections start new objects (see the module doc)."""

    def __init__(self, mode: str = "none", every_n: int = 30, iou_threshold: float = 0.3,
                 new_objects: bool = False, min_score: float = 0.0) -> None:
        self.configure(mode, every_n, iou_threshold, new_objects, min_score)
        self._last_reseed: Optional[int] = None  # frame count of the last every_n_frames re-prompt
        self._started: Dict[int, Tuple[Tracked, int]] = {}  # objects started, not yet reported

    def configure(self, mode: str = "none", every_n: int = 30, iou_threshold: float = 0.3,
                  new_objects: bool = False, min_score: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"reseed mode must be one of {', '.join(MODES)}, got {mode!r}")
        if isinstance(every_n, bool) or int(every_n) != every_n or every_n < 1:
            raise ValueError(f"every_n must be an integer >= 1, got {every_n!r}")
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score!r}")
        self.mode = mode
        self.every_n = int(every_n)
        self.iou_threshold = float(iou_threshold)
        self.new_objects = bool(new_objects)
        self.min_score = float(min_score)

    def reset(self) -> None:
        self._last_reseed = None
        self._started.clear()

    def started(self, obj_id: int, box, label: Optional[str], frame: int) -> None:
        """Object ``obj_id`` was started from a detection (``box``) at tracked-frame count ``frame``."""
        self._started[int(obj_id)] = (Tracked(tuple(float(v) for v in box), "visible", label), int(frame))

    def plan(self, boxes: np.ndarray, scores: Sequence[float], classes: Sequence[Optional[str]],
             objects: Mapping[int, Tracked], frame: int, free_slots: int) -> Plan:
        """Detections (boxes (N, 4) x0, y0, x1, y1 pixels, scores (N,), class ids or None) against
        the tracked ``objects`` (id -> :class:`Tracked`) at tracked-frame count ``frame``, with
        ``free_slots`` objects that can still be started. Returns the :class:`Plan`."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = list(classes) if classes is not None else [None] * len(boxes)
        if len(scores) != len(boxes) or len(classes) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes need as many scores ({len(scores)}) and classes ({len(classes)})")
        for oid in [o for o, (_, f) in self._started.items() if o in objects or frame - f > STARTED_TIMEOUT]:
            del self._started[oid]
        starting = set(self._started)
        objects = {**{o: t for o, (t, _) in self._started.items()}, **objects}
        plan = Plan()
        ok = (np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
              & (scores >= self.min_score))
        plan.ignored = int((~ok).sum())
        keep = np.flatnonzero(ok)
        ids = [o for o in sorted(objects) if objects[o].box is not None]
        obj_boxes = np.array([objects[o].box for o in ids], np.float64).reshape(-1, 4)
        pairs = match(boxes[keep], obj_boxes, self.iou_threshold, scores[keep], [classes[i] for i in keep],
                      [objects[o].label for o in ids])
        for di, oj, _ in pairs:
            plan.matched[int(keep[di])] = ids[oj]
        due = self.mode == "on_loss" or (
            self.mode == "every_n_frames" and (self._last_reseed is None or frame - self._last_reseed >= self.every_n))
        if due and self.mode != "none":
            for d, oid in sorted(plan.matched.items(), key=lambda kv: kv[1]):
                if oid in starting:
                    continue
                if self.mode == "every_n_frames" or objects[oid].state == "lost":
                    plan.reprompt.append((oid, boxes[d].copy(), classes[d]))
            if self.mode == "every_n_frames":
                self._last_reseed = frame
        if self.new_objects and free_slots > 0:
            unmatched = [int(d) for d in keep if int(d) not in plan.matched]
            unmatched.sort(key=lambda d: -scores[d])
            for d in unmatched[:free_slots]:
                plan.new.append((boxes[d].copy(), classes[d], float(scores[d])))
        return plan


def select_new_masks(records: Sequence[Mapping], existing: Optional[np.ndarray], max_new: int,
                     min_area: int = 0, duplicate_iou: float = 0.5) -> List[np.ndarray]:
    """Masks of an automatic mask generator (its records: ``segmentation`` (H, W) bool,
    ``area``) to start as new objects: largest first, at least ``min_area`` pixels, at most
    ``max_new``, leaving out masks that overlap an ``existing`` object's mask ((K, H, W) bool)
    with a mask IoU of ``duplicate_iou`` or more (those objects are tracked already)."""
    out: List[np.ndarray] = []
    if max_new <= 0:
        return out
    flat = None
    if existing is not None and len(existing):
        flat = np.asarray(existing, bool).reshape(len(existing), -1)
        areas = flat.sum(1)
    for rec in sorted(records, key=lambda r: -int(r["area"])):
        if int(rec["area"]) < min_area:
            break
        mask = np.asarray(rec["segmentation"], bool)
        if flat is not None:
            m = mask.reshape(-1)
            inter = (flat & m).sum(1)
            union = areas + int(m.sum()) - inter
            if (np.where(union > 0, inter / np.maximum(union, 1), 0) >= duplicate_iou).any():
                continue
        out.append(mask)
        if len(out) >= max_new:
            break
    return out
