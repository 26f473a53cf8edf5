"""vision_msgs/Detection2DArray from tracked masks, and back to boxes, where vision_msgs is
installed.

vision_msgs is optional (there is no PyPI wheel of it): :func:`load` imports it lazily and
returns None when it is missing, and the node then publishes no ``~/detections`` and reads no
``~/prompt_boxes``. Both message layouts are handled: vision_msgs >= 4 (Humble and later:
``bbox.center.position.x``, ``results[i].hypothesis.class_id``) and 3.x (``bbox.center.x``,
``results[i].id``).

``~/detections``: one Detection2D per tracked object, ``id`` = the object id; box = the bounding
box of its mask (an occluded or lost object, whose mask is empty: the last box it had; an
object never seen is left out); ``results[0]``: its class label (``ns`` of its prompt, else the
id) with the object-presence score; ``results[1]``: class id ``state/visible``,
``state/occluded`` or ``state/lost`` (:mod:`sam2_ros.tracking.object_state`), same score.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np


def load():
    """The ``vision_msgs.msg`` module, or None when vision_msgs is not installed."""
    try:
        import vision_msgs.msg as module
    except ImportError:
        return None
    return module


def mask_box(mask: np.ndarray):
    """(x0, y0, x1, y1) pixel edges of a non-empty mask (x1, y1 exclusive), else None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def build(module, header, object_ids: Sequence[int], masks: np.ndarray, scores: Sequence[float],
          labels: Optional[Mapping[int, str]] = None, states: Optional[Mapping[int, str]] = None,
          last_boxes: Optional[Mapping[int, Optional[Sequence[float]]]] = None):
    """Detection2DArray (see the module doc): without ``states``, one Detection2D per visible
    object (non-empty mask); with them, every object with a box (its mask's, else its entry
    in ``last_boxes``), a second hypothesis saying its state."""
    out = module.Detection2DArray()
    out.header = header
    labels = labels or {}
    for k, obj_id in enumerate(object_ids):
        box = mask_box(masks[k])
        if box is None and states is not None and last_boxes:
            box = last_boxes.get(obj_id)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        det = module.Detection2D()
        det.header = header
        if hasattr(det, 'id'):
            det.id = str(obj_id)
        center = det.bbox.center
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        if hasattr(center, 'position'):
            center.position.x, center.position.y = cx, cy
        else:  # vision_msgs 3.x: geometry_msgs/Pose2D
            center.x, center.y = cx, cy
        det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
        hyp = module.ObjectHypothesisWithPose()
        class_id = labels.get(obj_id) or str(obj_id)
        target = hyp.hypothesis if hasattr(hyp, 'hypothesis') else hyp
        if hasattr(target, 'class_id'):
            target.class_id = class_id
        else:
            target.id = class_id
        target.score = float(scores[k])
        det.results.append(hyp)
        if states is not None and obj_id in states:
            det.results.append(_hypothesis(module, f'state/{states[obj_id]}', float(scores[k])))
        out.detections.append(det)
    return out


def _hypothesis(module, class_id: str, score: float):
    hyp = module.ObjectHypothesisWithPose()
    target = hyp.hypothesis if hasattr(hyp, 'hypothesis') else hyp
    if hasattr(target, 'class_id'):
        target.class_id = class_id
    else:
        target.id = class_id
    target.score = score
    return hyp


def to_arrays(msg) -> Tuple[np.ndarray, np.ndarray, List[Optional[str]]]:
    """Detection2DArray -> boxes (N, 4) x0, y0, x1, y1 pixels, scores (N,) and class ids (N,)
    of each detection's best hypothesis (a detection without one: score 1, no class)."""
    boxes, scores, classes = [], [], []
    for det in msg.detections:
        center, bbox = det.bbox.center, det.bbox
        pos = center.position if hasattr(center, 'position') else center
        cx, cy, w, h = float(pos.x), float(pos.y), float(bbox.size_x), float(bbox.size_y)
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        best, best_score = None, None
        for hyp in det.results:
            target = hyp.hypothesis if hasattr(hyp, 'hypothesis') else hyp
            cls = getattr(target, 'class_id', None)
            if cls is None:
                cls = getattr(target, 'id', None)
            if best_score is None or float(target.score) > best_score:
                best, best_score = (str(cls) if cls not in (None, '') else None), float(target.score)
        scores.append(1.0 if best_score is None else best_score)
        classes.append(best)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64), classes
