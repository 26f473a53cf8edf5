"""The node's view of time along the image stream (no rclpy; unit-tested without ROS).

:class:`Timeline` remembers the stamps of the frames tracked and decides, for each new frame,
from its header stamp:

* ``ok``: the stamp is not older than the last tracked frame's (equal stamps are tracked too:
  a frame sent again; zero stamps, from drivers that do not stamp, are never judged);
* ``out_of_order``: older than the last tracked frame by at most ``jump_threshold_s``: a
  small reordering on the way (several publishers, a multi-threaded driver). The tracker's
  memory runs forward in time, so the frame is dropped, and counted;
* ``jump``: older by more than ``jump_threshold_s``, or older at all after ``/clock`` went back
  (:meth:`clock_jumped`), or the :data:`MAX_OUT_OF_ORDER` th frame in a row older than the last
  tracked one (a bag shorter than the threshold replayed in a loop without ``/clock``): time
  jumped backwards (a bag replayed in a loop, a simulator reset). The node resets the tracker
  (the objects' memories belong to the old timeline) and says so.

It also maps the stamps of the frames in the tracker's prompt buffer to their frame indices
(:meth:`buffered`), which :meth:`sam2_ros.ros.prompts.PromptQueue.take` uses to send a prompt
stamped with one of them to that frame.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Dict, Iterable, Optional

MAX_OUT_OF_ORDER = 5  # frames in a row stamped before the last tracked one: time went back


class Timeline:
    def __init__(self, jump_threshold_s: float = 1.0) -> None:
        self.jump_threshold_s = float(jump_threshold_s)
        self._lock = threading.Lock()
        self._frames: "OrderedDict[int, int]" = OrderedDict()  # stamp ns -> tracker frame index
        self.last_stamp: Optional[int] = None  # of the last tracked frame (nonzero stamps only)
        self._clock_jump = False
        self._behind = 0  # frames in a row found out of order

    def check(self, stamp_ns: int) -> str:
        """``ok``, ``out_of_order`` or ``jump`` for a frame stamped ``stamp_ns`` (see the module
        docstring). Call it once per frame; :meth:`tracked` records the frames tracked."""
        with self._lock:
            last = self.last_stamp
            if not stamp_ns or last is None or stamp_ns >= last:
                self._behind = 0
                return 'ok'
            self._behind += 1
            if (self._clock_jump or last - stamp_ns > self.jump_threshold_s * 1e9
                    or self._behind >= MAX_OUT_OF_ORDER):
                return 'jump'
            return 'out_of_order'

    def clock_jumped(self) -> None:
        """``/clock`` went backwards: the next frame stamped before the last tracked one starts
        a new timeline, however small the step."""
        with self._lock:
            self._clock_jump = True

    def tracked(self, stamp_ns: int, frame_index: int, buffered_frames: Iterable[int]) -> None:
        """Frame ``frame_index`` (stamped ``stamp_ns``) was tracked; ``buffered_frames``: the
        tracker's buffered frame indices now."""
        keep = set(buffered_frames)
        with self._lock:
            if stamp_ns:
                self._frames.pop(stamp_ns, None)  # a frame sent again: its newest index
                self._frames[stamp_ns] = frame_index
                self.last_stamp = stamp_ns if self.last_stamp is None else max(self.last_stamp, stamp_ns)
                self._clock_jump = False
                self._behind = 0
            for s in [s for s, i in self._frames.items() if i not in keep]:
                del self._frames[s]

    def buffered(self) -> Dict[int, int]:
        """Stamp -> tracker frame index of the tracked frames still in the prompt buffer."""
        with self._lock:
            return dict(self._frames)

    def forget_frames(self) -> None:
        """The tracker was reset: no frame can be prompted any more (the order is kept)."""
        with self._lock:
            self._frames.clear()

    def reset(self) -> None:
        """A new timeline: forget the frames and the last stamp."""
        with self._lock:
            self._frames.clear()
            self.last_stamp = None
            self._clock_jump = False
            self._behind = 0
