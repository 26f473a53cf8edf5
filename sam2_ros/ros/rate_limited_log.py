"""Log each distinct message at most once per interval, with a count of the repeats (no rclpy:
any logger with ``info``, ``warning``, ``error`` methods)."""
from __future__ import annotations

import threading
import time
from typing import Dict, Tuple

LOG_INTERVAL_S = 5.0  # the same warning at most once per interval


class RateLimitedLog:
    """``log(level, key, text)``: ``text`` at ``level`` unless the same ``(level, key)`` was
    logged less than ``interval_s`` ago; the next one that goes out says how many were held back."""

    def __init__(self, logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: Dict[Tuple[str, str], Tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, level: str, key: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get((level, key), (-1e9, 0))
            if now - last < self._interval:
                self._last[(level, key)] = (last, suppressed + 1)
                return
            self._last[(level, key)] = (now, 0)
            if len(self._last) > 1000:  # many distinct messages: forget the old ones
                self._last = {k: v for k, v in self._last.items() if now - v[0] < self._interval}
        if suppressed:
            text += f' ({suppressed} more like it in the last {now - last:.0f} s)'
        # one call site per severity: rclpy's logger refuses two severities from one line
        if level == 'info':
            self._logger.info(text)
        elif level == 'warning':
            self._logger.warning(text)
        else:
            getattr(self._logger, level)(text)
