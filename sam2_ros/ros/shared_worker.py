"""The worker of a process serving several cameras; no rclpy here.

Every camera is an ordinary :class:`~sam2_ros.ros.node.TrackerNode` (own name, namespace,
topics, parameters, lifecycle, prompt queue and frame queue with its own ``frame_policy``);
instead of a thread of its own, an active camera's stream (:class:`~sam2_ros.ros.stream.CameraStream`)
is *attached* here. The worker runs in
rounds. A round:

1. takes the next frame of every attached camera that has one (with ``frame_policy: latest``
   its newest, older ones having been dropped on arrival; with ``all`` its oldest): at most one
   frame per camera per round, so no camera starves another, whatever their rates;
2. converts them (a refused image is that camera's problem only) and encodes all of them as one
   batch (``Tracker.encode``: one image-encoder run for the stacked frames, each resized to the
   model's input first, so cameras of different resolutions batch too; in two stages, below,
   frame by frame);
3. runs the long requests (``~/track_everything``) waiting on any camera, then tracks and
   publishes each camera's frame with its features, under that camera's own tracker lock, so
   its prompts, resets and parameters apply exactly as on a single node. The camera that goes
   first moves one place on every round, so every camera waits as long as the others on average.
   On a GPU, the frames of static trackers (``compile``) go through one step for all of them
   (:func:`sam2_ros.tracking.cameras.track_together`: cameras as one more batch dimension), each
   camera's stream taking its tracker lock around it (``CameraStream.frame_work``).

Two stages (the default on a CPU where torch may use two threads or more), each a thread with
half of the torch threads: the encoding stage converts and encodes the frames of a round one
camera at a time, taking each camera's frame when its turn comes, and hands each frame to the
tracking stage as soon as it is encoded (at most one waits), which runs 3 for it while the next
one is encoded. On a CPU two independent streams of work use the cores better than one stream
split across them (small operators do not scale to every core; separate processes overlap the
same way), the encoder costs about what the rest of a frame does, and a batch of frames costs
what they cost one at a time, so frame by frame keeps both cores busy at the latency of one
frame (a whole round encoded first would make each frame wait for the others': about twice the
latency, measured). On a GPU one thread does everything, batching the encoder (and the static
step): the GPU runs the work in order anyway, and CUDA graphs (``compile: reduce-overhead``)
replayed from two threads are not safe in torch before 2.12 (pytorch/pytorch#123177).

A camera whose image stops simply has no frame in the next rounds; a camera detached
(deactivated, cleaned up, destroyed) is skipped from the next round on, and a frame of it in
progress finishes unpublished (its stop event is set), as on a single node.

A camera is anything with the stream's worker interface: ``frames`` (``get_nowait()``, a
``listener`` called on every put), ``tracker``, ``prepare(*item)``, ``track_prepared(frame,
stop, features=)``, ``frame_work(frame, stop, features)`` (for the joint step),
``frame_failed(error, stop)``, ``run_jobs(stop)`` (``benchmarks/multi_camera.py`` drives this
worker with cameras of its own, without ROS).
"""
from __future__ import annotations

import threading
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from sam2_ros.tracking.cameras import track_together
from sam2_ros.ros.shared_model import SHARED_PARAMETERS, SharedModel
from sam2_ros.tracking.types import PromptError

IDLE_WAIT_S = 0.2  # longest sleep with nothing to do (stop requests wake it earlier)


def finish_frame(work: Iterator, answer) -> None:
    """Hand a frame's ``TrackResult`` (or the ``PromptError`` its tracker raised) back to the
    :meth:`~sam2_ros.ros.stream.CameraStream.frame_work` generator that asked for it: it publishes
    and ends. Another exception is raised inside it (the tracker lock is let go) and comes out here."""
    try:
        if isinstance(answer, Exception) and not isinstance(answer, PromptError):
            work.throw(answer)
        else:
            work.send(answer)
    except StopIteration:
        return
    raise RuntimeError('a frame asked for its tracker twice')


