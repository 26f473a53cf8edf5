"""What ``sam2_live`` records of the node: its masks (matched to the frames sent by their
header stamps), overlays and diagnostics, written to a rosbag2 as they arrive."""
from __future__ import annotations

import queue
import threading
import time

from sam2_ros.tools import bagio
from sam2_ros.tools.live_node import LiveError


class Recorder:
    """Records the node's outputs: subscription callbacks only time-stamp and queue the raw bytes;
    a thread writes them to the output bag and matches the masks to the frames sent."""

    def __init__(self, path, storage: str, fqn: str, playclock, index_of: dict[int, int]):
        self.writer = None  # opened in the thread (sqlite3 connections belong to one thread)
        self._path, self._storage = path, storage
        self.fqn = fqn
        self.playclock = playclock  # wall (monotonic) time -> playback clock, ns
        self.index_of = index_of    # image stamp ns -> frame index
        self.store = bagio.typestore()
        self.lock = threading.Lock()
        self.received: dict[int, float] = {}   # image stamp ns -> arrival (monotonic), first one
        self.last_answered = -1                # highest frame index answered
        self.last_arrival = None
        self.unmatched = 0
        self.repeated = 0
        self.counts: dict[str, int] = {}
        self.diagnostics: list[dict] = []      # the node's own: stamp ns and values
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._work, name='sam2_live_recorder', daemon=True)
        self._thread.start()
        self._opened.wait()
        if self.writer is None:
            raise LiveError(f'cannot write the output bag {path}: {self.errors[-1]}')

    def callback(self, topic: str, msgtype: str):
        def on_message(raw: bytes) -> None:
            self._queue.put((topic, msgtype, raw, time.monotonic()))
        return on_message

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        try:
            self.writer = bagio.BagWriter(self._path, storage=self._storage).__enter__()
        except Exception as error:  # noqa: BLE001 - reported by __init__
            self.errors.append(f'{type(error).__name__}: {error}')
            return
        finally:
            self._opened.set()
        try:
            self._loop()
        finally:
            self.writer.close()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, msgtype, raw, arrival = item
            try:
                self._record(topic, msgtype, raw, arrival)
            except Exception as error:  # noqa: BLE001 - keep recording; report it
                self.errors.append(f'{topic}: {type(error).__name__}: {error}')

    def _record(self, topic, msgtype, raw, arrival) -> None:
        msg = self.store.deserialize_cdr(raw, msgtype)
        if msgtype == 'diagnostic_msgs/msg/DiagnosticArray':
            mine = [s for s in msg.status if s.name.startswith(self.fqn + ':')]
            if not mine:
                return  # another node's diagnostics
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            with self.lock:
                self.diagnostics.append({'stamp_ns': stamp, 'arrival': arrival, 'level': int(mine[0].level),
                                         'message': str(mine[0].message),
                                         'values': {kv.key: kv.value for kv in mine[0].values}})
        self.writer.write_raw(topic, msgtype, raw, self.playclock(arrival))
        with self.lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if topic != self.fqn + '/masks':
                return
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            index = self.index_of.get(stamp)
            if index is None:
                self.unmatched += 1
            elif stamp in self.received:
                self.repeated += 1
            else:
                self.received[stamp] = arrival
                self.last_answered = max(self.last_answered, index)
            self.last_arrival = arrival

    def state(self) -> tuple[int, int, float | None]:
        with self.lock:
            return len(self.received), self.last_answered, self.last_arrival
