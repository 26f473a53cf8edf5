"""The static frame step (``sam2_ros.step.frame_step``, ``Tracker(compile=...)`` / ``static=True``):
compiled whole with ``fullgraph=True``, no recompilation as objects come and go, nothing of the
model outside compiled code on unprompted frames, a constant state, and clear refusals of what
it does not support. Its numbers against Meta's predictor: ``test_tracker_parity.py``."""

import pytest
import torch
from torch._dynamo.utils import counters

from sam2_ros import Prompt, Tracker
from sam2_ros.model.build import build_model
from sam2_ros.tracking.tracker import FrameNotBuffered, PromptError
from helpers.parity import ellipse, assert_close, assert_static_close, run_ours

# Model code that must only run inside compiled graphs on an unprompted frame.
HEAVY_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::conv2d", "aten::convolution",
             "aten::_convolution", "aten::mkldnn_convolution", "aten::scaled_dot_product_attention",
             "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::layer_norm")


def _come_and_go(h, w):
    """60 frames: objects added up to the capacity (4), removed, re-added into freed slots,
    corrected with clicks, a box and a mask, banks filling past every window."""
    click = lambda oid, x, y: Prompt(oid, points=[[x * w, y * h]], labels=[1])  # noqa: E731
    return {
        0: [("prompt", click(1, 0.45, 0.55)), ("prompt", Prompt(2, box=[0.05 * w, 0.1 * h, 0.4 * w, 0.6 * h]))],
        4: [("prompt", Prompt(3, mask=ellipse(h, w, 0.7 * w, 0.4 * h, 0.12 * w, 0.2 * h)))],
        9: [("remove", 2)],
        12: [("prompt", click(5, 0.2, 0.8))],
        14: [("prompt", Prompt(6, box=[0.6 * w, 0.1 * h, 0.95 * w, 0.5 * h]))],  # 4 objects: full
        20: [("prompt", click(1, 0.5, 0.5))],
        26: [("prompt", Prompt(3, mask=ellipse(h, w, 0.65 * w, 0.45 * h, 0.1 * w, 0.15 * h)))],
        31: [("remove", 1), ("remove", 3), ("remove", 6)],
        33: [("prompt", Prompt(7, points=[[0.3 * w, 0.3 * h], [0.9 * w, 0.1 * h]], labels=[1, 0])),
             ("prompt", Prompt(8, box=[0.5 * w, 0.5 * h, 0.9 * w, 0.9 * h]))],
        45: [("prompt", Prompt(8, box=[0.55 * w, 0.5 * h, 0.95 * w, 0.9 * h]))],
    }


def _heavy_ops_outside_compiled_code(prof) -> tuple:
    """(heavy ops seen, those with no compiled graph among their callers)."""
    seen, outside = 0, []
    for ev in prof.events():
        if ev.name not in HEAVY_OPS:
            continue
        seen += 1
        parent = ev.cpu_parent
        while parent is not None and "Compiled" not in parent.name:
            parent = parent.cpu_parent
        if parent is None:
            outside.append(ev.name)
    return seen, outside


def test_compiled_step_matches_official_then_never_recompiles(reference, bunny_frames):
    model, frames, plan, corrections_as_cond, theirs = reference("tiny")
    tracker = Tracker(model, max_objects=4, max_cond_frames=2, corrections_as_cond=corrections_as_cond, compile=True)
    worst = assert_static_close(run_ours(tracker, frames, plan), theirs)
    print(f"compiled tiny: max relative logit error {worst['max_err']:.1e}, mean {worst['mean_err']:.1e}, flipped pixels {worst['flips']:.2%}")
    graphs = counters["stats"]["unique_graphs"]
    assert counters["graph_break"] == {} or sum(counters["graph_break"].values()) == 0

    # Warmed up: a 60-frame stream where objects come and go, with every prompt kind, and a
    # reset, compiles nothing more.
    tracker.reset()
    clip = bunny_frames(60, 320, 180, start=30)
    h, w = clip[0].shape[:2]
    with torch._dynamo.config.patch(error_on_recompile=True):
        out = run_ours(tracker, clip, _come_and_go(h, w))
        assert counters["stats"]["unique_graphs"] == graphs
        assert sorted(out[-1]) == [5, 7, 8]
        # An unprompted frame runs every part of the model inside compiled graphs.
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            tracker.track(clip[0])
    seen, outside = _heavy_ops_outside_compiled_code(prof)
    assert seen > 0 and outside == [], f"{len(outside)} of {seen} model ops ran outside compiled code: {set(outside)}"