def track_alone(work: Iterator) -> None:
    """Run a frame's work (:meth:`~sam2_ros.ros.stream.CameraStream.frame_work`) with its own
    tracker call: one camera's frame at a time."""
    try:
        request = next(work, None)
        if request is not None:
            tracker, rgb, prompts, features = request
            try:
                answer = tracker.track(rgb, prompts, features=features)
            except PromptError as error:
                answer = error
            finish_frame(work, answer)
    finally:
        work.close()  # an error above: the camera's tracker lock is let go


def default_stages(device_type: str, threads: Optional[int] = None) -> int:
    """How many stages (threads) the worker runs: 2 on a CPU where torch may use two threads or
    more (``torch.get_num_threads()``: the cores, or ``OMP_NUM_THREADS``), else 1."""
    threads = torch.get_num_threads() if threads is None else threads
    return 2 if device_type == 'cpu' and threads >= 2 else 1


class SharedWorker:
    """The frames of every attached camera, batched and tracked in rounds (see the module).

    ``stages``: 1 (one thread does everything), 2 (encoding and tracking in two threads), or
    None to choose from the first camera's device (:func:`default_stages`). ``joint``: track
    the static steps of a round as one (True), one camera after another (False), or None: one
    step on a GPU, one after another on a CPU (where the bigger batch of memory-bound
    operators runs slower: 519 against 436 ms a round for three cameras of two objects, tiny
    at 256 px, one thread of the 2-core Xeon)."""

    def __init__(self, log_error=None, stages: Optional[int] = None, joint: Optional[bool] = None) -> None:
        if stages not in (None, 1, 2):
            raise ValueError(f'stages={stages!r}: the worker runs 1 or 2 stages (None: chosen from the device)')
        self._cond = threading.Condition()
        self._members: Dict[object, threading.Event] = {}  # node -> its activation's stop event (in attach order)
        self._in_flight: Dict[object, int] = {}  # node -> its frames taken and not yet tracked (or dropped)
        self._pending = False  # a frame was queued since the encoding stage last looked
        self._jobs = False  # ... or a job, since the tracking stage last looked
        self._handoff: Optional[list] = None  # a round encoded and waiting for the tracking stage
        self._quit = threading.Event()
        self._threads: List[threading.Thread] = []
        self._log_error = log_error or (lambda text: None)
        self.stages = stages
        self.joint = joint
        self.rounds = 0  # rounds begun
        self.batched_frames = 0  # frames whose features came from a batch of two or more
        self.joint_frames = 0  # frames tracked in a step with other cameras' frames

    # ------------------------------------------------------------------ membership
    @property
    def attached(self) -> int:
        """How many cameras the worker serves now."""
        return len(self._members)

    def attach(self, node, stop: threading.Event) -> None:
        """Start tracking ``node``'s frames (its activate); starts the threads on first use."""
        node.frames.listener = self.notify
        with self._cond:
            self._members[node] = stop
            if not any(t.is_alive() for t in self._threads):
                self._start(node)
            self._pending = self._jobs = True
            self._cond.notify_all()

    def _start(self, node) -> None:
        tracker = getattr(node, 'tracker', None)
        if self.stages is None:
            self.stages = default_stages(tracker.device.type if tracker is not None else 'cpu')
        self._quit.clear()
        self._handoff = None
        # OpenMP's thread count is a per-thread setting: each stage sets its own (one stage:
        # the caller's count; two: half of it each, so that neither starts a team of threads).
        threads = torch.get_num_threads()
        if self.stages == 1:
            loops = [(self._one_stage, threads)]
        else:
            loops = [(self._encoding_stage, max(1, threads // 2)), (self._tracking_stage, max(1, threads // 2))]
        self._threads = [threading.Thread(target=self._run, args=(loop, threads), name=f'sam2_shared_{loop.__name__[1:]}',
                                          daemon=True) for loop, threads in loops]
        for thread in self._threads:
            thread.start()

    def detach(self, node, timeout: Optional[float]) -> bool:
        """Stop tracking ``node``'s frames (its deactivate, cleanup or shutdown; its stop event
        is set already, so a frame of it in progress publishes nothing). ``timeout`` None:
        return at once (a callback never waits for a frame); else wait up to ``timeout`` s for
        its frames in progress to finish. True when no frame of ``node`` is in progress."""
        with self._cond:
            self._members.pop(node, None)
            self._cond.notify_all()
            if timeout is not None:
                self._cond.wait_for(lambda: not self._in_flight.get(node), timeout)
            return not self._in_flight.get(node)

    def notify(self) -> None:
        """A frame or job was queued on some camera (called by its frame queue)."""
        with self._cond:
            self._pending = self._jobs = True
            self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> bool:
        """End the threads after their current round (process shutdown). True if they ended."""
        self._quit.set()
        self.notify()
        for thread in self._threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ the stages
    @staticmethod
    def _run(loop, threads: int) -> None:
        torch.set_num_threads(threads)
        loop()

    def _one_stage(self) -> None:
        while not self._quit.is_set():
            self._wait_for_frames()
            self._run_jobs()
            taken = self._take()
            if taken:
                self._track(self._encode(taken))

    def _encoding_stage(self) -> None:
        while not self._quit.is_set():
            self._wait_for_frames()
            # Frame by frame: each goes to the tracking stage as soon as it is encoded (a whole
            # round encoded first would make every frame wait for the others' encoding too:
            # about twice the latency, for no speed on a CPU, where a batch costs what its frames
            # cost one at a time).
            for node, stop in self._round():
                taken = self._take_one(node, stop)  # when its turn comes: the freshest frame
                if taken is None:
                    continue
                encoded = self._encode([taken])
                with self._cond:  # at most one frame waits for the tracking stage
                    self._cond.wait_for(lambda: self._handoff is None or self._quit.is_set())
                    if self._quit.is_set():
                        return
                    self._handoff = encoded
                    self._cond.notify_all()

    def _tracking_stage(self) -> None:
        while not self._quit.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._handoff is not None or self._jobs or self._quit.is_set(), IDLE_WAIT_S)
                self._jobs = False
                encoded, self._handoff = self._handoff, None
                self._cond.notify_all()
            self._run_jobs()
            if encoded:
                self._track(encoded)

    def _wait_for_frames(self) -> None:
        with self._cond:
            if not self._pending:
                self._cond.wait(IDLE_WAIT_S)
            self._pending = False

    def _live(self) -> List[Tuple[object, threading.Event]]:
        with self._cond:
            return [(n, s) for n, s in self._members.items() if not s.is_set()]

    def _run_jobs(self) -> None:
        for node, stop in self._live():
            if not stop.is_set():
                node.run_jobs(stop)

    def _round(self) -> List[Tuple[object, threading.Event]]:
        """The cameras of the next round, in its order (the first moves one place each round)."""
        members = self._live()
        k = self.rounds % max(1, len(members))
        self.rounds += 1
        return members[k:] + members[:k]

    def _take_one(self, node, stop: threading.Event) -> Optional[Tuple[object, threading.Event, tuple]]:
        """``node``'s next frame (counted in flight), or None."""
        item = node.frames.get_nowait()
        if item is None or stop.is_set():
            return None
        with self._cond:
            self._in_flight[node] = self._in_flight.get(node, 0) + 1
            self._pending = True  # frames may still be waiting (frame_policy: all): look again without sleeping
        return node, stop, item

    def _take(self) -> List[Tuple[object, threading.Event, tuple]]:
        """The next frame of every camera that has one, in this round's order."""
        return [t for t in (self._take_one(node, stop) for node, stop in self._round()) if t is not None]

    def _done(self, node) -> None:
        """One frame of ``node`` is finished (tracked, refused or dropped): a detach waiting for it may return."""
        with self._cond:
            left = self._in_flight.get(node, 0) - 1
            if left > 0:
                self._in_flight[node] = left
            else:
                self._in_flight.pop(node, None)
            self._cond.notify_all()

    def _encode(self, taken) -> List[Tuple[object, threading.Event, tuple, object]]:
        """Stages 1-2 of a round: each taken frame converted, with its features (see :meth:`_features`)."""
        ready = []
        for node, stop, item in taken:
            try:
                frame = node.prepare(*item)
            except Exception as error:  # noqa: BLE001 - one camera's failure is its own
                frame = None
                node.frame_failed(error, stop)
            if frame is None or stop.is_set():
                self._done(node)
            else:
                ready.append((node, stop, frame))
        return [(*r, f) for r, f in zip(ready, self._features(ready))]

    def _track(self, encoded) -> None:
        """Stage 3 of a round: each camera's frame tracked and published; the frames of static
        trackers (``compile``/``static``) with batched features in one step, the others one
        camera after another (each publishing as soon as it is tracked)."""
        joint = [e for e in encoded if e[3] is not None and hasattr(e[0], 'frame_work')
                 and getattr(e[0].tracker, 'static', False)]
        if len(joint) < 2 or not (self.joint if self.joint is not None else joint[0][0].tracker.device.type == 'cuda'):
            joint = []
        for node, stop, frame, features in encoded:
            if any(node is j[0] for j in joint):
                continue
            try:
                if not stop.is_set():  # detached meanwhile: nothing of it goes out
                    node.track_prepared(frame, stop, features=features)
            except Exception as error:  # noqa: BLE001 - the other cameras go on
                node.frame_failed(error, stop)
            finally:
                self._done(node)
        if joint:
            self._track_joint(joint)

    def _track_joint(self, group) -> None:
        """Several cameras' frames in one static step (``camera_step.track_together``): each
        camera's frame work runs up to its tracker call (its lock held), then all are tracked
        together, then each publishes."""
        works = []  # (node, stop, frame work, its request)
        for node, stop, frame, features in group:
            work = node.frame_work(frame, stop, features) if not stop.is_set() else None
            try:
                request = next(work, None) if work is not None else None
            except Exception as error:  # noqa: BLE001 - that camera's problem only
                request = None
                node.frame_failed(error, stop)
            if request is None:
                self._done(node)
                continue
            works.append((node, stop, work, request))
        try:
            answers = track_together(*zip(*[request for _, _, _, request in works])) if works else []
        except Exception as error:  # noqa: BLE001 - every camera of the step failed alike
            answers = [error] * len(works)
        else:
            self.joint_frames += len(works)
        for (node, stop, work, _), answer in zip(works, answers):
            try:
                finish_frame(work, answer)
            except Exception as error:  # noqa: BLE001 - the other cameras go on
                node.frame_failed(error, stop)
            finally:
                work.close()
                self._done(node)

    def _features(self, ready) -> list:
        """Each ready frame's features, from one encoder run over all of them; None for a frame
        its tracker encodes itself (a tracker gone or one whose exported step starts at the
        image; with one stage, a lone frame: the same numbers either way)."""
        features: list = [None] * len(ready)
        batch = [k for k, (node, _, _) in enumerate(ready)
                 if node.tracker is not None and node.tracker.accepts_features]
        if len(batch) < (1 if self.stages == 2 else 2):  # two stages: the encoder's stage encodes
            return features
        try:  # every camera's tracker is on the one model: the first encodes them all
            feats = ready[batch[0]][0].tracker.encode([ready[k][2][1] for k in batch])
        except Exception as error:  # noqa: BLE001 - each camera then encodes its own frame
            self._log_error(f'batched encoding failed ({type(error).__name__}: {error}); '
                            'encoding the frames one at a time')
            return features
        for k, f in zip(batch, feats):
            features[k] = f
        if len(batch) > 1:
            self.batched_frames += len(batch)
        return features


class SharedCameras:
    """What the cameras of one process share: the model (:class:`SharedModel`) and the worker."""

    def __init__(self, log_error=None, stages: Optional[int] = None) -> None:
        self.model = SharedModel()
        self.worker = SharedWorker(log_error, stages)

    def refusal(self, name: str, value) -> Optional[str]:
        """Why one camera may not set parameter ``name`` to ``value`` (None: it may): the
        parameters that build the model are the same on every camera, once it is loaded."""
        loaded = self.model.settings
        if loaded is None or name not in SHARED_PARAMETERS or loaded[name] == value:
            return None
        return (f'{name} is shared by every camera of this process (one model, loaded with {name} = '
                f'{loaded[name]!r}): it cannot change on one camera; run a separate process for a camera '
                'that needs another value')
