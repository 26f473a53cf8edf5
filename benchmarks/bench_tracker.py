"""Side-by-side: our streaming tracker against Meta's SAM2VideoPredictor driven frame by frame.

Same process, same CPU, same checkpoint (official format, random weights), same real frames
and prompts; the two run interleaved frame by frame so machine noise hits both alike.
Reports the median milliseconds per frame and their ratio, and (``--memory-frames``) the bytes
each holds as the stream goes on; ``--macs`` counts the multiply-accumulates of one frame.

    .venv/bin/python benchmarks/bench_tracker.py --sizes 256 512 --objects 1 4 --frames 30 --macs
    .venv/bin/python benchmarks/bench_tracker.py --sizes 256 --objects 1 4 --dtype bfloat16
    TORCHINDUCTOR_COMPILE_THREADS=1 .venv/bin/python benchmarks/bench_tracker.py --sizes 256 512 \
        --objects 1 4 --modes exact compiled compiled-bf16   # the static frame step, compiled
    (one compile thread: inductor's parallel compile workers otherwise go on compiling in the
    background for seconds after the first frames and slow down every timed frame)
    .venv/bin/python benchmarks/bench_tracker.py --memory-frames 2000 --sizes 256 --objects 1

Needs the test dependencies (the official ``sam2`` package): ``bash scripts/setup.sh --test``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from helpers.oracle import OfficialStreamingOracle, make_official_checkpoint, sample_frames  # noqa: E402

from sam2_ros import Prompt, Tracker  # noqa: E402
from sam2_ros.model.build import build_model  # noqa: E402


def prompts_for(n_objects: int, h: int, w: int):
    """n objects spread over the frame: clicks and boxes."""
    out = []
    for i in range(n_objects):
        cx, cy = w * (0.2 + 0.6 * (i % 2)), h * (0.3 + 0.4 * (i // 2 % 2))
        if i % 2:
            out.append(Prompt(i + 1, box=[cx - w * 0.15, cy - h * 0.15, cx + w * 0.15, cy + h * 0.15]))
        else:
            out.append(Prompt(i + 1, points=[[cx, cy]], labels=[1]))
    return out


def official_held_bytes(oracle: OfficialStreamingOracle) -> int:
    """Bytes of the tensors the official inference state keeps per object and frame."""
    seen, total = set(), 0

    def walk(x):
        nonlocal total
        if isinstance(x, torch.Tensor):
            if x.data_ptr() not in seen:
                seen.add(x.data_ptr())
                total += x.numel() * x.element_size()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    st = oracle.state
    for key in ("output_dict_per_obj", "temp_output_dict_per_obj", "point_inputs_per_obj", "mask_inputs_per_obj"):
        walk(st[key])
    return total


MODES = ("exact", "static", "compiled", "exact-bf16", "static-bf16", "compiled-bf16")


def make_tracker(ckpt: Path, size: str, image_size: int, encoder: str, dtype: str = "float32", mode: str = "exact",
                 n_objects: int = 16, max_cond_frames: int = 4) -> Tracker:
    """Our tracker; ``encoder="onnxruntime"`` exports the image encoder to ONNX first (the
    fast CPU path: not bit-identical to the official numbers, see test_backends.py);
    ``dtype="bfloat16"`` is the CPU's opt-in mixed precision (not bit-identical either).
    ``mode``: exact (the default path), static (the static frame step, eager) or compiled
    (``compile=True``), a ``-bf16`` suffix for bfloat16; static modes get ``n_objects`` slots."""
    model = build_model(str(ckpt), size, image_size, "cpu")
    kind, _, bf16 = mode.partition("-")
    kwargs = dict(dtype="bfloat16" if bf16 else dtype, max_cond_frames=max_cond_frames)
    if kind != "exact":
        kwargs.update(static=True, compile=kind == "compiled", max_objects=n_objects)
    if encoder == "torch":
        return Tracker(model, **kwargs)
    from sam2_ros.backends import make_encoder
    from sam2_ros.backends.onnx_export import export_part

    path = ckpt.parent / f"encoder_{size}_{image_size}.onnx"
    if not path.exists():
        export_part(model, "encoder", str(path), quiet=True)
    return Tracker(model, encoder=make_encoder(encoder, model, str(path)), **kwargs)


def run_speed(size: str, image_size: int, n_objects: int, n_frames: int, ckpt: Path, encoder: str = "torch",
              dtype: str = "float32", modes=("exact",), max_cond_frames: int = 4) -> dict:
    """Milliseconds per frame (median after 3 warm-up frames) of the official predictor and of
    each of our ``modes``, all on the same frames, interleaved frame by frame; the first two
    frames' time of each mode (compilation, for compiled modes) and each mode's mask IoU against
    the exact path (when it runs too)."""
    frames = sample_frames(n_frames, 640, 360)
    h, w = frames[0].shape[:2]
    prompts = prompts_for(n_objects, h, w)
    oracle = OfficialStreamingOracle(ckpt, size, image_size, frames)
    trackers = {m: make_tracker(ckpt, size, image_size, encoder, dtype, m, n_objects, max_cond_frames) for m in modes}
    ms = {m: [] for m in ("official", *modes)}
    first = {m: 0.0 for m in modes}
    ious = {m: [] for m in modes}
    for t, frame in enumerate(frames):
        t0 = time.perf_counter()
        if t == 0:
            for p in prompts:
                oracle.add_prompt(0, p.obj_id, points=p.points, labels=p.labels, box=p.box)
        oracle.track(t)
        if t >= 3:  # skip warm-up frames (allocator, first prompts, compilation)
            ms["official"].append((time.perf_counter() - t0) * 1e3)
        masks = {}
        for m, tracker in trackers.items():
            t1 = time.perf_counter()
            masks[m] = tracker.track(frame, prompts if t == 0 else ()).masks
            dt = time.perf_counter() - t1
            if t >= 3:
                ms[m].append(dt * 1e3)
            elif t < 2:
                first[m] += dt
        if "exact" in masks:
            for m, mk in masks.items():
                inter, union = (mk & masks["exact"]).sum((1, 2)), (mk | masks["exact"]).sum((1, 2))
                ious[m] += torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter, dtype=torch.float)).tolist()
    theirs = statistics.median(ms["official"])
    out = {"model": size, "image_size": image_size, "objects": n_objects, "encoder": encoder, "frames": len(ms["official"]),
           "max_cond_frames": max_cond_frames,
           "official_ms": round(theirs, 1), "modes": {}}
    for m in modes:
        ours = statistics.median(ms[m])
        out["modes"][m] = {"ms": round(ours, 1), "speedup": round(theirs / ours, 2), "first_two_frames_s": round(first[m], 1),
                           "min_iou_vs_exact": round(min(ious[m]), 4) if ious[m] else None,
                           "mean_iou_vs_exact": round(statistics.mean(ious[m]), 4) if ious[m] else None}
    return out


def run_macs(size: str, image_size: int, n_objects: int, ckpt: Path) -> dict:
    """Multiply-accumulates of one tracked frame (after 5 frames of warm-up), ours and official:
    the arithmetic each side must do, whatever the machine."""
    from torch.utils.flop_counter import FlopCounterMode

    frames = sample_frames(6, 640, 360)
    prompts = prompts_for(n_objects, *frames[0].shape[:2])
    oracle = OfficialStreamingOracle(ckpt, size, image_size, frames)
    tracker = Tracker(build_model(str(ckpt), size, image_size, "cpu").requires_grad_(False))
    for t in range(5):
        if t == 0:
            for p in prompts:
                oracle.add_prompt(0, p.obj_id, points=p.points, labels=p.labels, box=p.box)
        oracle.track(t)
        tracker.track(frames[t], prompts if t == 0 else ())
    with FlopCounterMode(display=False) as theirs:
        oracle.track(5)
    with FlopCounterMode(display=False) as ours:
        tracker.track(frames[5])
    g_ours, g_theirs = ours.get_total_flops() / 2e9, theirs.get_total_flops() / 2e9
    return {"model": size, "image_size": image_size, "objects": n_objects, "ours_gmac": round(g_ours, 2),
            "official_gmac": round(g_theirs, 2), "ratio": round(g_theirs / g_ours, 2)}


def run_memory(size: str, image_size: int, n_objects: int, n_frames: int, ckpt: Path, every: int) -> dict:
    base = sample_frames(40, 320, 180)
    h, w = base[0].shape[:2]
    prompts = prompts_for(n_objects, h, w)
    oracle = OfficialStreamingOracle(ckpt, size, image_size, base[:1])
    tracker = Tracker(build_model(str(ckpt), size, image_size, "cpu"))
    series = []
    for t in range(n_frames):
        frame = base[t % len(base)]
        if t > 0:
            oracle.append_frame(frame)
        if t == 0:
            for p in prompts:
                oracle.add_prompt(0, p.obj_id, points=p.points, labels=p.labels, box=p.box)
        oracle.track(t)
        tracker.track(frame, prompts if t == 0 else ())
        if t % every == 0 or t == n_frames - 1:
            series.append((t, tracker.state_bytes(), official_held_bytes(oracle)))
            print(f"  frame {t}: ours {series[-1][1]} B, official {series[-1][2]} B", flush=True)
    return {"model": size, "image_size": image_size, "objects": n_objects, "series": series}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--memory-frames", type=int, default=0, help="also track held bytes over this many frames")
    ap.add_argument("--encoder", default="torch", choices=["torch", "onnxruntime"], help="our image encoder")
    ap.add_argument("--macs", action="store_true", help="also count the multiply-accumulates per frame")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="our compute dtype")
    ap.add_argument("--max-cond-frames", type=int, default=4,
                    help="our max_cond_frames (the static bank's conditioning slots; the scenario prompts once)")
    ap.add_argument("--modes", nargs="+", default=["exact"], choices=MODES,
                    help="our trackers, run side by side: exact path, static frame step (eager), compiled; -bf16: bfloat16")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
           f"{torch.get_num_threads()} torch threads, torch {torch.__version__}", "speed": [], "macs": [], "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_official_checkpoint(args.model, 256, Path(tmp) / "ckpt.pt", seed=0)
        for s in args.sizes:
            for n in args.objects:
                if args.frames:
                    r = run_speed(args.model, s, n, args.frames, ckpt, args.encoder, args.dtype, args.modes,
                                  args.max_cond_frames)
                    out["speed"].append(r)
                    print(json.dumps(r), flush=True)
                if args.macs:
                    r = run_macs(args.model, s, n, ckpt)
                    out["macs"].append(r)
                    print(json.dumps(r), flush=True)
                if args.memory_frames:
                    r = run_memory(args.model, s, n, args.memory_frames, ckpt, every=max(1, args.memory_frames // 20))
                    out["memory"].append(r)
                    first, last = r["series"][1], r["series"][-1]
                    print(f"memory {args.model}@{s} {n} obj: ours {first[1]} -> {last[1]} B, "
                          f"official {first[2]} -> {last[2]} B over frames {first[0]}..{last[0]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
