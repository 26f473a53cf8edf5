"""What a camera's node knows of each tracked object between frames (no rclpy): its state
(visible / occluded / lost, :mod:`sam2_ros.tracking.object_state`), its last box and class
label, and the reseeder that matches detections on ``~/prompt_boxes`` against them
(:mod:`sam2_ros.tracking.reseed`). Updated by the worker after each frame, read by the
``~/prompt_boxes`` callback and the diagnostics, cleared when the tracker is reset."""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from sam2_ros.ros.detections import mask_box
from sam2_ros.tracking.object_state import ObjectStates
from sam2_ros.tracking.reseed import Reseeder, Tracked


def state_settings(p: Mapping) -> Dict:
    """The ObjectStates settings among the node's parameters."""
    return dict(present_threshold=p['state_present_threshold'], absent_threshold=p['state_absent_threshold'],
                visible_frames=p['state_visible_frames'], occluded_frames=p['state_occluded_frames'],
                lost_frames=p['state_lost_frames'])


def reseed_settings(p: Mapping) -> Dict:
    """The Reseeder settings among the node's parameters."""
    return dict(mode=p['reseed'], every_n=p['reseed_every_n'], iou_threshold=p['reseed_iou'],
                new_objects=p['reseed_new_objects'], min_score=p['detection_min_score'])


class ObjectBook:
    """Object states, boxes and labels after the last frame, and the reseeder (see the module
    docstring). ``lock`` guards the reseeder and the boxes it matches against."""

    def __init__(self, p: Mapping) -> None:
        self.states = ObjectStates(**state_settings(p))
        self.reseeder = Reseeder(**reseed_settings(p))
        self.lock = threading.Lock()
        self.tracked: Dict[int, Tracked] = {}  # per object after the last frame: box, state, label
        self.snapshot: Dict[int, Tuple[str, float]] = {}  # object id -> (state, score), for the diagnostics
        self.want_boxes = False  # boxes also without vision_msgs: the text prompts' detector matches against them

    def configure(self, p: Mapping, changed: Mapping) -> None:
        """Apply the live parameter changes ``changed`` (``p``: every parameter's value now)."""
        if any(k.startswith('state_') for k in changed):
            self.states.configure(**state_settings(p))
        if any(k.startswith(('reseed', 'detection_')) for k in changed):
            self.reseeder.configure(**reseed_settings(p))

    def update(self, ids: List[int], scores: np.ndarray, get_masks: Callable[[], np.ndarray],
               labels: Mapping[int, str], with_boxes: bool) -> Dict[int, str]:
        """Object states after this frame; ``with_boxes`` (vision_msgs installed: ~/detections
        and ~/prompt_boxes use them): also each object's box, its mask's, else its last one."""
        boxes = [mask_box(m) for m in get_masks()] if with_boxes or self.want_boxes else None
        states = self.states.update(ids, scores, boxes)
        tracked = {}
        for k, obj_id in enumerate(ids):
            st = self.states.get(obj_id)
            box = boxes[k] if boxes is not None and boxes[k] is not None else st.last_box
            tracked[obj_id] = Tracked(box, states[obj_id], labels.get(obj_id))
        with self.lock:
            self.tracked = tracked
        self.snapshot = {o: (states[o], float(scores[k])) for k, o in enumerate(ids)}
        return states

    def last_boxes(self) -> Dict[int, Optional[tuple]]:
        return {o: t.box for o, t in self.tracked.items()}

    def clear(self) -> None:
        """The tracker was reset (or is new): forget every object."""
        self.states.clear()
        with self.lock:
            self.reseeder.reset()
            self.tracked = {}
        self.snapshot = {}
