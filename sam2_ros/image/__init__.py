"""Single images (no rclpy, no memory): the image predictor (:mod:`~sam2_ros.image.predictor`:
points, boxes or a mask on one image, embeddings cached by content), the automatic mask
generator (:mod:`~sam2_ros.image.automatic`: segment everything on a grid of points) and
masks as polygons (:mod:`~sam2_ros.image.polygons`). Imports only :mod:`sam2_ros.model` and
the root's drawing helpers (:mod:`sam2_ros.visualization`).
"""
