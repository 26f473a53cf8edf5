"""``Tracker(memory_selection="samurai")`` gives the numbers of SAMURAI's released predictor.

The reference is SAMURAI's own predictor (PyPI ``absolutely-not-samurai==1.0.0``, in its own
venv: ``helpers.samurai``) on the shared scene (``samurai_scene``: tiny at 256 px, random
official-format weights with the IoU head stretched, a moving ellipse, 48 frames, a box on
frame 0; and a second object, one click on frame 0, over the first 24 frames). On that scene
SAMURAI's filter reaches its stable phase (frame 16) and then picks other candidates than the
highest predicted IoU, and frames fail its memory test, early and in the stable phase
(``test_samurai_oracle.py``). Two objects are tracked together, and each one's logits equal
SAMURAI's run of that object alone. The exact path and the compiled static step, over the
whole scene: on every frame the candidate kept (the one of SAMURAI's three whose upsampled
logits ours are), the filter's stable counter, the memories attended (frames and temporal
positions) exactly, and the logits: objects one at a time to 1e-4, objects in one batch
within the static step's bounds of ``helpers.parity`` (float rounding; see ``close``). The
eager static step (two cameras' slots in one step) and the exported step on ONNX Runtime:
the logits over the first frames (they cost more per frame).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from helpers import samurai as S
from helpers.parity import assert_close, assert_static_close, ellipse
from helpers.samurai import NoHostSync
from sam2_ros import Prompt, Tracker
from sam2_ros.model.build import build_model
from sam2_ros.model.preprocess import to_frame_resolution, to_model_input
from sam2_ros.tracking import cameras as camera_step

R = 6  # num_maskmem - 1
CAMERA_FRAMES, ONNX_FRAMES = 12, 8  # frames of the scene those (slower) paths track
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(samurai_scene):
    return build_model(str(samurai_scene.checkpoint), "tiny", samurai_scene.image_size, "cpu")


# ------------------------------------------------------------------------------ running and reading
def attended(tracker, oid):
    """Ours: the non-conditioning frames the next frame attends to, oldest first."""
    if tracker.static:
        bank, k = tracker._step.bank, tracker._step.layout.cond
        return sorted(f for f in bank.mem_frame[tracker._slots[oid], k:].tolist() if f >= 0)
    return sorted(tracker._exact.samurai.objects[oid].features)


def stable_frames(tracker, oid):
    """Ours: the object's filter counter (SAMURAI's stable_frames)."""
    if tracker.static:
        return int(tracker._step.bank.kf_stable[tracker._slots[oid]])
    return int(tracker._exact.samurai.objects[oid].state.stable)


def run(tracker, frames, prompts, watch=(1,), tracks=None):
    """Track ``frames`` with ``prompts`` on frame 0 (``tracks``: how to track one frame).
    Returns per frame {oid: (logits, score)} and, for the ``watch`` objects, per frame the
    memories and filter counter after it."""
    tracks = tracks or (lambda t, f, p: tracker.track(f, p))
    out, memory, stable = [], [], []
    for t, frame in enumerate(frames):
        res = tracks(t, frame, prompts if t == 0 else [])
        out.append({oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)})
        memory.append({oid: attended(tracker, oid) for oid in watch})
        stable.append({oid: stable_frames(tracker, oid) for oid in watch})
    return out, memory, stable


def theirs(run_, oid=1, n=None):
    frames = run_["frames"][:n]
    return [{oid: (fr["logits"], float(1 / (1 + np.exp(-fr["object_score"]))))} for fr in frames]


def only(ours, oid):
    return [{oid: f[oid]} for f in ours]


def prompts_two(scene):
    return [Prompt(1, box=scene.box), Prompt(2, points=scene.point, labels=[1])]


def check_scene(scene, ours, memory, stable, tol=None):
    """Object 1 over the whole scene against SAMURAI's run of it alone: logits, the kept
    candidate, the filter counter, the memories attended; and, on our side, the stable phase
    and frames that failed the memory test. Object 2 (tracked with it, if it was) against
    SAMURAI's run of object 2 alone over its frames; the logits as ``close`` says. Returns the
    worst relative logit error."""
    run_ = scene.run
    heads = {h["frame"]: h for h in run_["heads"] if h["multimask"]}
    hw = ours[0][1][0].shape
    for t in range(1, len(ours)):
        cands = to_frame_resolution(heads[t]["candidates"], hw)[0]  # (3, H, W) SAMURAI's candidates
        nearest = int((cands - ours[t][1][0]).abs().flatten(1).amax(1).argmin())
        assert [nearest] == heads[t]["chosen"], f"frame {t}: we kept candidate {nearest}, SAMURAI {heads[t]['chosen']}"
        assert stable[t][1] == heads[t]["kf_after"]["stable_frames"], f"frame {t}: filter counter"
    mem = {m["frame"]: m for m in run_["memory"] if not m["init_cond"]}
    for t in range(1, len(ours)):
        want = [(tp, f) for tp, f, cond in mem[t]["memory"] if not cond]
        # oldest first, temporal position R - rank (the newest: R)
        got = [(R - (len(memory[t - 1][1]) - 1 - i), f) for i, f in enumerate(memory[t - 1][1])]
        assert got == want, f"frame {t}: attends to {got}, SAMURAI to {want}"
    # Our filter reached its stable phase, and frames failed our memory test (a frame that
    # failed is gone from the memory after the next frame), early and in the stable phase,
    # while memories older than SAM 2's window were attended.
    assert max(s[1] for s in stable) >= 15
    failed = [t for t in range(2, len(ours) - 1) if t not in memory[t + 1][1]]
    assert len(failed) >= 5 and any(t >= 16 for t in failed), failed
    assert any(memory[t][1] and memory[t][1][0] < t + 1 - R for t in range(len(ours))), "no memory older than R frames"
    return check_objects(scene, ours, tol)


# How our logits must agree with SAMURAI's. Objects tracked one at a time (the exact path's
# loop, SAMURAI's order): to 1e-4 (relative; the same bits on the CPUs measured). Objects in
# one batch (the exact path's batch, every static step): within the static step's bounds
# (``helpers.parity.assert_static_close``), because on some CPUs (an Intel Xeon, not an AMD
# EPYC) a matrix product rounds the rows of a batch of two differently from a batch of one
# (2e-6 in the decoder's first projection), and the bfloat16 memories and SAMURAI's choices
# among candidates carry that on (to 4e-3 over the scene). A wrong candidate, memory or filter
# state moves whole masks, and those are checked exactly on every path (``check_scene``).
def close(ours, theirs_, tol=None):
    if tol is not None:
        return assert_close(ours, theirs_, max_err=tol)["max_err"]
    return assert_static_close(ours, theirs_)["max_err"]


def check_objects(scene, ours, tol=None):
    """Each object tracked equals SAMURAI's run of that object alone (object 2: over the
    frames SAMURAI ran it), as ``close`` says."""
    worst = close(only(ours, 1), theirs(scene.run, 1, len(ours)), tol)
    if 2 in ours[0]:
        n = min(len(ours), S.SECOND_FRAMES)
        worst = max(worst, close(only(ours[:n], 2), theirs(scene.second, 2, n), tol))
    return worst


# ------------------------------------------------------------------------------ the paths
@pytest.mark.parametrize("batch", [False, True], ids=["loop", "batch"])
def test_exact_path_is_samurais_predictor(model, samurai_scene, batch):
    """Two objects tracked together over the scene, one at a time or as one batch, each
    against SAMURAI alone."""
    scene = samurai_scene
    tracker = Tracker(model, memory_selection="samurai", batch_objects=batch)
    ours, memory, stable = run(tracker, scene.frames, prompts_two(scene))
    worst = check_scene(scene, ours, memory, stable, tol=None if batch else 1e-4)
    print(f"exact path ({'batch' if batch else 'loop'}) vs SAMURAI: {worst:.1e} (max relative logit error)")


def test_cameras_in_one_static_step_are_samurais_predictor(model, samurai_scene):
    """The static step, eager, through the joint step (sam2_ros.step.joint) that carries
    SAMURAI's bank fields: two cameras' slots in one step, each camera's object against
    SAMURAI alone, the second camera a frame behind the first (each slot at its own frame
    index). The step reads no tensor value on the host (SAMURAI's own code syncs several times
    a frame)."""
    scene, n = samurai_scene, CAMERA_FRAMES
    a, b = (Tracker(model, memory_selection="samurai", static=True, max_objects=c, max_prompt_points=2) for c in (1, 2))
    assert camera_step.joinable([a, b])
    assert not camera_step.joinable([a, Tracker(model, static=True, max_objects=1, max_prompt_points=2)])  # SAM 2's
    outs = {"a": [], "b": []}
    for r in range(n + 1):
        cams = [(name, tr, r - lag) for name, tr, lag in (("a", a, 0), ("b", b, 1)) if 0 <= r - lag < n]
        frames = [scene.frames[t] for _, _, t in cams]
        asked = [([Prompt(1, box=scene.box)] if name == "a" else [Prompt(2, points=scene.point, labels=[1])]) if t == 0
                 else [] for name, _, t in cams]
        results = camera_step.track_together([tr for _, tr, _ in cams], frames, asked, a.encode(frames))
        for (name, _, _), res in zip(cams, results):
            outs[name].append({oid: (res.logits[i], float(res.scores[i])) for i, oid in enumerate(res.object_ids)})
    wa, wb = close(outs["a"], theirs(scene.run, 1, n)), close(outs["b"], theirs(scene.second, 2, n))
    print(f"two cameras in one static step vs SAMURAI: {wa:.1e}, {wb:.1e}")
    image = to_model_input([scene.frames[n]], scene.image_size, "cpu")
    with NoHostSync():
        b._step(image)


def _heavy_ops_outside_compiled_code(prof):
    from test_frame_step import _heavy_ops_outside_compiled_code as outside

    return outside(prof)


def test_compiled_step_is_samurais_predictor_and_never_recompiles(model, samurai_scene):
    """One compiled configuration (capacity 2) for every check: two objects over the scene,
    each against SAMURAI alone; then objects coming and going with every prompt kind and no
    recompilation, every model op of an unprompted frame inside compiled code (fullgraph:
    nothing reads a tensor on the host)."""
    scene = samurai_scene
    tracker = Tracker(model, memory_selection="samurai", compile=True, max_objects=2, max_prompt_points=2)
    ours, memory, stable = run(tracker, scene.frames, prompts_two(scene))
    worst = check_scene(scene, ours, memory, stable)
    graphs = counters["stats"]["unique_graphs"]
    assert sum(counters["graph_break"].values()) == 0
    with torch._dynamo.config.patch(error_on_recompile=True):
        tracker.reset()
        h, w = scene.frames[0].shape[:2]
        plan = {0: [Prompt(1, points=[[0.3 * w, 0.4 * h]], labels=[1])],
                1: [Prompt(2, box=[0.5 * w, 0.2 * h, 0.9 * w, 0.7 * h])],
                3: [Prompt(1, points=[[0.35 * w, 0.45 * h]], labels=[1])],  # a correction: the filter restarts
                4: "remove 2", 5: [Prompt(3, mask=ellipse(h, w, 0.6 * w, 0.5 * h, 0.1 * w, 0.15 * h))],
                7: [Prompt(3, points=[[0.6 * w, 0.5 * h], [0.1 * w, 0.1 * h]], labels=[1, 0])],
                8: "remove 1", 9: [Prompt(4, box=[0.1 * w, 0.1 * h, 0.4 * w, 0.5 * h])]}
        for t in range(12):
            step = plan.get(t, [])
            if isinstance(step, str):
                tracker.remove_object(int(step.split()[1]))
                step = []
            res = tracker.track(scene.frames[t], step)
        assert res.object_ids == [3, 4]
        assert counters["stats"]["unique_graphs"] == graphs
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            tracker.track(scene.frames[12])
    seen, outside = _heavy_ops_outside_compiled_code(prof)
    assert seen > 0 and outside == [], f"{len(outside)} of {seen} model ops ran outside compiled code: {set(outside)}"
    print(f"compiled step vs SAMURAI: {worst:.1e}")


def test_exported_step_on_onnxruntime_is_samurais_predictor(model, samurai_scene, tmp_path):
    """``export/export_onnx.py --part step --memory-selection samurai`` and the ONNX Runtime
    runner: two objects, each against SAMURAI alone; a file exported for the other memory
    selection is refused, saying so."""
    from sam2_ros.backends import BackendMismatchError

    scene = samurai_scene
    onnx_path = tmp_path / "step.onnx"
    proc = subprocess.run([sys.executable, str(ROOT / "export" / "export_onnx.py"), "--checkpoint", str(scene.checkpoint),
                           "--model", "tiny", "--image-size", str(scene.image_size), "--part", "step", "--capacity", "2",
                           "--max-prompt-points", "2", "--memory-selection", "samurai", "--output", str(onnx_path)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracker = Tracker(model, memory_selection="samurai", max_objects=2, max_prompt_points=2,
                      step_backend="onnxruntime", step_engine=str(onnx_path))
    ours, _, _ = run(tracker, scene.frames[:ONNX_FRAMES], prompts_two(scene), watch=(1, 2))
    worst = check_objects(scene, ours)
    print(f"ONNX Runtime step vs SAMURAI: two objects {worst:.1e}")
    with pytest.raises(BackendMismatchError, match="memory_selection: file has samurai, expected sam2"):
        Tracker(model, max_objects=2, max_prompt_points=2, step_backend="onnxruntime", step_engine=str(onnx_path))


# ------------------------------------------------------------------------------ bounded, refused
@pytest.mark.parametrize("static", [False, True], ids=["exact", "static"])
def test_state_is_constant_on_a_long_stream(official_checkpoint, bunny_frames, static):
    """SAMURAI keeps every past frame to select from; ours keeps R memories per object
    (prompts, corrections, a mask): the static step's bytes are the same on every frame, the
    exact path's stop growing once its windows are full (16 pointers: by frame 67)."""
    net = build_model(str(official_checkpoint("tiny", 256, seed=2)), "tiny", 64, "cpu")
    tracker = Tracker(net, memory_selection="samurai", max_objects=2, static=static)
    clip = bunny_frames(10, 96, 64)
    h, w = clip[0].shape[:2]
    plan = {0: [Prompt(1, points=[[w / 2, h / 2]], labels=[1]), Prompt(2, box=[5, 5, 40, 30])],
            30: [Prompt(1, points=[[w / 3, h / 2]], labels=[1])], 50: [Prompt(2, mask=ellipse(h, w, 60, 30, 15, 10))]}
    sizes = []
    for t in range(100):
        tracker.track(clip[t % len(clip)], plan.get(t, []))
        sizes.append(tracker.state_bytes())
        if not static:  # the exact path's ring holds at most R memories
            assert all(len(o.features) <= R for o in tracker._exact.samurai.objects.values())
    if static:
        assert len(set(sizes[1:])) == 1 and sizes[1] > 0
    else:
        assert 0 < max(sizes[70:]) <= max(sizes[:70])


