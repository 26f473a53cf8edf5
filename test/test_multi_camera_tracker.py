"""Several cameras, one model, without ROS: ``Tracker.encode`` and
``track(frame, prompts, features=...)`` keep the exact path's numbers, and frames of
cameras at different resolutions encoded as one batch give every camera the logits of a
tracker of its own (within the float tolerance of ``test_tracker_parity.assert_same``: on
this Intel Xeon the batched encoder differs from one-at-a-time in the last bits). Compiled
trackers on one model share one set of compiled graphs."""

import pytest
import torch
from torch._dynamo.utils import counters

from sam2_ros import Prompt, PromptError, Tracker
from sam2_ros.tracking import cameras as camera_step
from sam2_ros.model.build import build_model
from helpers.parity import ellipse, assert_close, assert_same


@pytest.fixture(scope="module")
def model(official_checkpoint):
    return build_model(str(official_checkpoint("tiny", 256, seed=2)), "tiny", 256, "cpu")


@pytest.fixture(scope="module")
def cameras(bunny_frames):
    """Three cameras: different resolutions and different parts of the clip."""
    return {"front": bunny_frames(6, 320, 180, start=20), "left": bunny_frames(6, 160, 96, start=40),
            "right": bunny_frames(6, 256, 256, start=60)}


def _plan(h, w):
    return {0: [Prompt(1, points=[[0.45 * w, 0.55 * h]], labels=[1]), Prompt(2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h], label="box")],
            3: [Prompt(1, mask=ellipse(h, w, 0.6 * w, 0.4 * h, 0.15 * w, 0.2 * h))]}


def _record(res):
    return {oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)}


def _alone(model, frames, static=False, compile=False):
    tracker = Tracker(model, static=static or bool(compile), max_objects=4, compile=compile)
    plan = _plan(*frames[0].shape[:2])
    return [_record(tracker.track(f, plan.get(t, []))) for t, f in enumerate(frames)]


# "compiled": the compiled encoder's graph, the one track() runs (same layout as the compiled
# tests below, so the suite compiles it once).
@pytest.mark.parametrize("static, compile", [(False, False), (True, False), (True, True)], ids=["exact", "static", "compiled"])
def test_features_of_one_frame_are_the_trackers_own_bit_for_bit(model, cameras, static, compile):
    frames = cameras["front"]
    tracker = Tracker(model, static=static, max_objects=4, compile=compile)
    plan = _plan(*frames[0].shape[:2])
    ours = [_record(tracker.track(f, plan.get(t, []), features=tracker.encode([f])[0])) for t, f in enumerate(frames)]
    for a, b in zip(ours, _alone(model, frames, static, compile)):
        assert sorted(a) == sorted(b)
        for oid in a:
            assert torch.equal(a[oid][0], b[oid][0]), f"object {oid}: features= changed the logits"
            assert a[oid][1] == b[oid][1]


@pytest.mark.parametrize("static", [False, True], ids=["exact", "static"])
def test_cameras_encoded_as_one_batch_track_as_trackers_of_their_own(model, cameras, static):
    names = list(cameras)
    trackers = {n: Tracker(model, static=static, max_objects=4) for n in names}
    plans = {n: _plan(*cameras[n][0].shape[:2]) for n in names}
    ours = {n: [] for n in names}
    exact = True
    for t in range(6):
        frames = [cameras[n][t] for n in names]
        batch = trackers[names[0]].encode(frames)  # one encoder run for the three cameras
        single = [trackers[n].encode([f])[0] for n, f in zip(names, frames)]
        exact &= all(torch.equal(b.feat, s.feat) for b, s in zip(batch, single))
        for n, frame, feats in zip(names, frames, batch):
            ours[n].append(_record(trackers[n].track(frame, plans[n].get(t, []), features=feats)))
    for n in names:
        stats = assert_same(ours[n], _alone(model, cameras[n], static))
        assert stats["tie_flips"] <= 1e-4 * max(stats["pixels"], 1), (n, stats)
    print(f"batched encoder bit-identical to one-at-a-time: {exact}")


