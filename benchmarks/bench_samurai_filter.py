"""What SAMURAI's motion-aware memory adds to a frame: the boxes of the decoder's three
candidates, the Kalman filter, the choice, the memory test and the ring (``sam2_ros.step.
memory_selection``), for S object slots at image size S_img, eager and compiled.

The candidates' upsampled logits (S, 3, S_img, S_img) are inputs: the decoder computes them
anyway. Reported: min and median ms per frame of the boxes alone and of the whole SAMURAI
part, and (``--frame-ms``) its share of a tracker frame of that size.

    .venv/bin/python benchmarks/bench_samurai_filter.py --image-sizes 512 1024 --slots 1 4 \\
        --json benchmarks/results/samurai_filter.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_model import _timed  # noqa: E402
from sam2_ros.step import memory_selection as ms  # noqa: E402

CFG = ms.SamuraiConfig()
RING = 6


def one_frame(state, masks, ious, score, ring, kept, t):
    """The SAMURAI part of one tracked frame for every slot."""
    apply = torch.ones_like(kept, dtype=torch.bool)
    c = ms.choose(CFG, state, masks, ious, apply)
    ok = ms.admit(CFG, c.iou, score, c.kf_score, c.has_kf_score)
    pos, ring, kept = ms.ring_write(ring, kept, t, apply, ok, torch.zeros_like(apply))
    return c, pos, ring, kept, ms.ring_ranks(ring)


def inputs(slots: int, size: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(slots, 3, 2, generator=g) * size * 0.6 + size * 0.2
    radius = torch.rand(slots, 3, 1, 1, generator=g) * size * 0.2 + 4
    dist = ((xx - centre[..., 0, None, None]) ** 2 + (yy - centre[..., 1, None, None]) ** 2).sqrt()
    masks = (radius - dist).float().to(device)  # (S, 3, H, W) logits, positive inside a disc
    ious = torch.rand(slots, 3, generator=g).to(device)
    state = ms.new_motion_state(slots, device)
    # A stable filter on the first candidate's box (the branch that boxes all three).
    z = ms.kalman.box_to_xyah(ms.mask_boxes(masks)[:, 0])
    mean, cov = ms.kalman.initiate(z)
    state = ms.MotionState(mean, cov, torch.full((slots,), 20, dtype=torch.int64, device=device))
    ring = torch.full((slots, RING), -1, dtype=torch.int64, device=device)
    return state, masks, ious, torch.ones(slots, device=device), ring, torch.zeros(slots, dtype=torch.int64, device=device)


def timings_ms(fn, repeats: int, device: torch.device) -> dict:
    times = [_timed(fn, device) for _ in range(repeats)]
    # On a shared machine the minimum is the least disturbed figure.
    return {"min": min(times), "median": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--slots", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--frame-ms", type=float, nargs="*", default=[],
                    help="tracker ms per frame, one per (image size, slots) pair in order, for the share column")
    ap.add_argument("--json")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    compiled = None if args.no_compile else torch.compile(one_frame, fullgraph=True, dynamic=False)
    rows = []
    with torch.inference_mode():
        for size in args.image_sizes:
            for slots in args.slots:
                state, masks, ious, score, ring, kept = inputs(slots, size, device)
                t = torch.tensor(30, device=device)
                row = {"image_size": size, "slots": slots}
                row["boxes_ms"] = timings_ms(lambda: ms.mask_boxes(masks), args.repeats, device)
                row["eager_ms"] = timings_ms(lambda: one_frame(state, masks, ious, score, ring, kept, t), args.repeats, device)
                if compiled is not None:
                    for _ in range(3):  # compile and warm up
                        compiled(state, masks, ious, score, ring, kept, t)
                    row["compiled_ms"] = timings_ms(lambda: compiled(state, masks, ious, score, ring, kept, t),
                                                   args.repeats, device)
                if args.frame_ms:
                    frame = args.frame_ms[len(rows)]
                    row["frame_ms"] = frame
                    row["eager_share_pct"] = 100 * row["eager_ms"]["min"] / frame
                rows.append(row)
                print(json.dumps(row))
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                "cpus": torch.get_num_threads(), "torch": torch.__version__, "device": str(device)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
