"""The one worker thread of a process serving several cameras (issue 13).

Every camera is an ordinary :class:`~sam2_ros.ros.node.TrackerNode` (own name, namespace,
topics, parameters, lifecycle, prompt queue and frame queue with its own ``frame_policy``);
instead of a thread of its own, an active camera is *attached* here. The worker runs in
rounds. A round:

1. runs the long requests (``~/track_everything``) waiting on any camera;
2. takes the next frame of every attached camera that has one (with ``frame_policy: latest``
   its newest, older ones having been dropped on arrival; with ``all`` its oldest): at most one
   frame per camera per round, so no camera starves another, whatever their rates;
3. converts them (a refused image is that camera's problem only) and encodes all of them as one
   batch (``Tracker.encode``: one image-encoder run for the stacked frames, each resized to the
   model's input first, so cameras of different resolutions batch too);
4. tracks and publishes each camera's frame with its features, under that camera's own tracker
   lock, so its prompts, resets and parameters apply exactly as on a single node.

A camera whose image stops simply has no frame in the next rounds; a camera detached
(deactivated, cleaned up, destroyed) is skipped from the next round on, and a frame of its in
progress finishes unpublished (its stop event is set), as on a single node.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

from sam2_ros.shared_model import SHARED_PARAMETERS, SharedModel, encode_together

IDLE_WAIT_S = 0.2  # longest sleep with nothing to do (stop requests wake it earlier)


class SharedWorker:
    """One thread tracking the frames of every attached camera, batched (see the module)."""

    def __init__(self, log_error=None) -> None:
        self._cond = threading.Condition()
        self._members: Dict[object, threading.Event] = {}  # node -> its activation's stop event (in attach order)
        self._busy: set = set()  # nodes whose frame the current round is working on
        self._pending = False  # something was queued since the worker last looked
        self._quit = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._log_error = log_error or (lambda text: None)
        self.rounds = 0  # rounds that tracked at least one frame
        self.batched_frames = 0  # frames whose features came from a batch of two or more

    # ------------------------------------------------------------------ membership
    @property
    def attached(self) -> int:
        """How many cameras the worker serves now."""
        return len(self._members)

    def attach(self, node, stop: threading.Event) -> None:
        """Start tracking ``node``'s frames (its activate); starts the thread on first use."""
        node.frames.listener = self.notify
        with self._cond:
            self._members[node] = stop
            if self._thread is None or not self._thread.is_alive():
                self._quit.clear()
                self._thread = threading.Thread(target=self._loop, name='sam2_shared_worker', daemon=True)
                self._thread.start()
            self._pending = True
            self._cond.notify_all()

    def detach(self, node, timeout: Optional[float]) -> bool:
        """Stop tracking ``node``'s frames (its deactivate, cleanup or shutdown; its stop event
        is set already, so a frame of it in progress publishes nothing). ``timeout`` None:
        return at once (a callback never waits for a frame); else wait up to ``timeout`` s for
        that frame to finish. True when no frame of ``node`` is in progress."""
        with self._cond:
            self._members.pop(node, None)
            self._cond.notify_all()
            if timeout is not None:
                self._cond.wait_for(lambda: node not in self._busy, timeout)
            return node not in self._busy

    def notify(self) -> None:
        """A frame or job was queued on some camera (called by its frame queue)."""
        with self._cond:
            self._pending = True
            self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> bool:
        """End the thread after its current round (process shutdown). True if it ended."""
        self._quit.set()
        self.notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # ------------------------------------------------------------------ the rounds
    def _loop(self) -> None:
        while not self._quit.is_set():
            with self._cond:
                if not self._pending:
                    self._cond.wait(IDLE_WAIT_S)
                self._pending = False
                members = [(n, s) for n, s in self._members.items() if not s.is_set()]
            for node, stop in members:
                if not stop.is_set():
                    node.run_jobs(stop)
            taken = []
            for node, stop in members:
                item = node.frames.get_nowait()
                if item is not None and not stop.is_set():
                    taken.append((node, stop, item))
            if taken:
                self._round(taken)
                with self._cond:  # frames may still be waiting (frame_policy: all): no sleep
                    self._pending = True

    def _round(self, taken: List[Tuple[object, threading.Event, tuple]]) -> None:
        with self._cond:
            self._busy = {node for node, _, _ in taken}
        try:
            ready = []  # (node, stop, prepared frame)
            for node, stop, item in taken:
                try:
                    frame = node.prepare(*item)
                except Exception as error:  # noqa: BLE001 - one camera's failure is its own
                    node.frame_failed(error, stop)
                    continue
                if frame is not None:
                    ready.append((node, stop, frame))
            features = self._encode(ready)
            for (node, stop, frame), feats in zip(ready, features):
                if stop.is_set():
                    continue  # detached meanwhile: nothing of it goes out
                try:
                    node.track_prepared(frame, stop, features=feats)
                except Exception as error:  # noqa: BLE001 - the other cameras go on
                    node.frame_failed(error, stop)
                with self._cond:  # that camera's frame is done: a detach waiting for it returns
                    self._busy.discard(node)
                    self._cond.notify_all()
            if ready:
                self.rounds += 1
        finally:
            with self._cond:
                self._busy = set()
                self._cond.notify_all()

    def _encode(self, ready) -> list:
        """Each ready frame's features, from one encoder run over all of them; None for a frame
        its tracker encodes itself (a lone frame: the same numbers either way, so the usual
        path; a tracker gone or one whose exported step starts at the image)."""
        features: list = [None] * len(ready)
        batch = [k for k, (node, _, _) in enumerate(ready)
                 if node.tracker is not None and node.tracker.accepts_features]
        if len(batch) < 2:
            return features
        trackers = [ready[k][0].tracker for k in batch]
        try:
            feats = encode_together(trackers, [ready[k][2][1] for k in batch])
        except Exception as error:  # noqa: BLE001 - each camera then encodes its own frame
            self._log_error(f'batched encoding failed ({type(error).__name__}: {error}); '
                            'encoding the frames one at a time')
            return features
        for k, f in zip(batch, feats):
            features[k] = f
        self.batched_frames += len(batch)
        return features


class SharedCameras:
    """What the cameras of one process share: the model (:class:`SharedModel`) and the worker."""

    def __init__(self, log_error=None) -> None:
        self.model = SharedModel()
        self.worker = SharedWorker(log_error)

    def refusal(self, name: str, value) -> Optional[str]:
        """Why one camera may not set parameter ``name`` to ``value`` (None: it may): the
        parameters that build the model are the same on every camera, once it is loaded."""
        loaded = self.model.settings
        if loaded is None or name not in SHARED_PARAMETERS or loaded[name] == value:
            return None
        return (f'{name} is shared by every camera of this process (one model, loaded with {name} = '
                f'{loaded[name]!r}): it cannot change on one camera; run a separate process for a camera '
                'that needs another value')
