"""The CPU's opt-in bfloat16 mode: faster on CPUs with native bf16, close to float32 but not
bit-identical (float32 stays the default because it is exact)."""

import torch

from sam2_ros.model.build import resolve_dtype
from sam2_ros.tracking.tracker import Prompt, Tracker


def test_bfloat16_is_opt_in_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16


def test_bfloat16_tracker_stays_close_to_float32(official_checkpoint, bunny_frames):
    ckpt = str(official_checkpoint("tiny", 256, seed=1))
    frames = bunny_frames(6, 320, 180, start=10)
    prompts = [Prompt(1, points=[[150, 100]], labels=[1]), Prompt(2, box=[20, 20, 120, 150])]
    runs = {}
    # The static frame step in bfloat16 too (what a compiled tracker runs on the CPU).
    for dtype, static in (("float32", False), ("bfloat16", False), ("bfloat16", True)):
        tracker = Tracker.from_pretrained(ckpt, "tiny", 256, "cpu", dtype=dtype, static=static, max_objects=2)
        runs[dtype, static] = [tracker.track(f, prompts if i == 0 else []).masks for i, f in enumerate(frames)]
    for fast_run in (runs["bfloat16", False], runs["bfloat16", True]):
        for exact, fast in zip(runs["float32", False], fast_run):
            assert exact.any(dim=(1, 2)).all()  # the test means something only if there are masks
            iou = (exact & fast).sum((1, 2)) / (exact | fast).sum((1, 2))
            assert iou.min() > 0.95, iou
