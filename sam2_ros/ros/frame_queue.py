"""Frames waiting for the worker (no rclpy): the newest only (``frame_policy: latest``) or all
in order (``all``), bounded in frames and bytes."""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Optional

from sam2_ros.ros.diagnostics import Stats

ALL_POLICY_QUEUE_LIMIT = 500  # frames waiting with frame_policy: all (then the oldest go)
ALL_POLICY_QUEUE_BYTES = 1 << 30  # and at most this many bytes of image data waiting


class FrameQueue:
    """Frames waiting for the worker: ``(message, compressed, received)`` items. Dropped frames
    are counted in ``stats`` ('dropped')."""

    def __init__(self, stats: Stats, policy: str = 'latest') -> None:
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._stats = stats
        self.policy = policy
        # Called after a frame is queued or the queue is woken: the worker serving several
        # cameras (sam2_ros.ros.shared_worker) waits on all their queues at once.
        self.listener: Optional[Callable[[], None]] = None

    def put(self, item) -> int:
        """Queue a frame; returns how many frames were dropped for it."""
        with self._cond:
            dropped = 0
            if self.policy == 'latest':
                dropped = len(self._items)
                self._items.clear()
            else:  # bounded in frames and in bytes (a flood of big frames must not exhaust memory)
                size = _nbytes(item)
                total = sum(_nbytes(i) for i in self._items)
                while self._items and (len(self._items) >= ALL_POLICY_QUEUE_LIMIT
                                       or total + size > ALL_POLICY_QUEUE_BYTES):
                    total -= _nbytes(self._items.popleft())
                    dropped += 1
            self._items.append(item)
            self._stats.note_queue(len(self._items))
            self._cond.notify()
        if dropped:
            self._stats.count('dropped', dropped)
        if self.listener is not None:
            self.listener()
        return dropped

    def get_nowait(self):
        """The next frame, or None at once when none is waiting."""
        with self._cond:
            return self._items.popleft() if self._items else None

    def get(self, timeout: float):
        """The next frame, waiting up to ``timeout`` s for one; None if none came."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def set_policy(self, policy: str) -> None:
        with self._cond:
            self.policy = policy
            if policy == 'latest' and len(self._items) > 1:
                dropped = len(self._items) - 1
                while len(self._items) > 1:
                    self._items.popleft()
                self._stats.count('dropped', dropped)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self.listener is not None:
            self.listener()


def _nbytes(item) -> int:
    return len(getattr(item[0], 'data', b''))
