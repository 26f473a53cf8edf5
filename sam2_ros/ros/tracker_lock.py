"""The tracker lock that no callback waits for (no rclpy).

The worker holds the lock for a whole frame. What a callback needs done under it (install a
tracker, reset, change a setting) is run at once when the lock is free, else queued and run,
in order, by the holder before it lets go: a callback never waits for the frame being tracked.
"""
from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import Callable, Iterator


class TrackerLock:
    """``run_or_queue(command)`` for callbacks, ``held()`` for the worker; ``on_error(error)``
    is told of a command that raised (the others still run)."""

    def __init__(self, on_error: Callable[[Exception], None]) -> None:
        self._lock = threading.Lock()
        self._commands: deque = deque()
        self._commands_lock = threading.Lock()
        self._on_error = on_error

    def run_or_queue(self, command: Callable[[], None]) -> bool:
        """Run ``command()`` under the lock now if it is free, else queue it for the holder
        (the worker, mid-frame) to run before it lets go. Never waits. Commands run in the
        order they were given. Returns True if it ran now."""
        with self._commands_lock:
            if not self._lock.acquire(blocking=False):
                self._commands.append(command)
                return False
            self._commands.append(command)
        self._release()
        return True

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock (waiting for it: worker threads only), running the commands queued
        meanwhile before letting go."""
        self._lock.acquire()
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """Run the queued commands, then release the lock (held by the caller). The queue is
        checked empty and the lock released under the commands lock, so a command queued
        meanwhile is never left behind."""
        while True:
            with self._commands_lock:
                if not self._commands:
                    self._lock.release()
                    return
                command = self._commands.popleft()
            try:
                command()
            except Exception as error:  # noqa: BLE001 - one failed command must not stop the others
                self._on_error(error)
