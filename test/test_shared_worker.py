"""The worker of a process serving several cameras (``sam2_ros.ros.shared_worker``), without
ROS: cameras here are objects with the node's worker interface around real trackers on one
model (tiny, random official-format weights, 128 px). In one stage and in two (encoding the
next round while the current one is tracked), every camera's frames are tracked in order with
the logits of a tracker of its own; no camera starves another; a camera detached gets nothing
more; a camera whose frame fails or is refused changes nothing on the others. The DDS tests of
the whole process are in ``test_multi_camera_node.py``."""

import threading
from collections import deque

import pytest
import torch

from sam2_ros import Prompt, Tracker
from sam2_ros.model.build import build_model
from sam2_ros.ros.shared_worker import SharedWorker, default_stages, track_alone
from helpers.parity import assert_same

WAIT_S = 120.0  # a loaded 2-core CI machine


@pytest.fixture(scope="module")
def model(official_checkpoint):
    return build_model(str(official_checkpoint("tiny", 128, seed=3)), "tiny", 128, "cpu")


@pytest.fixture(scope="module")
def clips(bunny_frames):
    """Three cameras at different resolutions, each on its own part of the clip."""
    return {"front": bunny_frames(5, 160, 90, start=10), "left": bunny_frames(5, 96, 96, start=30),
            "right": bunny_frames(5, 128, 72, start=50)}


def _prompts(frame):
    h, w = frame.shape[:2]
    return [Prompt(1, points=[[0.4 * w, 0.5 * h]], labels=[1]), Prompt(2, box=[0.55 * w, 0.2 * h, 0.9 * w, 0.7 * h])]


class Camera:
    """The node's worker interface around a tracker: its frame queue (``all``: every frame in
    order), conversion, tracking with the worker's features, failures, jobs."""

    def __init__(self, name, tracker, frames, log, fail_at=(), refuse_at=()):
        self.name, self.tracker, self.log = name, tracker, log
        self.frames, self.listener = self, None
        self._queue = deque()
        self._fail_at, self._refuse_at = set(fail_at), set(refuse_at)
        self.results, self.failures = {}, []
        self.done = threading.Event()
        self.last = len(frames) - 1
        self._frames = frames

    def send(self, *ts):
        self._queue.extend(ts)
        if self.listener is not None:
            self.listener()

    def get_nowait(self):
        return (self._queue.popleft(),) if self._queue else None

    def prepare(self, t):
        if t in self._refuse_at:
            self.log.append((self.name, t, "refused"))
            self._finish(t)
            return None  # the node's answer to an image it refuses
        return t, self._frames[t]

    def track_prepared(self, frame, stop, features=None):
        track_alone(self.frame_work(frame, stop, features))

    def frame_work(self, frame, stop, features=None):
        """As the node's: up to the tracker call, then the result back (the worker may track
        several cameras' frames in one step meanwhile)."""
        t, rgb = frame
        self._current = t
        if t in self._fail_at:
            raise RuntimeError(f"{self.name}: frame {t} fails")
        res = yield self.tracker, rgb, _prompts(rgb) if t == 0 else [], features
        self.results[t] = {oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)}
        self.log.append((self.name, t, "tracked"))
        self._finish(t)

    def _finish(self, t):
        if t == self.last:
            self.done.set()

    def frame_failed(self, error, stop):
        self.failures.append(str(error))
        self.log.append((self.name, self._current, "failed"))
        self._finish(self._current)
        return True

    def run_jobs(self, stop):
        pass


def _alone(model, frames, static=False):
    tracker = Tracker(model, max_objects=2, static=static)
    out = []
    for t, f in enumerate(frames):
        res = tracker.track(f, _prompts(f) if t == 0 else [])
        out.append({oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)})
    return out