def test_static_state_is_constant_on_a_long_stream(official_checkpoint, bunny_frames):
    net = build_model(str(official_checkpoint("tiny", 256, seed=2)), "tiny", 64, "cpu")
    tracker = Tracker(net, max_objects=2, max_cond_frames=2, static=True)
    clip = bunny_frames(10, 96, 64)
    h, w = clip[0].shape[:2]
    sizes = {}
    for t in range(121):
        prompts = [Prompt(1, points=[[w / 2, h / 2]], labels=[1])] if t in (0, 3, 6, 40, 80) else []
        tracker.track(clip[t % len(clip)], prompts)
        if t in (1, 120):
            sizes[t] = (tracker.state_bytes(), len(tracker.state_tensors()))
    assert sizes[1] == sizes[120] and sizes[1][0] > 0


def test_static_objects_equal_their_runs_alone(reference):
    """Empty slots and the other objects change nothing: each object alone gets what it gets in company."""
    model, frames, plan, _, _ = reference("tiny")
    frames = frames[:10]
    together = run_ours(Tracker(model, max_objects=4, max_cond_frames=2, static=True), frames, plan)
    for oid in (1, 3):
        solo_plan = {t: [(k, p) for k, p in acts if k == "prompt" and p.obj_id == oid] for t, acts in plan.items()}
        alone = run_ours(Tracker(model, max_objects=4, max_cond_frames=2, static=True), frames, solo_plan)
        mine = [{k: v for k, v in f.items() if k == oid} for f in together]
        assert_close(mine, alone, max_err=1e-3)


def test_static_refuses_what_it_does_not_support(official_checkpoint, bunny_frames):
    net = build_model(str(official_checkpoint("tiny", 256, seed=2)), "tiny", 64, "cpu")
    for kwargs, words in (
        (dict(prompt_buffer=4), "prompt_buffer"),
        (dict(fill_hole_area=8), "fill_hole_area"),
        (dict(num_maskmem=1), "num_maskmem"),
    ):
        with pytest.raises(ValueError, match=words):
            Tracker(net, static=True, **kwargs)
    with pytest.raises(ValueError, match="reduce-overhead"):
        Tracker(net, compile="fast")
    with pytest.raises(ValueError, match="static=True"):
        Tracker(net, compile=True, static=False)
    tracker = Tracker(net, static=True, max_objects=2, max_prompt_points=3)
    frame = bunny_frames(1, 96, 64)[0]
    with pytest.raises(PromptError, match="max_prompt_points=3"):
        tracker.track(frame, [Prompt(1, points=[[1, 1], [2, 2]], labels=[1, 1], box=[0, 0, 50, 40])])
    with pytest.raises(PromptError, match="max_objects"):
        tracker.track(frame, [Prompt(i, points=[[10, 10]], labels=[1]) for i in range(3)])
    tracker.track(frame, [Prompt(1, points=[[10, 10]], labels=[1])])
    with pytest.raises(FrameNotBuffered, match="exact path"):
        tracker.prompt_past(0, [Prompt(1, points=[[10, 10]], labels=[1])])
    with pytest.raises(ValueError, match="prompt buffer"):
        tracker.prompt_buffer = 2
    assert tracker.remove_object(1) and not tracker.remove_object(1)
    assert tracker.track(frame).object_ids == []


def test_onnx_step_on_onnxruntime_matches_official(reference, tmp_path):
    """The whole step (all but the encoder) exported by the CLI and run on onnxruntime's CPU."""
    import subprocess
    import sys

    from sam2_ros.backends import BackendMismatchError

    model, frames, plan, corrections_as_cond, theirs = reference("tiny")
    ckpt = tmp_path / "weights.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    onnx_path = tmp_path / "step.onnx"
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "export" / "export_onnx.py"), "--checkpoint", str(ckpt), "--model", "tiny",
                           "--image-size", "256", "--part", "step", "--capacity", "4", "--max-cond-frames", "2",
                           "--output", str(onnx_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracker = Tracker(model, max_objects=4, max_cond_frames=2, corrections_as_cond=corrections_as_cond,
                      step_backend="onnxruntime", step_engine=str(onnx_path))
    worst = assert_static_close(run_ours(tracker, frames, plan), theirs)
    print(f"onnx step tiny: max relative logit error {worst['max_err']:.1e}, mean {worst['mean_err']:.1e}, flipped pixels {worst['flips']:.2%}")
    # A file made for another bank is refused, saying what differs.
    with pytest.raises(BackendMismatchError, match="capacity: file has 4, expected 3"):
        Tracker(model, max_objects=3, max_cond_frames=2, step_backend="onnxruntime", step_engine=str(onnx_path))