def test_refusals_say_why(model):
    from dataclasses import replace

    from sam2_ros.model.sam2 import SAM2

    cases = [
        (dict(memory_selection="motion"), "memory_selection must be 'sam2'"),
        (dict(kf_score_weight=0.3), "used only with memory_selection='samurai'"),
        (dict(memory_selection="samurai", prompt_buffer=4), "prompt_buffer=0"),
        (dict(memory_selection="samurai", num_maskmem=1), "num_maskmem must be >= 2"),
        (dict(memory_selection="samurai", kf_score_weight=1.5), r"kf_score_weight must be in \[0, 1\]"),
        (dict(memory_selection="samurai", stable_frames_threshold=2.5), "stable_frames_threshold must be an integer"),
        (dict(memory_selection="samurai", memory_bank_iou_threshold="high"), "memory_bank_iou_threshold must be a number"),
    ]
    for kwargs, words in cases:
        with pytest.raises(ValueError, match=words):
            Tracker(model, **kwargs)
    few_ptrs = SAM2(replace(model.cfg, max_obj_ptrs=4))
    with pytest.raises(ValueError, match=r"max_obj_ptrs \(4\) >= num_maskmem \(7\)"):
        Tracker(few_ptrs, memory_selection="samurai")
    Tracker(few_ptrs, memory_selection="samurai", num_maskmem=4)  # fine
    tracker = Tracker(model, memory_selection="samurai", kf_score_weight=0.15, min_obj_score_logits=0.0)
    assert tracker.samurai.kf_score_weight == 0.15 and tracker.samurai.min_obj_score_logits == 0.0
    assert tracker.samurai.stable_frames_threshold == 15  # the released configs' defaults elsewhere
    with pytest.raises(ValueError, match="no prompt buffer"):
        tracker.prompt_buffer = 2
    assert Tracker(model).samurai is None and Tracker(model).memory_selection == "sam2"
