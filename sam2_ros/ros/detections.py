"""vision_msgs/Detection2DArray from tracked masks, where vision_msgs is installed.

vision_msgs is optional (there is no PyPI wheel of it): :func:`load` imports it lazily and
returns None when it is missing, and the node then publishes no ``~/detections``. Both message
layouts are handled: vision_msgs >= 4 (Humble and later: ``bbox.center.position.x``,
``results[i].hypothesis.class_id``) and 3.x (``bbox.center.x``, ``results[i].id``).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

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
          labels: Optional[Mapping[int, str]] = None):
    """Detection2DArray with one Detection2D per visible object: ``id`` = object id, box = the
    mask's bounding box (pixels), one hypothesis: class label (``ns`` of its prompt, else the id)
    and the object-presence score."""
    out = module.Detection2DArray()
    out.header = header
    labels = labels or {}
    for k, obj_id in enumerate(object_ids):
        box = mask_box(masks[k])
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
        out.detections.append(det)
    return out
