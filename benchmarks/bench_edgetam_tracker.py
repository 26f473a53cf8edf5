"""EdgeTAM against SAM 2.1 tiny in our tracker, side by side, CPU (issue 20).

One process, the same real frames (the bundled clip, 640x360) and prompts (clicks on frame 0);
every tracker is stepped once per frame in turn, so machine noise hits all alike. Modes:
``exact`` (the default eager path), ``static`` (the static frame step, eager), ``compiled``
(the static step compiled whole, ``compile=True``) and ``compiled-bf16`` (the same in
bfloat16); ``exact-fused`` and ``compiled-fused`` are EdgeTAM's two with ``fuse=True`` (SAM 2
has no BatchNorm to fold: its rows are left out). Reports ms per frame p50 / p95 after the warm-up frames, the first two frames'
seconds (the compile), the bytes of tracking state held, the process's peak resident memory
once each model is loaded, and each mode's mask IoU against its model's exact path (min over
object-frames). Random "alive" official-format weights: time depends on shapes only.

    TORCHINDUCTOR_COMPILE_THREADS=1 .venv/bin/python benchmarks/bench_edgetam_tracker.py \\
        --image-size 512 --objects 1 4 --frames 12 --modes exact compiled-bf16 \\
        --json benchmarks/results/edgetam_tracker_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import checkpoint, clip_frames  # noqa: E402  (puts the checkout on sys.path)

from sam2_ros import Prompt, Tracker  # noqa: E402
from sam2_ros.model.build import build_model  # noqa: E402

MODES = {"exact": {}, "static": {"static": True}, "compiled": {"compile": True},
         "compiled-bf16": {"compile": True, "dtype": "bfloat16"}}
# EdgeTAM's trunk with its BatchNorms folded into the convs (``fuse=True``); SAM 2 has none to fold.
FUSED = {"exact-fused": "exact", "compiled-fused": "compiled"}


def prompts(n: int, h: int, w: int) -> list:
    return [Prompt(i + 1, points=[[w * (i + 1) / (n + 1), h * 0.55]], labels=[1]) for i in range(n)]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(models, modes, image_size: int, n_obj: int, n_frames: int, warmup: int, folder: Path) -> list:
    frames = clip_frames(n_frames, 640, 360)
    h, w = frames[0].shape[:2]
    first = prompts(n_obj, h, w)
    trackers, rss = {}, {}
    for model in models:
        path = str(checkpoint(model, folder))
        net = build_model(path, model, image_size, "cpu")
        fused = build_model(path, model, image_size, "cpu", fuse=True) if model == "edgetam" else None
        for mode in modes:
            if mode in FUSED and fused is not None:
                trackers[model, mode] = Tracker(fused, max_objects=n_obj, **MODES[FUSED[mode]])
            elif mode not in FUSED:
                trackers[model, mode] = Tracker(net, max_objects=n_obj, **MODES[mode])
        rss[model] = peak_rss_mib()
    ms = {k: [] for k in trackers}
    masks = {k: [] for k in trackers}
    for t, frame in enumerate(frames):
        for key, tracker in trackers.items():
            t0 = time.perf_counter()
            res = tracker.track(frame, first if t == 0 else ())
            ms[key].append((time.perf_counter() - t0) * 1e3)
            masks[key].append(res.masks)
    rows = []
    for (model, mode), times in ms.items():
        warm = sorted(times[warmup:])
        ref = masks[model, "exact"] if (model, "exact") in masks else None
        iou = None
        if ref is not None:
            ious = [((a & b).sum() / (a | b).sum().clamp_min(1)).item()
                    for fa, fb in zip(masks[model, mode], ref) for a, b in zip(fa, fb)]
            iou = round(min(ious), 4)
        rows.append({"model": model, "mode": mode, "image_size": image_size, "objects": n_obj,
                     "p50_ms": round(statistics.median(warm), 1),
                     "p95_ms": round(warm[math.ceil(0.95 * len(warm)) - 1], 1),
                     "first_2_frames_s": round(sum(times[:2]) / 1e3, 1),
                     "state_mib": round(trackers[model, mode].state_bytes() / 2**20, 1),
                     "peak_rss_mib_after_load": round(rss[model]), "iou_vs_exact_min": iou})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "edgetam"])
    ap.add_argument("--modes", nargs="+", default=["exact", "compiled-bf16"], choices=[*MODES, *FUSED])
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3, help="frames left out of p50/p95 (the compile, the bank filling)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.objects:
            rows += run(a.models, a.modes, a.image_size, n, a.frames, a.warmup, Path(tmp))
    out = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
