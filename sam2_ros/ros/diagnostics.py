"""Run-time statistics of the node and their diagnostic_msgs/DiagnosticArray form.

:class:`Stats` is filled by the node's threads (lock-protected) and summarized once a period:
frame rate, end-to-end latency inside the node (image received -> masks published) p50 / p95 /
max, the time of each stage, frames received / tracked / dropped / refused / out of order, time
jumps, prompts applied to past frames, objects and device memory.

Clocks: ``latency_*`` and the stage times are measured on the steady (monotonic) clock of the
machine, from the image's arrival in the node to the publication of its outputs, whatever
``use_sim_time`` says. ``stamp_age_*`` is the node's clock at publication minus the image's
header stamp: with ``use_sim_time`` the simulated clock (``/clock``), else the system clock; it
adds the camera's and the transport's delays (and any clock offset between the machines).

:func:`to_diagnostic_array` builds the message (no rclpy needed: message classes are
passed in or imported lazily).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

WINDOW = 300  # latencies kept for the percentiles (the most recent frames)
RATE_WINDOW_S = 5.0


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.received = 0
            self.tracked = 0
            self.dropped = 0
            self.refused = 0  # frames that could not be converted
            self.refused_too_large = 0  # of which: above max_image_pixels (from their headers)
            self.refused_format = 0  # of which: an encoding or compressed format not accepted
            self.prompt_errors = 0
            self.frame_errors = 0  # frames skipped by an unexpected error while tracking
            self.queue_max = 0  # most frames waiting at once
            self.last_error: Optional[str] = None
            self._last_error_at: Optional[float] = None
            self.objects = 0
            self.out_of_order = 0  # frames stamped before the last tracked one: dropped
            self.time_jumps = 0  # jumps back in time: tracker reset
            self.prompts_past = 0  # prompts applied to a frame in the prompt buffer
            self.last_received: Optional[float] = None
            self._latency: Deque[float] = deque(maxlen=WINDOW)
            self._age: Deque[float] = deque(maxlen=WINDOW)
            self._stages: Dict[str, Deque[float]] = {}
            self._done: Deque[float] = deque(maxlen=1000)

    def count(self, what: str, n: int = 1, error: Optional[str] = None) -> None:
        """Add ``n`` to counter ``what``; ``error``: the reason, kept as the last error."""
        with self._lock:
            setattr(self, what, getattr(self, what) + n)
            if what == 'received':
                self.last_received = time.monotonic()
            if error is not None:
                self.last_error = error if len(error) <= 300 else error[:300] + '...'
                self._last_error_at = time.monotonic()

    def note_queue(self, waiting: int) -> None:
        with self._lock:
            if waiting > self.queue_max:
                self.queue_max = waiting

    def frame_done(self, latency_s: float, stages: Dict[str, float], objects: int,
                   stamp_age_s: Optional[float] = None) -> None:
        with self._lock:
            if stamp_age_s is not None:
                self._age.append(stamp_age_s)
            now = time.monotonic()
            self.tracked += 1
            self.objects = objects
            self._latency.append(latency_s)
            self._done.append(now)
            for name, seconds in stages.items():
                self._stages.setdefault(name, deque(maxlen=WINDOW)).append(seconds)

    def snapshot(self) -> Dict[str, float]:
        """Numbers for the diagnostics (latencies in ms, rate in Hz)."""
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._done if now - t <= RATE_WINDOW_S]
            if len(recent) >= 2:
                rate = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)
            else:
                rate = 0.0
            out = {'rate_hz': rate, 'frames_received': self.received, 'frames_tracked': self.tracked,
                   'frames_dropped': self.dropped, 'frames_refused': self.refused,
                   'frames_refused_too_large': self.refused_too_large,
                   'frames_refused_format': self.refused_format,
                   'prompt_errors': self.prompt_errors, 'frame_errors': self.frame_errors,
                   'frames_waiting_max': self.queue_max, 'objects': self.objects,
                   'frames_out_of_order': self.out_of_order, 'time_jumps': self.time_jumps,
                   'prompts_on_past_frames': self.prompts_past,
                   'seconds_since_last_image': (now - self.last_received) if self.last_received else -1.0}
            if self.last_error is not None:
                out['last_error'] = self.last_error
                out['seconds_since_last_error'] = now - self._last_error_at
            lat = np.asarray(self._latency) * 1000.0
            if lat.size:
                out.update(latency_p50_ms=float(np.percentile(lat, 50)),
                           latency_p95_ms=float(np.percentile(lat, 95)),
                           latency_max_ms=float(lat.max()))
            if self._age:
                age = np.asarray(self._age) * 1000.0
                out.update(stamp_age_p50_ms=float(np.percentile(age, 50)),
                           stamp_age_max_ms=float(age.max()))
            for name, values in self._stages.items():
                out[f'{name}_p50_ms'] = float(np.median(np.asarray(values))) * 1000.0
            return out


def device_memory(device) -> Dict[str, float]:
    """Memory in MiB: CUDA allocated / reserved / peak on a GPU; the process's resident set
    size on the CPU."""
    out: Dict[str, float] = {}
    if device is not None and getattr(device, 'type', None) == 'cuda':
        import torch

        mib = 1024.0 ** 2
        out['cuda_allocated_mib'] = torch.cuda.memory_allocated(device) / mib
        out['cuda_reserved_mib'] = torch.cuda.memory_reserved(device) / mib
        out['cuda_peak_allocated_mib'] = torch.cuda.max_memory_allocated(device) / mib
    try:
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
        out['process_rss_mib'] = pages * os.sysconf('SC_PAGE_SIZE') / 1024.0 ** 2
    except (OSError, ValueError, IndexError):
        import resource

        out['process_peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def _format(value) -> str:
    if isinstance(value, float):
        return f'{value:.2f}'
    return str(value)


def status_level(state: str, snap: Dict[str, float], stale_after_s: float = 5.0) -> Tuple[int, str]:
    """(level, message): OK while tracking; WARN when inactive, without images or refusing them."""
    if state != 'active':
        return 1, f'node is {state}'
    since = snap.get('seconds_since_last_image', -1.0)
    if since < 0:
        return 1, 'active, no image received yet'
    if since > stale_after_s:
        return 1, f'no image for {since:.0f} s'
    if snap.get('frames_refused', 0) and not snap.get('frames_tracked', 0):
        return 1, 'images received but refused (see the log)'
    return 0, f'tracking {int(snap.get("objects", 0))} object(s) at {snap.get("rate_hz", 0.0):.1f} Hz'


def diagnostics_stamp(clock):
    """The stamp for a diagnostics message: the node clock's time now, or None while that
    clock has no time yet.

    The timer that publishes the diagnostics runs on the steady clock (it must tick while a
    bag is paused), but the message is stamped with the node's clock, as everything the node
    stamps. Under ``use_sim_time`` that clock reads 0 until the first ``/clock`` message: there
    is no time to stamp with yet, and a message stamped 0 (1970) would be read as stale or
    wrong by aggregators and recorders. So nothing is published until time is known; the
    counts lose nothing (they are cumulative) and the first message after ``/clock`` has them.
    """
    now = clock.now()
    if now.nanoseconds == 0:
        return None
    return now.to_msg()


def to_diagnostic_array(name: str, hardware_id: str, state: str, snap: Dict[str, float],
                        extra: Dict[str, object], stamp=None):
    """DiagnosticArray with one status ``name`` holding every number of ``snap`` and ``extra``."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    level, message = status_level(state, snap)
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message,
                              hardware_id=hardware_id)
    items: List[Tuple[str, object]] = [('state', state), *snap.items(), *extra.items()]
    status.values = [KeyValue(key=k, value=_format(v)) for k, v in items]
    array = DiagnosticArray(status=[status])
    if stamp is not None:
        array.header.stamp = stamp
    return array


