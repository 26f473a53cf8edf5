"""Side by side: ``Tracker(memory_selection="samurai")`` against ``"sam2"``, and against SAMURAI's
released predictor (issue 21).

Same process, same checkpoint (official format, random "alive" weights), same frames of the
bundled clip and the same prompts on frame 0. The two memory selections run interleaved frame
by frame, so that machine noise hits both alike; reported: median ms per tracked frame of each
(the prompt frame and ``--warmup`` frames left out: compiling happens there) and the ratio, per
path (``exact``: the eager exact path; ``compiled``: the static frame step, torch.compile) and
object count.

``--reference``: SAMURAI's own predictor (PyPI ``absolutely-not-samurai``, in its own venv,
``test/helpers/samurai.py``; one object, which is all it tracks) on the same frames with the
same box, timed frame by frame in its process (its image encoding included, as ours), against
our exact path with one object.

    TORCHINDUCTOR_COMPILE_THREADS=1 .venv/bin/python benchmarks/bench_samurai.py --image-size 512 \\
        --objects 1 4 --modes exact compiled --reference --json benchmarks/results/samurai_tracker.json

(one compile thread: inductor's parallel compile workers otherwise go on compiling in the
background after the first frames and slow down the timed ones.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

import common  # noqa: E402  (puts this checkout and test/ on the path)
from sam2_ros import Prompt, Tracker  # noqa: E402
from sam2_ros.model.build import build_model  # noqa: E402

SELECTIONS = ("sam2", "samurai")


def prompts_for(n: int, h: int, w: int):
    """n objects, boxes spread over the frame (the first is the reference's box)."""
    out = []
    for i in range(n):
        cx, cy = w * (0.3 + 0.4 * (i % 2)), h * (0.35 + 0.3 * (i // 2 % 2))
        out.append(Prompt(i + 1, box=[cx - w * 0.15, cy - h * 0.15, cx + w * 0.15, cy + h * 0.15]))
    return out


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def side_by_side(model, mode: str, n: int, frames, warmup: int) -> dict:
    """Both memory selections on the same frames, interleaved; medians of the timed frames."""
    h, w = frames[0].shape[:2]
    opts = dict(max_objects=n, compile=True) if mode == "compiled" else {}
    trackers = {s: Tracker(model, memory_selection=s, **opts) for s in SELECTIONS}
    prompts = prompts_for(n, h, w)
    times = {s: [] for s in SELECTIONS}
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            for s, tracker in trackers.items():
                took = _ms(lambda: tracker.track(frame, prompts if t == 0 else []))
                if t > warmup:
                    times[s].append(took)
    row = {"mode": mode, "objects": n, "frames_timed": len(times["sam2"])}
    for s in SELECTIONS:
        row[f"{s}_ms"] = statistics.median(times[s])
    row["samurai_over_sam2"] = row["samurai_ms"] / row["sam2_ms"]
    return row


def reference(model, ckpt: Path, image_size: int, frames, warmup: int) -> dict:
    """SAMURAI's predictor against our exact path, one object, the same frames and box."""
    from helpers import samurai as S

    h, w = frames[0].shape[:2]
    box = prompts_for(1, h, w)[0].box
    os.environ.pop("SAMURAI_ORACLE_CACHE", None)  # timings are measured, never reused
    (theirs,) = S.run_jobs([dict(S.track_job(ckpt, frames, image_size, box=list(map(float, box))), kind="time")])
    tracker = Tracker(model, memory_selection="samurai")
    ours = []
    with torch.inference_mode():
        for t, frame in enumerate(frames):
            ours.append(_ms(lambda: tracker.track(frame, [Prompt(1, box=box)] if t == 0 else [])))
    row = {"objects": 1, "frames_timed": len(frames) - warmup - 1,
           "samurai_release_ms": statistics.median(theirs["ms"][warmup + 1:]),
           "ours_exact_ms": statistics.median(ours[warmup + 1:])}
    row["release_over_ours"] = row["samurai_release_ms"] / row["ours_exact_ms"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--modes", nargs="+", choices=("exact", "compiled"), default=["exact", "compiled"])
    ap.add_argument("--frames", type=int, default=24, help="frames per run, the prompt frame included")
    ap.add_argument("--warmup", type=int, default=3, help="tracked frames left out after the prompt frame")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--reference", action="store_true", help="also SAMURAI's released predictor (its venv)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = common.clip_frames(args.frames, 640, 480)
    rows, ref = [], None
    with tempfile.TemporaryDirectory() as d:
        ckpt = common.checkpoint(args.model, Path(d))
        model = build_model(str(ckpt), args.model, args.image_size, "cpu")
        for mode in args.modes:
            for n in args.objects:
                rows.append(side_by_side(model, mode, n, frames, args.warmup))
                print(json.dumps(rows[-1]), flush=True)
        if args.reference:
            ref = reference(model, ckpt, args.image_size, frames, args.warmup)
            print(json.dumps(ref), flush=True)
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(), "torch": torch.__version__, "model": args.model,
                "image_size": args.image_size, "frames": args.frames, "warmup": args.warmup,
                "command": " ".join(sys.argv)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows, "reference": ref}, indent=1) + "\n")


if __name__ == "__main__":
    main()
