"""RGB-D messages for the tests: a depth sensor_msgs/Image of an array (16UC1, 32FC1, padded
rows, either byte order) and a colour camera's sensor_msgs/CameraInfo."""
import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image


def depth_msg(a, encoding="16UC1", pad=0, big=False, stamp=None, frame_id=""):
    """An Image of ``a`` (H, W) as ``encoding`` (16UC1 or 32FC1), rows padded by ``pad`` bytes."""
    dtype = {"16UC1": "u2", "32FC1": "f4"}[encoding]
    a = np.asarray(a).astype((">" if big else "<") + dtype)
    h, w = a.shape
    rows = np.zeros((h, w * a.itemsize + pad), np.uint8)
    rows[:, :w * a.itemsize] = a.view(np.uint8).reshape(h, -1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big), step=rows.shape[1],
                data=array.array("B", rows.tobytes()))
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def camera_info(k=(615.0, 0.0, 320.5, 0.0, 615.0, 238.5, 0.0, 0.0, 1.0), w=640, h=480, **fields):
    """A CameraInfo with K ``k`` (9 numbers, row by row) for ``w`` x ``h`` images."""
    info = CameraInfo(width=w, height=h, k=[float(v) for v in k], **fields)
    info.d = [0.1, -0.2, 0.0, 0.0, 0.05]
    info.distortion_model = "plumb_bob"
    return info


def camera_info_of(intrinsics, **fields):
    """The CameraInfo of a :class:`~sam2_ros.tracking.objects3d.Intrinsics`."""
    return camera_info(intrinsics.matrix.reshape(-1), intrinsics.width, intrinsics.height, **fields)
