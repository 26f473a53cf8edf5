"""What a camera's node publishes for each tracked frame: ``~/masks`` (label image), per-object
``~/object_<id>/mask`` and ``~/object_<id>/polygon``, ``~/detections`` (where vision_msgs is
installed) and ``~/overlay``. Each output is computed only when someone listens, message
buffers are refilled rather than reallocated, and every output carries the image's header."""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from geometry_msgs.msg import Point32, PolygonStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from sam2_ros.ros import conversions, detections
from sam2_ros.ros.objects import ObjectBook

# Reliable publishers serve reliable and best-effort subscribers alike.
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


class Outputs:
    """The publishers of one camera's node (made on configure, destroyed on cleanup) and
    :meth:`publish`, which the worker calls after each tracked frame."""

    def __init__(self, node, p: Mapping, objects: ObjectBook) -> None:
        self._node = node
        self._p = p
        self._objects = objects
        self._pubs: Dict[str, object] = {}
        self._object_pubs: Dict[int, object] = {}
        self._polygon_pubs: Dict[int, object] = {}
        self._reuse: Dict[str, object] = {}  # output messages whose buffers are refilled
        self.vision = None  # vision_msgs.msg, where installed

    def create(self) -> None:
        """Publishers of the outputs every frame has (configure)."""
        node = self._node
        self._pubs['masks'] = node.create_publisher(Image, '~/masks', OUTPUT_QOS)
        self._pubs['overlay'] = node.create_publisher(Image, '~/overlay', OUTPUT_QOS)
        self.vision = detections.load()
        if self.vision is not None:
            self._pubs['detections'] = node.create_publisher(self.vision.Detection2DArray, '~/detections', OUTPUT_QOS)
        else:
            node.get_logger().info('vision_msgs is not installed: ~/detections is not published')

    def destroy(self) -> None:
        """Every publisher goes (cleanup, shutdown)."""
        for pub in list(self._pubs.values()) + list(self._object_pubs.values()) + list(self._polygon_pubs.values()):
            self._node.destroy_publisher(pub)
        self._pubs.clear()
        self._object_pubs.clear()
        self._polygon_pubs.clear()
        self._reuse.clear()

    def publish(self, header, rgb: np.ndarray, result, ids: List[int], labels: Dict[int, str]) -> np.ndarray:
        """One tracked frame's outputs (``result``: its TrackResult). Returns the label image."""
        from sam2_ros.visualization import label_image, overlay

        p = self._p
        threshold = result.mask_threshold
        masks = None

        def get_masks():
            nonlocal masks
            if masks is None:
                masks = (result.logits > threshold).numpy() if ids else np.zeros((0,) + rgb.shape[:2], bool)
            return masks

        scores = result.scores.numpy() if ids else np.zeros(0)
        # object states before anything goes out
        states = self._objects.update(ids, scores, get_masks, labels, with_boxes=self.vision is not None)
        label = label_image(result.logits, ids, threshold)
        self._reuse['masks'] = msg = conversions.label_to_image(label, header, reuse=self._reuse.get('masks'))
        self._pubs['masks'].publish(msg)

        self._sync_object_publishers(ids)
        if p['publish_object_masks']:
            for k, obj_id in enumerate(ids):
                pub = self._object_pubs[obj_id]
                if pub.get_subscription_count() == 0:
                    continue
                key = f'object_{obj_id}'
                m = conversions.mask_to_image(get_masks()[k], header, reuse=self._reuse.get(key))
                self._reuse[key] = m
                pub.publish(m)
        det_pub = self._pubs.get('detections')
        if det_pub is not None and det_pub.get_subscription_count() > 0:
            det_pub.publish(detections.build(self.vision, header, ids, get_masks(), scores, labels,
                                             states=states, last_boxes=self._objects.last_boxes()))
        if p['publish_polygons']:
            from sam2_ros.image.polygons import largest_polygon

            for k, obj_id in enumerate(ids):
                pub = self._polygon_pubs[obj_id]
                if pub.get_subscription_count() == 0:
                    continue
                ring = largest_polygon(get_masks()[k], tolerance=p['polygon_tolerance'])
                poly = PolygonStamped()
                poly.header = header
                poly.polygon.points = [Point32(x=float(x), y=float(y), z=0.0) for x, y in ring]
                pub.publish(poly)
        pub = self._pubs['overlay']
        if p['publish_overlay'] and pub.get_subscription_count() > 0:
            image = overlay(rgb, get_masks(), ids, scores=scores, labels=labels)
            m = conversions.rgb_to_bgr8_image(image, header, reuse=self._reuse.get('overlay'))
            self._reuse['overlay'] = m
            pub.publish(m)
        return label

    def _sync_object_publishers(self, ids: List[int]) -> None:
        """One ``~/object_<id>/mask`` publisher per tracked object (while publish_object_masks),
        and one ``~/object_<id>/polygon`` (while publish_polygons)."""
        node = self._node
        wanted = set(ids) if self._p['publish_object_masks'] else set()
        for obj_id in list(self._object_pubs):
            if obj_id not in wanted:
                node.destroy_publisher(self._object_pubs.pop(obj_id))
                self._reuse.pop(f'object_{obj_id}', None)
        for obj_id in wanted - set(self._object_pubs):
            self._object_pubs[obj_id] = node.create_publisher(Image, f'~/object_{obj_id}/mask', OUTPUT_QOS)
        wanted = set(ids) if self._p['publish_polygons'] else set()
        for obj_id in list(self._polygon_pubs):
            if obj_id not in wanted:
                node.destroy_publisher(self._polygon_pubs.pop(obj_id))
        for obj_id in wanted - set(self._polygon_pubs):
            self._polygon_pubs[obj_id] = node.create_publisher(PolygonStamped, f'~/object_{obj_id}/polygon', OUTPUT_QOS)
