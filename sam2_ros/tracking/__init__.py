"""Tracking in a stream (no rclpy): the :class:`~sam2_ros.tracking.tracker.Tracker` API
(``track``, ``prompt_past``, ``remove_object``, ``reset``) and what it stands on. Two paths
sit beneath it: the exact path (:mod:`~sam2_ros.tracking.exact_memory`: every object's own
memory, Meta's predictor bit for bit) and the static frame step of :mod:`sam2_ros.step` (a
fixed-capacity bank, compiled or exported whole). Beside it: several cameras' trackers in one
step (:mod:`~sam2_ros.tracking.cameras`), the prompt and result types
(:mod:`~sam2_ros.tracking.types`), object states (visible / occluded / lost) and reseeding from
detections, SAMURAI's memory selection on the exact path
(:mod:`~sam2_ros.tracking.samurai_memory`). Imports :mod:`sam2_ros.model`, :mod:`sam2_ros.step` and :mod:`sam2_ros.backends`;
nothing here imports the ROS glue or the tools.
"""
