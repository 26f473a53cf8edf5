"""A detector run off the caller's thread, so that it never delays a frame's masks (no rclpy).

:class:`DetectorRunner` holds one worker thread and one job slot: :meth:`~DetectorRunner.submit`
copies the frame, hands it to the thread and returns at once (False, and nothing is queued,
while a run is in progress: a frame waiting behind a slow detector would only be staler when
its turn came; the caller submits again when it is due); :meth:`~DetectorRunner.poll` returns a
finished run once. A run's exception is caught and returned as the result's ``error`` (the
thread goes on). :meth:`~DetectorRunner.discard` forgets the run in progress or finished (the
text changed, the tracker was reset): its result will never be returned.

With ``asynchronous=False`` :meth:`submit` runs the detector on the caller's thread and the result
is ready when it returns: deterministic, for evaluation and tests.

On the CPU the detector and the tracker share the cores: the worker thread lowers its own
scheduling priority (``niceness``, Linux; the threads torch starts from it inherit it), so the
tracker's frames come first and the detector takes the idle time.

Diagnostics (:meth:`~DetectorRunner.stats`): runs, failures, discarded results and the latency of
the last runs (ms: last, mean, p50, p95).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Optional

import numpy as np

LATENCY_WINDOW = 100  # runs the latency percentiles are taken over


@dataclass
class DetectorResult:
    """One finished detector run."""

    frame_index: int  # the caller's index of the frame it ran on
    stamp: Any  # the frame's stamp, as given to submit
    query: Any  # what was detected, as given to submit
    context: Any  # anything the caller passed along with the frame (its objects then)
    detections: Any = None  # what the detector returned (None on error)
    error: Optional[str] = None  # "ExceptionType: message" when the run raised
    latency_s: float = 0.0  # wall time of the detector call


class DetectorRunner:
    """Runs ``detect(frame, query)`` off the caller's thread, one run at a time (see the module doc)."""

    def __init__(self, detect: Callable[[np.ndarray, Any], Any], asynchronous: bool = True, niceness: int = 10,
                 name: str = "sam2_ros-detector") -> None:
        self._detect = detect
        self.asynchronous = bool(asynchronous)
        self._niceness = int(niceness)
        self._name = name
        self._cond = threading.Condition()
        self._job: Optional[tuple] = None  # (generation, frame, DetectorResult) waiting for the thread
        self._running = False
        self._result: Optional[DetectorResult] = None  # finished, not yet polled
        self._generation = 0
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self.runs = 0
        self.failures = 0
        self.discarded = 0
        self._latencies: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._last_latency: Optional[float] = None

    @property
    def busy(self) -> bool:
        """A run is waiting for the thread or in progress."""
        with self._cond:
            return self._job is not None or self._running

    def submit(self, frame: np.ndarray, frame_index: int, stamp: Any = None, query: Any = None,
               context: Any = None) -> bool:
        """Run the detector on (a copy of) ``frame``. Returns at once with True, or with False
        when a run is in progress (nothing is queued). Synchronous runners return when done."""
        result = DetectorResult(int(frame_index), stamp, query, context)
        frame = np.array(frame, copy=True)  # the caller may reuse its buffer
        with self._cond:
            if self._closed:
                raise RuntimeError("the detector runner is closed")
            if self._job is not None or self._running:
                return False
            generation = self._generation
            if not self.asynchronous:
                self._running = True
            else:
                self._job = (generation, frame, result)
                self._start_thread()
                self._cond.notify_all()
                return True
        self._run(generation, frame, result)
        return True

    def poll(self) -> Optional[DetectorResult]:
        """The finished run, once; None when there is none (or it was discarded)."""
        with self._cond:
            result, self._result = self._result, None
            return result

    def discard(self) -> None:
        """Forget the run in progress and the finished one: neither will be returned."""
        with self._cond:
            self._generation += 1
            if self._result is not None:
                self._result = None
                self.discarded += 1
            if self._job is not None:  # not started yet: never runs
                self._job = None
                self.discarded += 1

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until no run is in progress (tests, shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None and not self._running, timeout)

    def stats(self) -> Dict[str, float]:
        """Counters and latency (ms) for diagnostics."""
        with self._cond:
            lat = np.array(self._latencies) * 1e3
            return {
                "runs": self.runs, "failures": self.failures, "discarded": self.discarded,
                "busy": self._job is not None or self._running,
                "latency_ms_last": float(self._last_latency * 1e3) if self._last_latency is not None else float("nan"),
                "latency_ms_mean": float(lat.mean()) if len(lat) else float("nan"),
                "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
            }

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the run in progress, which cannot be interrupted)."""
        with self._cond:
            self._closed = True
            self._job = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------------ internals
    def _start_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        if self._niceness > 0:
            try:  # Linux: the priority of this thread alone (and of threads it starts)
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self._niceness))
            except (AttributeError, OSError):
                pass
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    return
                generation, frame, result = self._job
                self._job = None
                self._running = True
            self._run(generation, frame, result)

    def _run(self, generation: int, frame: np.ndarray, result: DetectorResult) -> None:
        start = time.perf_counter()
        try:
            result.detections = self._detect(frame, result.query)
        except Exception as error:  # noqa: BLE001 - a failed run is a result; the thread goes on
            result.error = f"{type(error).__name__}: {error}"
        result.latency_s = time.perf_counter() - start
        with self._cond:
            self._running = False
            self.runs += 1
            self._last_latency = result.latency_s
            self._latencies.append(result.latency_s)
            if result.error is not None:
                self.failures += 1
            if generation != self._generation:
                self.discarded += 1
            else:
                if self._result is not None:  # a finished run nobody polled: replaced by the newer one
                    self.discarded += 1
                self._result = result
            self._cond.notify_all()
