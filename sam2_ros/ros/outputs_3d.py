"""A camera's objects in 3-D on ROS, with ``depth: true``: the ``depth`` and ``camera_info``
subscriptions, and per tracked frame ``~/markers`` (visualization_msgs/MarkerArray),
``~/objects_3d`` (vision_msgs/Detection3DArray, where vision_msgs is installed) and, with
``publish_points``, ``~/points`` (sensor_msgs/PointCloud2). The messages:
:mod:`~sam2_ros.ros.objects3d_msgs`; pairing, decoding, the 3-D step and its counters:
:mod:`~sam2_ros.ros.objects3d_step`.

The camera's stream calls the hooks (``hooks`` of :class:`~sam2_ros.ros.stream.CameraStream`):
:meth:`Outputs3D.frame_started` when the worker picks a frame (its depth is kept),
:meth:`Outputs3D.frame_published` once the frame's masks are out (the 3-D step runs then, in
the worker, so the masks never wait for depth), :meth:`Outputs3D.tracker_reset` when every
object is dropped (``~/reset``, a new tracker, an image size change, a jump back in time): the
markers shown are deleted. An object removed, occluded, lost or without depth on a frame has
its markers deleted on that frame. Outputs are stamped as the colour image, in the depth
image's frame (its ``header.frame_id``: the optical frame).

The 3-D step runs only while someone subscribes to one of the three outputs (as the overlay is
drawn only while watched); the pairing is counted either way.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Mapping, Optional, Set

import numpy as np

from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from sam2_ros.ros import objects3d_msgs
from sam2_ros.ros.objects import ObjectBook
from sam2_ros.ros.objects3d_step import SETTINGS, Objects3DStep, masks_from_logits
from sam2_ros.ros.outputs import OUTPUT_QOS
from sam2_ros.ros.prompts import stamp_to_ns
from sam2_ros.ros.stream import StreamHooks

__all__ = ['Outputs3D']


class Outputs3D(StreamHooks):
    """See the module docstring. ``node``: the camera's node; ``p``: its parameters (its own
    dict, updated in place); ``objects``: its objects' states (updated before the hooks run);
    ``log``: its rate-limited log."""

    def __init__(self, node, p: Mapping, objects: ObjectBook, log) -> None:
        self._node = node
        self._p = p
        self._objects = objects
        self.step = Objects3DStep(p, log)
        self._subs: list = []
        self._pubs: Dict[str, object] = {}
        self._vision = None  # vision_msgs.msg where installed
        self._lock = threading.Lock()  # the markers shown: the worker publishes, a reset deletes
        self._shown: Set[int] = set()  # object ids with markers in RViz
        self._last_header = None  # of the last markers published (a reset's DELETEs go in its frame)
        self.active = False

    # ------------------------------------------------------------------ lifecycle
    def activate(self, qos: QoSProfile) -> Optional[str]:
        """Subscribe to ``depth`` and ``camera_info`` with ``qos`` and make the publishers, if
        ``depth`` is on (else drop the publishers). Returns a line for the node's log."""
        node = self._node
        if not self._p['depth']:
            self._destroy_publishers()
            remapped = node.resolve_topic_name('depth')
            if remapped != node.resolve_topic_name('depth', only_expand=True):
                return (f'`depth` is remapped to {remapped}, but the parameter depth is false: no objects in 3-D '
                        '(set depth: true)')
            return None
        self.step.reset_counts()
        self._subs.append(node.create_subscription(Image, 'depth', self.step.on_depth, qos))
        self._subs.append(node.create_subscription(CameraInfo, 'camera_info', self.step.on_camera_info, qos))
        if 'markers' not in self._pubs:
            self._pubs['markers'] = node.create_publisher(MarkerArray, '~/markers', OUTPUT_QOS)
            self._vision = objects3d_msgs.load()
            if self._vision is not None:
                self._pubs['objects_3d'] = node.create_publisher(self._vision.Detection3DArray, '~/objects_3d',
                                                                 OUTPUT_QOS)
        self._sync_points_publisher(bool(self._p['publish_points']))
        self.active = True
        return (f"objects in 3-D from {node.resolve_topic_name('depth')} and "
                f"{node.resolve_topic_name('camera_info')} (depth_max_delay {self._p['depth_max_delay']} s)"
                + ('' if self._vision is not None else '; vision_msgs is not installed: no ~/objects_3d'))

    def deactivate(self) -> None:
        """Unsubscribe (the publishers stay until cleanup, so subscribers keep their match)."""
        self.active = False
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs.clear()
        self.step.buffer.clear()

    def destroy(self) -> None:
        """Subscriptions and publishers go (cleanup, shutdown)."""
        self.deactivate()
        self._destroy_publishers()

    def _destroy_publishers(self) -> None:
        with self._lock:
            for pub in self._pubs.values():
                self._node.destroy_publisher(pub)
            self._pubs.clear()
            self._shown = set()
            self._last_header = None

    def configure(self, p: Mapping, changed: Mapping) -> None:
        """Live parameter changes."""
        if any(k in changed for k in SETTINGS):
            self.step.configure(p, changed)

    def diagnostics(self) -> Dict[str, object]:
        """The 3-D counters for the camera's diagnostics (nothing while depth is off)."""
        return self.step.diagnostics() if self.active else {}

    # ------------------------------------------------------------------ the stream's hooks
    def frame_started(self, stamp_ns: int) -> None:
        if self.active:
            self.step.pin(stamp_ns)

    def frame_published(self, header, hw, result, ids: List[int], labels: Mapping[int, str]) -> None:
        """A frame's masks are out: its objects in 3-D (``hw``: the colour image's height, width).
        Whatever goes wrong here is a 3-D error of this frame (counted, logged), not the frame's:
        its masks are out already."""
        if not self.active:
            return
        try:
            self._frame_3d(header, hw, result, ids, labels)
        except Exception as error:  # noqa: BLE001 - the next frame's 3-D may be fine; say what happened
            if self.active:
                self.step.failed(error)

    def _frame_3d(self, header, hw, result, ids: List[int], labels: Mapping[int, str]) -> None:
        with_points = bool(self._p['publish_points'])
        points_pub = self._sync_points_publisher(with_points)
        watched = [pub for pub in self._pubs.values() if pub.get_subscription_count() > 0]
        if not watched:
            self.step.buffer.take(stamp_to_ns(header.stamp))  # unpinned and counted all the same
            return
        with_points = with_points and points_pub is not None and points_pub.get_subscription_count() > 0
        states = {i: st for i, (st, _) in self._objects.snapshot.items()}
        scores = result.scores.numpy() if ids else np.zeros(0)
        threshold = result.mask_threshold

        def masks_of(indices: List[int]) -> np.ndarray:
            return masks_from_logits(result.logits, indices, threshold, hw)

        found = self.step.run(stamp_to_ns(header.stamp), ids, masks_of, scores, labels, states, with_points)
        if found is None:  # no news of the objects still tracked: their markers stay
            last = self._last_header  # the removed ones' DELETE in the frame they were shown in
            self._publish_markers(header if last is None else objects3d_msgs.output_header(header, last), [], keep=ids)
            return
        depth_header, objects = found
        out_header = objects3d_msgs.output_header(header, depth_header)
        self._publish_markers(out_header, objects)
        pub = self._pubs.get('objects_3d')
        if pub is not None and pub.get_subscription_count() > 0:
            pub.publish(objects3d_msgs.detections_3d(self._vision, out_header, objects))
        if with_points:
            points_pub.publish(objects3d_msgs.point_cloud(out_header, objects))

    def tracker_reset(self) -> None:
        """Every object was dropped: their markers go."""
        with self._lock:
            header = self._last_header
        if header is not None:
            self._publish_markers(header, [])

    # ------------------------------------------------------------------ publishing
    def _publish_markers(self, header, objects, keep=()) -> None:
        """The objects' markers; those shown before and not now are deleted, except those of
        ``keep`` (ids left as they are)."""
        with self._lock:
            pub = self._pubs.get('markers')
            if pub is None:
                return
            kept = self._shown & set(keep)
            array, shown = objects3d_msgs.markers(header, objects, self._shown - kept)
            self._shown = shown | kept
            if array.markers:  # no empty arrays on every frame without objects
                self._last_header = header
                pub.publish(array)

    def _sync_points_publisher(self, wanted: bool):
        """``~/points`` exists while publish_points is on."""
        pub = self._pubs.get('points')
        if wanted and pub is None:
            pub = self._pubs['points'] = self._node.create_publisher(PointCloud2, '~/points', OUTPUT_QOS)
        elif not wanted and pub is not None:
            self._node.destroy_publisher(self._pubs.pop('points'))
            pub = None
        return pub
