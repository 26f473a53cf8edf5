"""Every check that needs a GPU, in one run that writes one JSON (``benchmarks/gpu_suite.sh``).

Sections, in the order they run (each is skipped, and says so in the JSON, once the run is past
its ``--deadline``, so the command always ends in time and keeps what it measured):

1. ``sync``: the compiled step (``compile="reduce-overhead"``: CUDA graphs) on unprompted frames
   under ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation inside it raises.
2. ``speed``: frames per second and per-frame latency p50/p95 (``Tracker.track``, frame in,
   masks on the host out) for each model and object count in each mode: ``eager`` (the exact
   path), ``compiled`` (``compile=True``), ``cudagraphs`` (``compile="reduce-overhead"``), and
   Meta's ``SAM2VideoPredictorVOS`` (``vos_optimized=True``) on the same frames and prompts,
   with the peak GPU memory of each; ``cudagraphs_samurai``: CUDA graphs with SAMURAI's
   motion-aware memory (``memory_selection="samurai"``), the first model only, to compare with
   ``cudagraphs`` (issue 21). EdgeTAM (``edgetam``, by default beside tiny) runs the
   three modes of ours (Meta's package has no EdgeTAM; EdgeTAM's paper reports 150.9 FPS on an
   A100 for its own code).
3. ``parity``: CUDA float32 against CPU float32 logits on the tracker-parity scenario (exact
   and static paths), and bfloat16 fidelity (mask IoU against CPU float32).
4. ``multi_camera``: one process with 1 and 3 cameras sharing one model (frames
   batched) against 1 and 3 separate processes, at ``--image-size`` (1024): peak GPU memory
   and RSS, total frames per second, each camera's latency p50/p95
   (``benchmarks/multi_camera.py``; target: 3 cameras in one process >= 2x the total fps of
   three processes); then 3 cameras on the static step, whose slots the worker tracks in one
   step per round on a GPU (``sam2_ros.tracking.cameras``).

``--smoke`` runs all of it on the CPU at tiny sizes in seconds (the test suite does, so the
script is known to work before a GPU is spent on it): compiled modes then run the static step
eagerly, and the official predictor without ``vos_optimized``.

    python3 benchmarks/gpu_suite.py --out results/gpu_suite.json          # on the GPU machine
    python3 benchmarks/gpu_suite.py --smoke --out /tmp/smoke.json          # anywhere
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from sam2_ros import Prompt, Tracker  # noqa: E402
from sam2_ros.model.build import build_model  # noqa: E402
from common import checkpoint, clip_frames  # noqa: E402  (benchmarks/common.py)

MODES = ("eager", "compiled", "cudagraphs", "cudagraphs_samurai", "official_vos")


def prompts_for(n: int, h: int, w: int) -> list:
    """n objects: clicks and boxes spread over the frame."""
    out = []
    for i in range(n):
        cx, cy = w * (0.15 + 0.7 * ((i * 0.37) % 1)), h * (0.25 + 0.5 * ((i * 0.61) % 1))
        if i % 2:
            out.append(Prompt(i + 1, box=[cx - 0.1 * w, cy - 0.1 * h, cx + 0.1 * w, cy + 0.1 * h]))
        else:
            out.append(Prompt(i + 1, points=[[cx, cy]], labels=[1]))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(ms: list) -> dict:
    return {"fps": round(1000.0 / statistics.mean(ms), 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "frames": len(ms)}


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.start = time.perf_counter()
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
        self.out = {
            "date": time.strftime("%Y-%m-%d %H:%M"), "smoke": args.smoke,
            "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
                        "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                        "cuda": torch.version.cuda},
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "sync": None, "speed": [], "parity": {}, "multi_camera": [], "skipped": [], "errors": [],
        }

    def left(self) -> float:
        return self.args.deadline - (time.perf_counter() - self.start)

    def section(self, name: str, fn, *a) -> None:
        """Run one part unless the deadline has passed; an error is recorded, not fatal."""
        if self.left() <= 0:
            self.out["skipped"].append(f"{name}: past the {self.args.deadline:.0f} s deadline")
            return
        t0 = time.perf_counter()
        try:
            fn(*a)
        except Exception as error:  # noqa: BLE001 - every failure goes into the JSON
            self.out["errors"].append({"section": name, "error": f"{type(error).__name__}: {error}",
                                       "trace": traceback.format_exc()[-2000:]})
        print(f"[gpu_suite] {name}: {time.perf_counter() - t0:.1f} s ({self.left():.0f} s left)", flush=True)
        self.save()

    def save(self) -> None:
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(self.out, indent=1))

    # ------------------------------------------------------------------ trackers
    def image_size(self, model: str) -> int:
        """``--image-size``, but EdgeTAM runs at multiples of 256 only (the smoke run's 64 -> 256)."""
        size = self.args.image_size
        return max(256, -(-size // 256) * 256) if model == "edgetam" else size

    def tracker(self, model: str, image_size: int, mode: str, n_objects: int, dtype: str = "auto") -> Tracker:
        net = build_model(str(checkpoint(model, self.tmp)), model, image_size, self.device)
        selection = "samurai" if mode.endswith("_samurai") else "sam2"
        compile_ = {"eager": False, "compiled": True, "cudagraphs": "reduce-overhead"}[mode.removesuffix("_samurai")]
        if compile_ and self.args.smoke:
            # Compilation costs minutes on a CPU; the smoke run checks the script, not inductor
            # (test_frame_step.py compiles for real).
            return Tracker(net, max_objects=n_objects, dtype=dtype, static=True, memory_selection=selection)
        return Tracker(net, max_objects=n_objects, dtype=dtype, compile=compile_, memory_selection=selection)

    # ------------------------------------------------------------------ sections
    def check_sync(self) -> None:
        """Unprompted compiled frames must not synchronise with the host."""
        a = self.args
        tracker = self.tracker(a.models[0], a.image_size, "cudagraphs", a.objects[-1])
        frames = clip_frames(4, a.width, a.height)
        tracker.track(frames[0], prompts_for(a.objects[-1], a.height, a.width))
        for f in frames[1:3]:
            tracker.track(f)
        from sam2_ros.model.preprocess import to_model_input

        image = to_model_input([frames[3]], a.image_size, self.device)
        sync(self.device)
        if self.device.type != "cuda":
            tracker._step(image)
            self.out["sync"] = {"ok": None, "note": "set_sync_debug_mode is CUDA-only; the step ran on the CPU"}
            return
        torch.cuda.set_sync_debug_mode("error")
        try:
            tracker._step(image)
            tracker._step(image)
            result = {"ok": True, "note": "two compiled unprompted steps under set_sync_debug_mode('error')"}
        except RuntimeError as error:
            result = {"ok": False, "note": str(error)[:500]}
        finally:
            torch.cuda.set_sync_debug_mode("default")
        sync(self.device)
        self.out["sync"] = result

    def speed(self, model: str, n_objects: int, mode: str) -> None:
        a = self.args
        frames = clip_frames(a.frames + a.warmup, a.width, a.height)
        prompts = prompts_for(n_objects, a.height, a.width)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        if mode == "official_vos":
            step = self.official(model, frames, prompts)
        else:
            tracker = self.tracker(model, self.image_size(model), mode, n_objects)
            step = lambda t: tracker.track(frames[t], prompts if t == 0 else ())  # noqa: E731
        ms = []
        for t in range(len(frames)):
            sync(self.device)
            t1 = time.perf_counter()
            step(t)
            sync(self.device)
            if t == a.warmup - 1:
                warm_s = time.perf_counter() - t0
            if t >= a.warmup:
                ms.append((time.perf_counter() - t1) * 1e3)
        row = {"model": model, "image_size": self.image_size(model), "objects": n_objects, "mode": mode, **summary(ms),
               "warmup_s": round(warm_s, 1)}
        if self.device.type == "cuda":
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        self.out["speed"].append(row)
        print(f"[gpu_suite]   {json.dumps(row)}", flush=True)

    def official(self, model: str, frames: list, prompts: list):
        """Meta's predictor driven frame by frame (``vos_optimized`` on GPUs)."""
        from helpers.oracle import OfficialStreamingOracle

        oracle = OfficialStreamingOracle(checkpoint(model, self.tmp), model, self.args.image_size, frames,
                                         device=str(self.device), vos_optimized=not self.args.smoke)

        def step(t: int):
            if t == 0:
                for p in prompts:
                    oracle.add_prompt(0, p.obj_id, points=p.points, labels=p.labels, box=p.box)
            return oracle.track(t)

        return step

    def parity(self) -> None:
        """CUDA float32 vs CPU float32 (exact and static paths), and bfloat16 fidelity."""
        from helpers.parity import FRAMES, run_ours, scenario

        frames = clip_frames(FRAMES if not self.args.smoke else 5, 320, 180)
        plan = scenario(180, 320)
        ckpt = str(checkpoint("tiny", self.tmp))
        size = 256 if not self.args.smoke else 64

        def run(device: str, dtype: str, static: bool):
            net = build_model(ckpt, "tiny", size, device)
            return run_ours(Tracker(net, max_objects=4, max_cond_frames=2, dtype=dtype, static=static), frames, plan)

        reference = run("cpu", "float32", False)
        for name, (dtype, static) in {"float32_exact": ("float32", False), "float32_static": ("float32", True),
                                      "bfloat16_static": ("bfloat16", True)}.items():
            ours = run(str(self.device), dtype, static)
            errs, ious = [], []
            for a_, b_ in zip(ours, reference):
                for oid in b_:
                    la, lb = a_[oid][0].float(), b_[oid][0].float()
                    errs.append(((la - lb).abs().max() / lb.abs().max().clamp_min(1e-6)).item())
                    ma, mb = la > 0, lb > 0
                    union = int((ma | mb).sum())
                    ious.append(int((ma & mb).sum()) / union if union else 1.0)
            self.out["parity"][name] = {"vs": "cpu float32 exact", "max_rel_logit_err": float(f"{max(errs):.3g}"),
                                        "min_mask_iou": round(min(ious), 5), "mean_mask_iou": round(statistics.mean(ious), 5),
                                        "object_frames": len(ious)}
        print(f"[gpu_suite]   parity {json.dumps(self.out['parity'])}", flush=True)

    def multi_camera(self) -> None:
        """One process with N cameras (one model, frames batched) against N processes."""
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from multi_camera import run_suite

        a = self.args
        dtype = "auto" if self.device.type == "cuda" else "float32"
        ckpt, kw = str(checkpoint("tiny", self.tmp)), dict(frames=max(2, a.frames // 2), warmup=a.warmup, objects=a.objects[0])
        self.out["multi_camera"] = run_suite(ckpt, [1, 3], a.image_size, str(self.device), dtype, **kw)
        # the static step: on a GPU the three cameras' slots go through one step per round
        self.out["multi_camera"] += run_suite(ckpt, [3], a.image_size, str(self.device), dtype, step="static", **kw)

    def run(self) -> None:
        a = self.args
        self.section("sync", self.check_sync)
        # The headline numbers first (tiny, CUDA graphs, Meta's VOS), then the rest.
        order = [(m, n, mode) for m in a.models for mode in ("cudagraphs", "cudagraphs_samurai", "official_vos", "eager",
                                                             "compiled")
                 for n in a.objects if mode != "cudagraphs_samurai" or m == a.models[0]]
        for model, n, mode in order:
            if mode in a.modes and not (model == "edgetam" and mode == "official_vos"):
                self.section(f"speed {model} {n} obj {mode}", self.speed, model, n, mode)
        self.section("parity", self.parity)
        self.section("multi_camera", self.multi_camera)
        self.out["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        self.save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, seconds: check that the script works")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--models", nargs="+", default=None,
                    help="default: tiny edgetam small (tiny edgetam with --smoke)")
    ap.add_argument("--objects", nargs="+", type=int, default=None, help="default: 1 5 (2 with --smoke)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--image-size", type=int, default=None, help="default: 1024 (64 with --smoke)")
    ap.add_argument("--frames", type=int, default=None, help="timed frames per configuration (default 60; 2 with --smoke)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first frames (default 8; 1 with --smoke)")
    ap.add_argument("--deadline", type=float, default=420.0, help="seconds after which remaining sections are skipped")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_suite.json")
    args = ap.parse_args()
    smoke = args.smoke
    defaults = dict(device="cpu" if smoke else "cuda",
                    models=["tiny", "edgetam"] if smoke else ["tiny", "edgetam", "small"],
                    objects=[2] if smoke else [1, 5], image_size=64 if smoke else 1024,
                    frames=2 if smoke else 60, warmup=1 if smoke else 8)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.width, args.height = (96, 64) if smoke else (1280, 720)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"gpu_suite: --device {args.device} but this torch ({torch.__version__}) sees no CUDA device; "
                 "use --smoke (CPU) here")
    torch.manual_seed(0)
    Suite(args).run()
    print(f"[gpu_suite] wrote {args.out}")


if __name__ == "__main__":
    main()