def camera_extras(p: Dict, backend: str, device, prompts_pending: int, prompts_dropped: int, sim_time: bool,
                  objects: Dict[int, Tuple[str, float]], worker=None) -> Dict[str, object]:
    """What a camera's diagnostics report besides :meth:`Stats.snapshot`: the settings, the
    prompts waiting, each object's state and score (``objects``: id -> (state, score)), the
    device's memory and, for a camera of several in one process, what the shared worker did."""
    extra: Dict[str, object] = {
        'model': p['model'], 'image_size': p['image_size'], 'frame_policy': p['frame_policy'],
        'encoder_backend': backend, 'device': str(device) if device is not None else p['device'],
        'prompts_pending': prompts_pending, 'prompts_dropped': prompts_dropped,
        'clock': 'sim (/clock)' if sim_time else 'system'}
    for name in ('visible', 'occluded', 'lost'):
        extra[f'objects_{name}'] = sum(1 for st, _ in objects.values() if st == name)
    for obj_id, (st, score) in sorted(objects.items()):
        extra[f'object_{obj_id}'] = f'{st} ({score:.2f})'
    extra.update(device_memory(device))
    if worker is not None:
        extra['cameras_attached'] = worker.attached
        extra['frames_batched'] = worker.batched_frames
    return extra
