"""One camera's objects in 3-D inside the node (no rclpy): the depth images and camera_info the
callbacks hand in, paired with each tracked frame, the 3-D step on the frame's masks, and what
went right and wrong, counted for the diagnostics.

The callbacks only store messages (:meth:`Objects3DStep.on_depth`, :meth:`on_camera_info`: no
decoding, never waiting); the worker pins a frame's stamp when it picks the frame
(:meth:`pin`) and, once the frame's masks are published, runs :meth:`run`: it takes the depth
image with the same stamp or the nearest within ``depth_max_delay``
(:class:`~sam2_ros.ros.depth_sync.DepthBuffer`), decodes it and the camera_info
(:mod:`~sam2_ros.ros.depth_input`; the intrinsics are kept while the camera_info message is the
same), and measures each visible object (:class:`~sam2_ros.tracking.objects3d.Objects3D`).

Nothing is lost to bad input: a frame without depth, without camera_info, or with input the
3-D step refuses (an encoding other than 16UC1 / 32FC1, a depth size that is no integer scale of
the colour image's, a zero K, a camera_info for another image size) has no 3-D; the reason is
counted and logged (rate-limited), and the frame's 2-D outputs are out already. Depth pixels
that are 0, NaN or inf are no depth, not errors: an object with fewer than ``depth_min_points``
valid ones has no 3-D on that frame (counted, logged).
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from sam2_ros.ros.conversions import ConversionError
from sam2_ros.ros.depth_input import camera_info_to_intrinsics, depth_image_to_numpy
from sam2_ros.ros.depth_sync import DepthBuffer
from sam2_ros.ros.prompts import format_stamp, stamp_to_ns
from sam2_ros.tracking.objects3d import Object3D, Objects3D, Objects3DError, VISIBLE

__all__ = ['Objects3DStep', 'SETTINGS', 'masks_from_logits']

WINDOW = 300  # step times kept for the percentiles
# the node's parameters that set the 3-D step
SETTINGS = ('depth_max_delay', 'depth_buffer', 'depth_min_points', 'depth_erosion_px', 'max_points_per_object')


def masks_from_logits(logits, indices: Sequence[int], threshold: float, hw: Tuple[int, int]) -> np.ndarray:
    """(n, H, W) bool masks ``logits[indices] > threshold`` of a tracker's (N, H, W) logits.

    CPU logits are thresholded with numpy, one object at a time into one array: torch's
    indexing by a list copies the floats first and its threaded comparison waits for cores on a
    busy machine (13 ms for one 640x480 object under load, against 0.2 ms)."""
    out = np.empty((len(indices),) + tuple(hw), bool)
    if not len(indices):
        return out
    if getattr(logits, 'device', None) is not None and (logits.device.type != 'cpu' or not logits.dtype.is_floating_point
                                                        or logits.dtype.itemsize < 4):
        # a GPU's (or a half-precision CPU tensor numpy cannot view): compared where it is
        return np.stack([(logits[i] > threshold).cpu().numpy() for i in indices])
    values = logits.numpy() if hasattr(logits, 'numpy') else np.asarray(logits)
    for j, i in enumerate(indices):
        np.greater(values[i], threshold, out=out[j])
    return out


def _estimator(p: Mapping) -> Objects3D:
    # no oriented boxes: none of the node's messages carries them (a quarter of the step's time)
    return Objects3D(erosion_px=int(p['depth_erosion_px']), min_points=int(p['depth_min_points']),
                     max_points_per_object=int(p['max_points_per_object']), oriented=False)


class Objects3DStep:
    """See the module docstring.

    Args:
        p: the node's parameters (:data:`SETTINGS`, ``max_image_pixels``).
        log: ``log(level, key, text)``, rate-limited per key (the node's
            :class:`~sam2_ros.ros.rate_limited_log.RateLimitedLog`).
    """

    def __init__(self, p: Mapping, log: Callable[[str, str, str], None]) -> None:
        self._p = p
        self._log = log
        self.buffer = DepthBuffer(p['depth_max_delay'], p['depth_buffer'])
        self.estimator = _estimator(p)
        self._lock = threading.Lock()
        self._info_key: Tuple[object, object] = (None, None)  # (camera_info message, Intrinsics or the error)
        self._times: deque = deque(maxlen=WINDOW)
        self.reset_counts()

    def reset_counts(self) -> None:
        with self._lock:
            self.camera_infos = 0
            self.frames_3d = 0  # frames paired with depth and measured
            self.frames_without_3d = 0  # frames without depth, camera_info, or with refused input
            self.errors = 0  # frames whose depth or camera_info was refused
            self.objects_without_3d = 0  # visible objects with too few valid depth pixels or an empty mask (summed)
            self.last_error: Optional[str] = None
            self.last_objects = (0, 0)  # (with 3-D, visible without) on the last frame measured
            self._times.clear()

    def configure(self, p: Mapping, changed: Mapping) -> None:
        """Live parameter changes (``p``: every value now, ``changed``: those just set)."""
        if 'depth_max_delay' in changed or 'depth_buffer' in changed:
            self.buffer.configure(p['depth_max_delay'], p['depth_buffer'])
        if any(k in changed for k in ('depth_min_points', 'depth_erosion_px', 'max_points_per_object')):
            self.estimator = _estimator(p)  # swapped whole: the worker takes it once per frame

    # ------------------------------------------------------------------ callbacks
    def on_depth(self, msg) -> None:
        """A depth image arrived (a callback): kept by its stamp, decoded only if a frame pairs with it."""
        self.buffer.put(stamp_to_ns(msg.header.stamp), msg)

    def on_camera_info(self, msg) -> None:
        """The colour camera's camera_info arrived (a callback)."""
        with self._lock:
            self.camera_infos += 1
        self.buffer.put_camera_info(msg)

    # ------------------------------------------------------------------ worker
    def pin(self, stamp_ns: int) -> None:
        """The worker picked a frame stamped ``stamp_ns``: keep the depth that may pair with it."""
        self.buffer.pin(stamp_ns)

    def run(self, stamp_ns: int, ids: Sequence[int], masks_of: Callable[[List[int]], object],
            scores: Sequence[float], labels: Mapping[int, str], states: Mapping[int, str],
            with_points: bool) -> Optional[Tuple[object, List[Object3D]]]:
        """The 3-D of a frame stamped ``stamp_ns`` whose objects are ``ids`` (with their scores,
        labels and states): ``(the depth image's header, [Object3D of the visible objects])``,
        or None when the frame has no 3-D (the reason is counted and logged).
        ``masks_of(indices)``: the (n, H, W) bool masks of the objects at those indices of ``ids``
        (numpy or torch), at the colour image's size."""
        start = time.perf_counter()
        without_info = self.buffer.counts['no_camera_info']  # only this worker takes: no race
        match = self.buffer.take(stamp_ns)
        if match is None:
            self._without_depth(stamp_ns, self.buffer.counts['no_camera_info'] > without_info)
            return None
        try:
            depth = depth_image_to_numpy(match.depth, max_pixels=self._p['max_image_pixels'])
            k = self._intrinsics(match.camera_info)
            visible = [n for n, i in enumerate(ids) if states.get(i, VISIBLE) == VISIBLE]
            masks = masks_of(visible)
            objects = self.estimator.estimate(
                masks, [ids[n] for n in visible], depth, k, scores=[float(scores[n]) for n in visible],
                labels={i: labels.get(i) for i in ids}, with_points=with_points)
        except (Objects3DError, ConversionError) as error:
            self._refused(error)
            return None
        missing = [o for o in objects if not o.has_3d]
        for o in missing:
            reason = o.reason.replace('min_points', 'depth_min_points')
            if 'depth pixels' in reason:
                reason += (' (0, NaN or inf depth is no depth: is the object too close or too far for the depth '
                           'camera, or its surface black or shiny?)')
            self._log('warning', 'no_depth', f'object {o.obj_id}: no 3-D on this frame: {reason}')
        with self._lock:
            self.frames_3d += 1
            self.objects_without_3d += len(missing)
            self.last_objects = (len(objects) - len(missing), len(missing))
            self._times.append(time.perf_counter() - start)
        return match.depth.header, objects

    def _intrinsics(self, info):
        """The camera_info's intrinsics, decoded once per message (raises its error each time)."""
        cached_info, cached = self._info_key
        if cached_info is not info:
            try:
                cached = camera_info_to_intrinsics(info)
            except Objects3DError as error:
                cached = error
            self._info_key = (info, cached)
        if isinstance(cached, Exception):
            raise cached
        return cached

    def _without_depth(self, stamp_ns: int, no_camera_info: bool) -> None:
        buf = self.buffer
        with self._lock:
            self.frames_without_3d += 1
        if buf.counts['put'] == 0:
            self._log('warning', 'depth_none', 'depth is on but no depth image has come on `depth` yet: frames go '
                      'out without 3-D (is `depth` remapped to the registered depth topic?)')
        elif no_camera_info:
            self._log('warning', 'depth_camera_info', 'depth images come, but no camera_info has come on '
                      '`camera_info` yet: frames go out without 3-D (remap `camera_info` to the colour '
                      "camera's camera_info)")
        else:
            gap = buf.last_miss_gap_ns
            nearest = 'none is kept' if gap is None else f'the nearest is {gap / 1e6:+.1f} ms away'
            self._log('warning', 'depth_unpaired', f'no depth image within depth_max_delay = '
                      f'{buf.max_delay_ns / 1e9:g} s of the frame stamped {format_stamp(stamp_ns)} ({nearest}): no '
                      '3-D for it; if depth and colour come from one camera, raise depth_max_delay or depth_buffer, '
                      'else check that both are stamped by the same clock')

    def _refused(self, error: Exception, level: str = 'warning', text: Optional[str] = None) -> None:
        text = text or f'no 3-D for the frame: {error}'
        with self._lock:
            self.frames_without_3d += 1
            self.errors += 1
            self.last_error = text if len(text) <= 300 else text[:300] + '...'
        self._log(level, '3d:' + type(error).__name__ + re.sub(r'\d+', '#', str(error))[:80], text)

    def failed(self, error: Exception) -> None:
        """An unexpected error in a frame's 3-D (not bad input): counted and logged as an error."""
        self._refused(error, 'error', f'no 3-D for the frame: {type(error).__name__}: {error}')

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> Dict[str, object]:
        """The counters and times, for the camera's diagnostics (``depth_*`` and ``objects_3d_*``)."""
        counts = dict(self.buffer.counts)
        delay = self.buffer.last_delay_ns
        with self._lock:
            out: Dict[str, object] = {
                'depth_received': counts['put'], 'depth_camera_info_received': self.camera_infos,
                'depth_paired_exact': counts['exact'], 'depth_paired_nearest': counts['nearest'],
                'depth_unpaired': counts['none'], 'depth_without_camera_info': counts['no_camera_info'],
                'depth_last_delay_ms': delay / 1e6 if delay is not None else -1.0,
                'frames_3d': self.frames_3d, 'frames_without_3d': self.frames_without_3d,
                'errors_3d': self.errors, 'objects_3d': self.last_objects[0],
                'objects_without_3d': self.objects_without_3d,
            }
            if self.last_error is not None:
                out['last_error_3d'] = self.last_error
            if self._times:
                ms = np.asarray(self._times) * 1000.0
                out['objects_3d_p50_ms'] = float(np.percentile(ms, 50))
                out['objects_3d_p95_ms'] = float(np.percentile(ms, 95))
        return out
