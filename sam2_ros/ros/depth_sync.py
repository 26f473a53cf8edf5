"""Depth images paired with colour frames by stamp, without waiting (no rclpy).

The depth callback puts each depth image into a small :class:`DepthBuffer`, keyed by its stamp,
and the camera_info callback the colour camera's latest camera_info. When the worker picks a
colour frame it pins the frame's stamp (:meth:`DepthBuffer.pin`): the depth images that could
pair with it are then kept however long the frame step takes (on a CPU, a second is 30 depth
images); after tracking it takes (:meth:`DepthBuffer.take`) the depth with the same stamp, or the
nearest one within ``max_delay`` seconds, including one that came during the step, else nothing
(the frame then goes out without 3-D, counted). Nothing here blocks. Thread-safe: callbacks put
from the executor's threads while the worker pins and takes.
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

__all__ = ['DepthBuffer', 'DepthMatch']


@dataclass(frozen=True)
class DepthMatch:
    """What :meth:`DepthBuffer.take` found for a colour frame."""

    depth: Any  # the depth image (a message or an array), as it was put
    camera_info: Any  # the latest camera_info put
    stamp_ns: int  # the depth image's stamp
    delay_ns: int  # depth stamp - colour stamp (signed)


class DepthBuffer:
    """The last ``capacity`` depth images by stamp, and those near a pinned colour stamp;
    :meth:`take` pairs a colour stamp with one.

    Args:
        max_delay: seconds a depth stamp may differ from the colour stamp (>= 0; 0: the same
            stamp only).
        capacity: depth images kept besides the pinned ones (>= 1): enough to cover the time
            between a colour frame's arrival and the worker's pinning it (at 30 Hz, 15 images
            are half a second).
    """

    MAX_PINS = 8  # colour frames in flight at most; an older pin (a frame never taken) lapses

    def __init__(self, max_delay: float = 0.02, capacity: int = 15) -> None:
        if isinstance(max_delay, bool) or not float(max_delay) >= 0.0:  # also refuses NaN
            raise ValueError(f'depth_max_delay must be a number of seconds >= 0, got {max_delay!r}')
        if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 1:
            raise ValueError(f'the depth buffer capacity must be an integer >= 1, got {capacity!r}')
        self.max_delay_ns = int(round(float(max_delay) * 1e9))
        self.capacity = int(capacity)
        self._lock = threading.Lock()
        self._stamps: List[int] = []  # ascending
        self._items: List[Any] = []  # depth images, aligned with _stamps
        self._arrivals: List[int] = []  # when each came (a count), aligned with _stamps
        self._arrived = 0
        self._info = None
        self._pins: List[int] = []  # colour stamps in flight, oldest first
        self.counts: Dict[str, int] = {'put': 0, 'exact': 0, 'nearest': 0, 'none': 0, 'no_camera_info': 0}
        self.last_delay_ns: Optional[int] = None  # of the last match
        self.last_miss_gap_ns: Optional[int] = None  # of the last miss: to the nearest depth (None: none kept)

    def put_camera_info(self, info) -> None:
        """The colour camera's camera_info (the latest goes with every match)."""
        with self._lock:
            self._info = info

    def configure(self, max_delay: Optional[float] = None, capacity: Optional[int] = None) -> None:
        """New settings (live parameter changes), checked as in the constructor."""
        checked = DepthBuffer(self.max_delay_ns / 1e9 if max_delay is None else max_delay,
                              self.capacity if capacity is None else capacity)
        with self._lock:
            self.max_delay_ns, self.capacity = checked.max_delay_ns, checked.capacity

    def put(self, stamp_ns: int, depth) -> None:
        """A depth image and its stamp (nanoseconds), from the depth callback. Out of order is
        fine; the same stamp again replaces the first. Beyond the capacity the image that came
        first goes (not the one stamped earliest: after a jump back in time, a bag replayed in
        a loop, the new images are stamped before the old ones and must stay), unless a pinned
        frame may pair with it."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.counts['put'] += 1
            self._arrived += 1
            i = bisect.bisect_left(self._stamps, stamp_ns)
            if i < len(self._stamps) and self._stamps[i] == stamp_ns:
                self._items[i], self._arrivals[i] = depth, self._arrived
                return
            self._stamps.insert(i, stamp_ns)
            self._items.insert(i, depth)
            self._arrivals.insert(i, self._arrived)
            if len(self._stamps) > self.capacity:  # the capacity, besides those pinned frames may need
                free = [j for j, t in enumerate(self._stamps)
                        if not any(abs(t - p) <= self.max_delay_ns for p in self._pins)]
                free.sort(key=self._arrivals.__getitem__)
                for j in sorted(free[:max(0, len(free) - self.capacity)], reverse=True):
                    del self._stamps[j], self._items[j], self._arrivals[j]

    def pin(self, stamp_ns: int) -> None:
        """A colour frame stamped ``stamp_ns`` is being tracked: keep the depth images that
        could pair with it until :meth:`take` (at most MAX_PINS frames are pinned at once)."""
        with self._lock:
            self._pins.append(int(stamp_ns))
            if len(self._pins) > self.MAX_PINS:
                del self._pins[0]

    def take(self, stamp_ns: int) -> Optional[DepthMatch]:
        """The depth for a colour frame stamped ``stamp_ns``: the same stamp, else the nearest
        within ``max_delay`` (the earlier on a tie), else None (counted in ``counts['none']``;
        a match without camera_info is None too, counted in ``counts['no_camera_info']``).
        Unpins the stamp. The depth stays buffered: several colour frames may share it."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            if stamp_ns in self._pins:
                self._pins.remove(stamp_ns)
            i = bisect.bisect_left(self._stamps, stamp_ns)
            best = None
            for j in (i - 1, i):  # the neighbours of the stamp
                if 0 <= j < len(self._stamps):
                    if best is None or abs(self._stamps[j] - stamp_ns) < abs(self._stamps[best] - stamp_ns):
                        best = j
            if best is None or abs(self._stamps[best] - stamp_ns) > self.max_delay_ns:
                self.counts['none'] += 1
                self.last_miss_gap_ns = None if best is None else self._stamps[best] - stamp_ns
                return None
            if self._info is None:
                self.counts['no_camera_info'] += 1
                return None
            found = self._stamps[best]
            self.counts['exact' if found == stamp_ns else 'nearest'] += 1
            self.last_delay_ns = found - stamp_ns
            return DepthMatch(self._items[best], self._info, found, found - stamp_ns)

    def clear(self) -> None:
        """Forget every depth image and pin (the camera_info stays)."""
        with self._lock:
            self._stamps.clear()
            self._items.clear()
            self._arrivals.clear()
            self._pins.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)
