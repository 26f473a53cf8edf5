"""Several cameras, one model: one process tracking N cameras with one shared SAM 2
through the node's own shared worker (``sam2_ros.ros.shared_worker.SharedWorker``: rounds of
one frame per camera, encoded as one batch, tracked per camera; on a CPU in two stages) against
N separate processes with a model each, tracking frame after frame as a single node does, on
the same frames.

Per configuration: resident memory (peak RSS, summed over the processes; peak GPU memory on
CUDA), total frames per second (all cameras' frames over the wall time they took together) and
each camera's latency p50 / p95 (a frame's time from when the worker took it, or from the start
of its own step for a separate process, to its masks on the host). Cameras run saturated (a
frame always waiting, as ``frame_policy: all`` under load); camera k sees its own part of the
sample clip at its own resolution (640x360, 320x240, 480x272, ...). The separate processes
share the CPU fairly: each gets cores // N torch threads (the shared process gets all of them);
they load and warm up first, then start together.

    python benchmarks/multi_camera.py --cameras 1 2 3 --image-size 256 --out benchmarks/results/multi_camera.json

This measures the tracking core without DDS (the node adds the same conversion and publishing
per frame either way). ``run_suite`` is also the GPU suite's ``multi_camera`` section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

RESOLUTIONS = [(640, 360), (320, 240), (480, 272), (800, 448), (256, 256), (960, 544)]


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _percentile(values: List[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class _Camera:
    """One benchmark camera for :class:`~sam2_ros.ros.shared_worker.SharedWorker`, the node's
    own worker for several cameras (the node's worker interface, without ROS): its frames are
    always waiting (saturated)."""

    def __init__(self, tracker, frames, prompts, warmup: int, device) -> None:
        self.tracker, self._frames, self._prompts, self._warmup = tracker, frames, prompts, warmup
        self._device = device
        self.frames, self.listener = self, None  # its own frame queue
        self._next = 0
        self._taken: Dict[int, float] = {}
        self.latency: List[float] = []
        self.warm, self.done = threading.Event(), threading.Event()
        self.warm_at = time.time()
        if warmup == 0:
            self.warm.set()
        self.error: Optional[BaseException] = None

    def get_nowait(self):
        t = self._next
        if t >= len(self._frames):
            return None
        self._next += 1
        self._taken[t] = time.perf_counter()
        return (t,)

    def prepare(self, t: int) -> tuple:
        return t, self._frames[t]  # (anything, RGB frame): the worker batches element 1

    def track_prepared(self, frame: tuple, stop, features=None) -> None:
        from sam2_ros.ros.shared_worker import track_alone

        track_alone(self.frame_work(frame, stop, features))

    def frame_work(self, frame: tuple, stop, features=None):
        """As the node's: up to the tracker call (static trackers of a round are tracked in one step)."""
        t, rgb = frame
        res = yield self.tracker, rgb, self._prompts if t == 0 else [], features
        (res.logits > 0).cpu()  # masks on the host, as the node publishes them
        if self._device.type == "cuda":
            torch.cuda.synchronize()
        if t >= self._warmup:
            self.latency.append((time.perf_counter() - self._taken[t]) * 1e3)
        if t == self._warmup - 1:
            self.warm_at = time.time()
            self.warm.set()
        if t == len(self._frames) - 1:
            self.done.set()

    def frame_failed(self, error: BaseException, stop) -> bool:
        self.error = error
        self.warm.set()
        self.done.set()
        return True

    def run_jobs(self, stop) -> None:
        pass


def _worker(args: argparse.Namespace) -> None:
    """One process: ``args.n`` cameras sharing one model through the node's shared worker (the
    one-process side), or one camera tracked frame after frame as a single node does (``--single``)."""
    from sam2_ros import Prompt, Tracker
    from sam2_ros.model.build import build_model
    from sam2_ros.ros.shared_worker import SharedWorker
    from common import clip_frames

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_model(args.checkpoint, "tiny", args.image_size, str(device))
    cams = list(range(args.first, args.first + args.n))
    streams = {c: clip_frames(args.frames + args.warmup, *RESOLUTIONS[c % len(RESOLUTIONS)], start=17 * c) for c in cams}
    kind = {"exact": {}, "static": {"static": True}, "compiled": {"compile": True}}[args.step]
    trackers = {c: Tracker(model, max_objects=max(1, args.objects), dtype=args.dtype, **kind) for c in cams}

    def prompts(c: int) -> list:
        h, w = streams[c][0].shape[:2]
        return [Prompt(i + 1, points=[[w * (0.3 + 0.4 * i / max(1, args.objects)), h * 0.5]], labels=[1])
                for i in range(args.objects)]

    def wait_for_go() -> None:
        if args.go:
            Path(args.go + f".ready{args.first}").touch()
            while not os.path.exists(args.go):
                time.sleep(0.01)

    with torch.inference_mode():
        if args.single:
            c = cams[0]
            latency: Dict[int, List[float]] = {c: []}
            for t, frame in enumerate(streams[c]):
                if t == args.warmup:
                    wait_for_go()
                    began = time.time()
                start = time.perf_counter()
                res = trackers[c].track(frame, prompts(c) if t == 0 else [])
                (res.logits > 0).cpu()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if t >= args.warmup:
                    latency[c].append((time.perf_counter() - start) * 1e3)
            ended = time.time()
        else:
            # No pause after the warm-up: the worker's stages are full when the timed frames
            # start (a live stream's steady state), timed from the last warm-up frame tracked.
            wait_for_go()
            cameras = {c: _Camera(trackers[c], streams[c], prompts(c), args.warmup, device) for c in cams}
            worker = SharedWorker(stages=args.stages or None, joint={"auto": None, "on": True, "off": False}[args.joint])
            for cam in cameras.values():
                worker.attach(cam, threading.Event())
            for cam in cameras.values():
                cam.warm.wait()
            began = max(cam.warm_at for cam in cameras.values())
            for cam in cameras.values():
                cam.done.wait()
            ended = time.time()
            worker.stop()
            errors = [cam.error for cam in cameras.values() if cam.error is not None]
            if errors:
                raise errors[0]
            latency = {c: cam.latency for c, cam in cameras.items()}
    out = {"step": args.step, "cameras": cams, "began": began, "ended": ended, "latency_ms": {str(c): latency[c] for c in cams},
           "peak_rss_mb": _peak_rss_mb()}
    if not args.single:
        out["stages"], out["joint_frames"] = worker.stages, worker.joint_frames
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def _spawn(args: argparse.Namespace, n: int, first: int, threads: int, go: str, single: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", "--n", str(n), "--first", str(first), "--threads", str(threads),
           "--checkpoint", args.checkpoint, "--image-size", str(args.image_size), "--device", args.device,
           "--dtype", args.dtype, "--frames", str(args.frames), "--warmup", str(args.warmup),
           "--objects", str(args.objects), "--go", go, "--stages", str(args.stages), "--step", args.step,
           "--joint", args.joint] + (["--single"] if single else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)


def _gather(procs: List[subprocess.Popen], go: str, firsts: List[int]) -> List[dict]:
    while not all(os.path.exists(go + f".ready{f}") for f in firsts):
        if any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError("a benchmark process failed")
        time.sleep(0.05)
    Path(go).touch()  # everyone loaded and warm: start together
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a benchmark process exited with {p.returncode}")
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    return results


def _summary(kind: str, n: int, results: List[dict], frames: int) -> dict:
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    per_camera = {}
    for r in results:
        for c, ms in r["latency_ms"].items():
            per_camera[c] = {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(_percentile(ms, 0.95), 1)}
    row = {"kind": kind, "cameras": n, "processes": len(results), "step": results[0].get("step"),
           "rss_mb": round(sum(r["peak_rss_mb"] for r in results), 1),
           "total_fps": round(n * frames / wall, 3), "latency": per_camera}
    if "stages" in results[0]:
        row["stages"], row["joint_frames"] = results[0]["stages"], results[0]["joint_frames"]
    if "peak_gpu_mb" in results[0]:
        row["gpu_mb"] = round(sum(r["peak_gpu_mb"] for r in results), 1)
    return row


def run_suite(checkpoint: str, cameras: List[int], image_size: int, device: str, dtype: str = "auto",
              frames: int = 20, warmup: int = 2, objects: int = 2, threads: int = 0, stages: int = 0,
              step: str = "exact", joint: str = "auto") -> List[dict]:
    """Every configuration: one process with N cameras and N processes, for N in ``cameras``.
    ``stages``: the shared worker's (0: its default for the device); ``step``: the trackers'
    path (exact, static or compiled); ``joint``: static trackers of a round in one step (on,
    off, or auto: the worker's default, on a GPU only)."""
    threads = threads or os.cpu_count() or 1
    ns = argparse.Namespace(checkpoint=checkpoint, image_size=image_size, device=device, dtype=dtype, frames=frames,
                            warmup=warmup, objects=objects, stages=stages, step=step, joint=joint)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cameras:
            go = os.path.join(tmp, f"shared{n}")
            rows.append(_summary("one process", n, _gather([_spawn(ns, n, 0, threads, go, False)], go, [0]), frames))
            go = os.path.join(tmp, f"separate{n}")
            procs = [_spawn(ns, 1, c, max(1, threads // n), go, True) for c in range(n)]
            rows.append(_summary("separate processes", n, _gather(procs, go, list(range(n))), frames))
            print(json.dumps(rows[-2]), "\n", json.dumps(rows[-1]), flush=True)
    return rows


def random_checkpoint(folder: str, image_size: int) -> str:
    """An official-format tiny checkpoint with random weights (the cost depends on shapes only)."""
    import torch

    from sam2_ros.model.build import build_random_model

    path = os.path.join(folder, "sam2.1_hiera_tiny_random.pt")
    torch.save({"model": build_random_model("tiny", image_size, "cpu").state_dict()}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--frames", type=int, default=20, help="timed frames per camera")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--objects", type=int, default=2, help="objects per camera")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in all (default: every core)")
    ap.add_argument("--stages", type=int, default=0, choices=[0, 1, 2],
                    help="the shared worker's stages (0: its default, 2 on a CPU with two torch threads or more)")
    ap.add_argument("--step", default="exact", choices=["exact", "static", "compiled"],
                    help="the trackers' path: exact (the default), static or compiled frame step")
    ap.add_argument("--joint", default="auto", choices=["auto", "on", "off"],
                    help="static/compiled trackers of a round in one step (auto: the worker's default, GPU only)")
    ap.add_argument("--checkpoint", default="", help="default: random tiny weights")
    ap.add_argument("--out", default="")
    # one benchmark process (started by the driver)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--go", default="", help=argparse.SUPPRESS)
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or random_checkpoint(tmp, args.image_size)
        rows = run_suite(ckpt, args.cameras, args.image_size, args.device, args.dtype, args.frames, args.warmup,
                         args.objects, args.threads, args.stages, args.step, args.joint)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "image_size": args.image_size, "device": args.device, "frames": args.frames,
              "objects_per_camera": args.objects, "step": args.step, "joint": args.joint, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
