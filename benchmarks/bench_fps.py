"""Tracker throughput (FPS) and latency of ours alone, for GPUs (and a quick CPU check).

    .venv/bin/python benchmarks/bench_fps.py --device cuda --dtype bfloat16 --models tiny small \\
        --image-size 1024 --objects 1 5 --compile none reduce-overhead
    .venv/bin/python benchmarks/bench_fps.py --device cpu --image-size 256 --frames 10   # smoke run

Random weights (no download); the figures depend on shapes, not on weight values. Frames are
real (the bundled clip), 1280x720. Reports median per-frame ms, FPS and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import torch

from sam2_ros import Prompt, Tracker
from sam2_ros.model.build import build_random_model

CLIP = Path(__file__).resolve().parents[1] / "data" / "sample" / "bunny.mp4"


def frames(n: int):
    cap = cv2.VideoCapture(str(CLIP))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (1280, 720)))
    return out


def run(model: str, size: int, n_obj: int, compile_mode: str, device: str, dtype: str, n_frames: int) -> dict:
    net = build_random_model(model, size, device)
    compile_arg = False if compile_mode == "none" else compile_mode
    tracker = Tracker(net, dtype=dtype, compile=compile_arg, max_objects=max(16, n_obj))
    clip = frames(n_frames)
    h, w = clip[0].shape[:2]
    prompts = [Prompt(i + 1, points=[[w * (i + 1) / (n_obj + 1), h / 2]], labels=[1]) for i in range(n_obj)]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for t, frame in enumerate(clip):
        t0 = time.perf_counter()
        tracker.track(frame, prompts if t == 0 else ())  # returns CPU tensors: includes the sync
        times.append((time.perf_counter() - t0) * 1e3)
    warm = times[min(10, len(times) // 3):]
    ms = statistics.median(warm)
    return {"model": model, "image_size": size, "objects": n_obj, "compile": compile_mode, "dtype": str(tracker.dtype),
            "median_ms": round(ms, 2), "p95_ms": round(sorted(warm)[int(0.95 * (len(warm) - 1))], 2),
            "fps": round(1000 / ms, 1), "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny"])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--compile", nargs="+", default=["none"], help="none, default, reduce-overhead, max-autotune")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    dev = args.device
    machine = torch.cuda.get_device_name() if dev.startswith("cuda") else (platform.processor() or platform.machine())
    out = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "torch": torch.__version__, "results": []}
    for m in args.models:
        for n in args.objects:
            for c in args.compile:
                r = run(m, args.image_size, n, c, dev, args.dtype, args.frames)
                out["results"].append(r)
                print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