def test_compiled_cameras_share_one_set_of_graphs(model, cameras):
    """Compiled trackers on one model (one per camera) run the same compiled graphs: a second
    and a third camera compile nothing (error_on_recompile: not even a guard that fails on
    their own banks); tracked interleaved they give exactly what each gives alone (their banks
    are separate inputs of the shared graphs), and encoded as one batch (one more graph, with a
    dynamic batch dimension: any camera count) the same within float rounding, as is their
    slots tracked in one step (camera_step.track_together: two more graphs, the same on every
    round)."""
    names = list(cameras)
    n_frames = 5  # the plan's prompts (frames 0 and 3) and tracked frames
    plans = {n: _plan(*cameras[n][0].shape[:2]) for n in names}
    make = lambda: Tracker(model, max_objects=4, compile=True)  # noqa: E731

    alone, graphs = {}, None
    for n in names:  # one camera at a time
        if graphs is not None:
            with torch._dynamo.config.patch(error_on_recompile=True):
                alone[n] = _alone(model, cameras[n][:n_frames], compile=True)
            assert counters["stats"]["unique_graphs"] == graphs, f"camera {n} compiled graphs of its own"
        else:
            alone[n] = _alone(model, cameras[n][:n_frames], compile=True)
            graphs = counters["stats"]["unique_graphs"]
    trackers = {n: make() for n in names}
    assert len({id(t._step.compiled) for t in trackers.values()}) == 1

    interleaved, together = {n: [] for n in names}, {n: [] for n in names}
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t in range(n_frames):  # interleaved, each camera's frame encoded by its own tracker
            for n in names:
                interleaved[n].append(_record(trackers[n].track(cameras[n][t], plans[n].get(t, []))))
        assert counters["stats"]["unique_graphs"] == graphs
        for n in names:
            trackers[n].reset()
        for t in range(n_frames):  # the frames of all cameras (of two on frame 2) as one batch
            batched = names[:2] if t == 2 else names
            feats = dict(zip(batched, trackers[names[0]].encode([cameras[n][t] for n in batched])))
            for n in names:
                together[n].append(_record(trackers[n].track(cameras[n][t], plans[n].get(t, []), features=feats.get(n))))
        assert counters["stats"]["unique_graphs"] <= graphs + 1, "batches of 3 and 2 frames: one encoder graph"
        graphs = counters["stats"]["unique_graphs"]
        for n in names:
            trackers[n].reset()
        joint = {n: [] for n in names}
        for t in range(n_frames):  # the cameras' slots in one step (camera_step): its two graphs, shared
            frames = [cameras[n][t] for n in names]
            results = camera_step.track_together([trackers[n] for n in names], frames,
                                                 [plans[n].get(t, []) for n in names], trackers[names[0]].encode(frames))
            for n, res in zip(names, results):
                joint[n].append(_record(res))
        assert counters["stats"]["unique_graphs"] <= graphs + 2, "the joint step: one tracked and one prompted graph"
    for n in names:
        for a, b in zip(interleaved[n], alone[n]):
            assert sorted(a) == sorted(b)
            for oid in a:
                assert torch.equal(a[oid][0], b[oid][0]) and a[oid][1] == b[oid][1], f"camera {n} object {oid}"
        worst = assert_close(together[n], alone[n], max_err=1e-3)
        print(f"camera {n}: batched compiled encoder vs alone: max relative logit error {worst['max_err']:.1e}")
        worst = assert_close(joint[n], alone[n], max_err=1e-3)
        print(f"camera {n}: one compiled step for three cameras vs alone: max relative logit error {worst['max_err']:.1e}")


def test_features_of_another_model_are_refused(model, cameras, official_checkpoint):
    other = build_model(str(official_checkpoint("tiny", 128, seed=2)), "tiny", 128, "cpu")
    feats = Tracker(other).encode([cameras["front"][0]])[0]
    with pytest.raises(ValueError, match="do not fit"):
        Tracker(model).track(cameras["front"][0], features=feats)


def test_cameras_in_one_static_step_track_as_steps_of_their_own(model, cameras):
    """Cameras as one more batch dimension of the static step: the slots of three banks (of
    different capacities, at their own frames) tracked in one step give each camera the logits
    of its own step; a camera whose prompts are refused is left as it was, the others track."""
    names = list(cameras)
    capacity = {"front": 4, "left": 2, "right": 3}
    trackers = {n: Tracker(model, static=True, max_objects=capacity[n]) for n in names}
    plans = {n: _plan(*cameras[n][0].shape[:2]) for n in names}
    h, w = cameras["left"][0].shape[:2]
    too_many = [Prompt(7, points=[[w / 2, h / 2]], labels=[1]), Prompt(8, points=[[w / 3, h / 3]], labels=[1])]
    ours = {n: [] for n in names}
    assert camera_step.joinable(list(trackers.values()))
    for t in range(6):
        frames = [cameras[n][t] for n in names]
        feats = [trackers[n].encode([f])[0] for n, f in zip(names, frames)]
        asked = [too_many if (n == "left" and t == 2) else plans[n].get(t, []) for n in names]
        before = trackers["left"].frame_index
        results = camera_step.track_together([trackers[n] for n in names], frames, asked, feats)
        for n, res in zip(names, results):
            if n == "left" and t == 2:
                assert isinstance(res, PromptError) and "max_objects" in str(res)
                assert trackers["left"].frame_index == before  # left as it was
                res = trackers["left"].track(frames[1], [], features=feats[1])  # the node's retry: no prompts
            assert res.labels == {o: "box" if o == 2 else None for o in res.object_ids}  # labels kept in one step
            ours[n].append(_record(res))
    for n in names:
        alone = Tracker(model, static=True, max_objects=capacity[n])
        theirs = [_record(alone.track(f, plans[n].get(t, []), features=alone.encode([f])[0]))
                  for t, f in enumerate(cameras[n])]
        stats = assert_same(ours[n], theirs)
        assert stats["tie_flips"] <= 1e-4 * max(stats["pixels"], 1), (n, stats)
        identical = all(torch.equal(a[o][0], b[o][0]) for a, b in zip(ours[n], theirs) for o in a)
        print(f"{n}: one step for three cameras bit-identical to its own step: {identical}")