def _run(model, clips, stages, static=False, **camera_kwargs):
    log = []
    worker = SharedWorker(stages=stages, joint=True)  # joint: on the CPU too (static trackers only)
    cams = {n: Camera(n, Tracker(model, max_objects=2, static=static), f, log, **camera_kwargs.get(n, {}))
            for n, f in clips.items()}
    stops = {n: threading.Event() for n in cams}
    for n, cam in cams.items():
        worker.attach(cam, stops[n])
    for cam in cams.values():  # every frame waiting at once: the worker batches them
        cam.send(*range(len(cam._frames)))
    for cam in cams.values():
        assert cam.done.wait(WAIT_S), f"{cam.name}: its last frame was not tracked"
    assert worker.stop(30.0)
    return cams, log, worker


# static: with one stage (a GPU's default) a round's static steps run as one (joint=True here)
@pytest.mark.parametrize("stages,static", [(1, False), (2, False), (1, True)], ids=["1-exact", "2-exact", "1-static"])
def test_every_camera_tracks_in_order_as_a_tracker_of_its_own(model, clips, stages, static):
    cams, log, worker = _run(model, clips, stages, static)
    # one stage: a round's frames encoded as one batch; two: frame by frame (see shared_worker)
    assert worker.stages == stages and (worker.batched_frames > 0) == (stages == 1)
    # static steps: the round's frames in one step (cameras as one more batch dimension)
    assert (worker.joint_frames > 0) == static
    for n, cam in cams.items():
        assert [t for name, t, _ in log if name == n] == list(range(5)), f"{n}: frames out of order"
        stats = assert_same([cam.results[t] for t in range(5)], _alone(model, clips[n], static))
        assert stats["tie_flips"] <= 1e-4 * max(stats["pixels"], 1), (n, stats)
    # Rounds: every camera's k-th frame is tracked before any camera's (k+2)-th (no camera
    # runs ahead of another by more than the round the tracking stage is on).
    seen = {n: 0 for n in cams}
    for name, t, _ in log:
        seen[name] = t + 1
        assert t + 1 - min(seen.values()) <= 2, f"{name} ran ahead: {log}"


@pytest.mark.parametrize("stages,static", [(2, False), (1, True)], ids=["2-exact", "1-static"])
def test_a_failing_or_refused_frame_is_that_cameras_only(model, clips, stages, static):
    cams, log, _ = _run(model, clips, stages, static, left={"fail_at": [2], "refuse_at": [3]})
    assert cams["left"].failures == ["left: frame 2 fails"]
    assert sorted(cams["left"].results) == [0, 1, 4]
    for n in ("front", "right"):
        stats = assert_same([cams[n].results[t] for t in range(5)], _alone(model, clips[n], static))
        assert stats["tie_flips"] <= 1e-4 * max(stats["pixels"], 1), (n, stats)


def test_a_detached_camera_gets_nothing_more_and_the_others_go_on(model, clips):
    log = []
    worker = SharedWorker(stages=2)
    front = Camera("front", Tracker(model, max_objects=2), clips["front"], log)
    left = Camera("left", Tracker(model, max_objects=2), clips["left"], log)
    stop_front, stop_left = threading.Event(), threading.Event()
    worker.attach(front, stop_front)
    worker.attach(left, stop_left)
    front.send(0, 1)
    left.send(0, 1)
    deadline = threading.Event()
    while len(left.results) < 1 and not deadline.wait(0.05):
        pass
    stop_left.set()  # the node's deactivate: its stop event first, then detach
    assert worker.detach(left, timeout=WAIT_S), "detach returned with a frame of it in progress"
    tracked = len(left.results)
    left.send(2, 3, 4)
    front.send(2, 3, 4)
    assert front.done.wait(WAIT_S)
    assert len(left.results) == tracked and worker.attached == 1
    assert worker.stop(30.0)


def test_stages_follow_the_device():
    assert default_stages("cpu", threads=2) == 2
    assert default_stages("cpu", threads=1) == 1
    assert default_stages("cuda", threads=16) == 1
    with pytest.raises(ValueError, match="1 or 2 stages"):
        SharedWorker(stages=3)


def test_two_stages_leave_the_callers_threads_alone(model, clips):
    """Each stage sets its own OpenMP threads; the process's other threads keep theirs."""
    before = torch.get_num_threads()
    _run(model, {"front": clips["front"][:2], "left": clips["left"][:2]}, 2)
    assert torch.get_num_threads() == before
