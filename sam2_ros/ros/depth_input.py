"""The 3-D step's inputs from ROS messages: a depth sensor_msgs/Image as a numpy array, and the
colour camera's sensor_msgs/CameraInfo as :class:`~sam2_ros.tracking.objects3d.Intrinsics`.

Depth images (REP 118): ``16UC1`` in millimetres (0: no depth) or ``32FC1`` in metres (NaN, inf
or 0: no depth); any other encoding is refused with the reason. Every image is checked before
it is used, as :mod:`sam2_ros.ros.conversions` checks colour images: a zero size, a ``step``
smaller than a row, ``data`` that is not ``step`` x ``height`` bytes, more pixels than
``max_pixels``. Row padding and both byte orders are accepted; the result is a view of the
message's buffer where the byte order allows.

CameraInfo: its ``k`` (fx, fy, cx, cy) for images of its ``width`` x ``height``. Distortion is
not applied (the 3-D step uses K only); binning and a region of interest are refused (the
intrinsics would be those of another image than the one sent).

No rclpy import here: the functions take any object with the message's fields.
"""
from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from sam2_ros.ros.conversions import ConversionError, check_pixels
from sam2_ros.tracking.objects3d import DepthFormatError, Intrinsics, IntrinsicsError

__all__ = ['DepthImageError', 'DEPTH_ENCODINGS', 'depth_image_to_numpy', 'camera_info_to_intrinsics']

# encoding -> (numpy type code, bytes per pixel, unit)
DEPTH_ENCODINGS = {'16UC1': ('u2', 2, 'millimetres'), '32FC1': ('f4', 4, 'metres')}
_ACCEPTED = '16UC1 (uint16 millimetres) or 32FC1 (float32 metres)'
_HINTS = {
    'mono16': 'mono16 is a grey image; if it holds depth in millimetres, publish it as 16UC1',
    '16SC1': 'signed depth is not a REP 118 encoding; publish 16UC1 millimetres',
    '64FC1': 'publish 32FC1 metres',
    'mono8': 'an 8-bit image cannot hold depth',
}
_LITTLE = sys.byteorder == 'little'


class DepthImageError(ConversionError, DepthFormatError):
    """A depth image message that cannot be read; the text says why and what is accepted."""


def depth_image_to_numpy(msg, max_pixels: Optional[int] = None) -> np.ndarray:
    """sensor_msgs/Image 16UC1 or 32FC1 -> (H, W) uint16 millimetres or float32 metres (a view
    of ``msg.data`` when its byte order is the machine's and rows are aligned).

    ``max_pixels``: refuse larger images (checked before any allocation)."""
    enc = str(msg.encoding)
    spec = DEPTH_ENCODINGS.get(enc)
    if spec is None:
        hint = _HINTS.get(enc)
        raise DepthImageError(f'depth encoding {enc!r} is not accepted: {_ACCEPTED}' + (f' ({hint})' if hint else ''))
    code, size, _ = spec
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise DepthImageError(f'depth image is empty ({w}x{h}): width and height must be > 0')
    check_pixels(w, h, max_pixels, 'depth image')
    row = w * size
    if step < row:
        raise DepthImageError(f'depth image {enc} {w}x{h}: step {step} is smaller than a row '
                              f'({w} px x {size} bytes = {row})')
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size != step * h:
        raise DepthImageError(f'depth image {enc} {w}x{h} (step {step}) needs {step * h} bytes of data, got '
                              f'{buf.size}: data must be step x height bytes (is the width, height, step or '
                              'encoding wrong?)')
    px = buf.reshape(h, step)[:, :row]
    if step % size:  # rows not aligned to a pixel: one copy to reinterpret
        px = np.ascontiguousarray(px)
    big = bool(getattr(msg, 'is_bigendian', 0))
    px = px.view(('>' if big else '<') + code)  # (H, W)
    if big == _LITTLE:  # not the machine's byte order
        px = px.astype(px.dtype.newbyteorder('='))
    return px


def camera_info_to_intrinsics(msg) -> Intrinsics:
    """sensor_msgs/CameraInfo -> :class:`Intrinsics` from ``k`` and the image size; refuses a
    missing or zero K, a zero size, binning and a region of interest (:class:`IntrinsicsError`)."""
    w, h = int(msg.width), int(msg.height)
    if w <= 0 or h <= 0:
        raise IntrinsicsError(f'camera_info has image size {w}x{h}: width and height must be > 0 '
                              '(is the camera calibrated?)')
    bx, by = int(getattr(msg, 'binning_x', 0)), int(getattr(msg, 'binning_y', 0))
    if bx > 1 or by > 1:
        raise IntrinsicsError(f'camera_info has binning {bx}x{by}: not supported; publish camera_info for '
                              'the image as it is sent (binning 0 or 1)')
    roi = getattr(msg, 'roi', None)
    if roi is not None and int(roi.width) and int(roi.height) and (int(roi.width), int(roi.height)) != (w, h):
        raise IntrinsicsError(f'camera_info has a region of interest {roi.width}x{roi.height} at '
                              f'({roi.x_offset}, {roi.y_offset}): not supported; publish camera_info for the '
                              'image as it is sent (no roi)')
    k = getattr(msg, 'k', None)
    if k is None:
        k = getattr(msg, 'K', None)  # ROS 1 field name (bags converted from ROS 1)
    if k is None or len(k) != 9:
        raise IntrinsicsError(f'camera_info has no K (9 numbers), got {k!r}')
    return Intrinsics.from_matrix(k, w, h, what='camera_info K')
