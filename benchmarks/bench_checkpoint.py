"""Time to first frame with a warm cache: the Hugging Face Hub cache against sam2_ros' own cache
of before (issue 24), each in a fresh process as a node or tool starts.

The checkpoint (an official-format tiny with random weights) is served by a Hub on loopback
(test/hub_server.py) and downloaded once into a Hub cache; the same bytes go into the old
cache folder. Then, alternating, fresh processes load it and track one frame:

* ``before``: the downloader this issue removed (``sam2_ros/model/checkpoint.py`` of commit
  ``BEFORE``, loaded from git): ``resolve_checkpoint(None, "tiny")`` finds the file in
  ``$SAM2_ROS_CACHE`` (a size check), then the same model build and first frame;
* ``hub``: ``Tracker.from_pretrained(None)``: the Hub cache, the blob's name checked against the
  official SHA-256, no request;
* ``hub-id``: ``Tracker.from_pretrained("facebook/sam2.1-hiera-tiny")``: the same file;
* ``transformers``: a transformers-format repository (``config.json`` + ``model.safetensors``):
  huggingface_hub asks the Hub (one HEAD per file) whether ``main`` moved, then the cache;
* ``transformers-offline``: the same with ``HF_HUB_OFFLINE=1``: no request.

Each process reports the seconds from its start to its imports done, the checkpoint found, the
model built and the first frame tracked; the medians over the runs are printed (and written
with ``--json``). Official files carry Meta's SHA-256; the benchmark gives both tables the
digest of its random file, in the measuring processes only.

    .venv/bin/python benchmarks/bench_checkpoint.py --runs 7 --image-size 512
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

BEFORE = "57be853"  # the last commit with sam2_ros' own downloader
OFFICIAL = "facebook/sam2.1-hiera-tiny"
FINETUNE = "bench/sam2.1-tiny-transformers"

# One process: time its steps from its start (the interpreter's own start-up is the same for all).
CHILD = r'''
import json, os, sys, time
t0 = time.perf_counter()
import dataclasses, importlib.util
import numpy as np
import torch
import sam2_ros.model.build as build
from sam2_ros import Prompt, Tracker
variant, checkpoint, size, sha, nbytes = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
t_import = time.perf_counter() - t0
if variant == "before":
    spec = importlib.util.spec_from_file_location("sam2_ros.model._checkpoint_before", os.environ["BEFORE_MODULE"])
    old = sys.modules[spec.name] = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
    old.OFFICIAL_CHECKPOINTS["tiny"] = dataclasses.replace(old.OFFICIAL_CHECKPOINTS["tiny"], size=nbytes, sha256=sha)
    path = old.resolve_checkpoint(None, "tiny", progress=False)
    t_found = time.perf_counter() - t0
    state = old.load_checkpoint_file(path)
    net = build.SAM2(build.sam2_config("tiny", size, "2.1"))
    old.load_state_dict_strict(net, state, model_name="tiny")
    tracker = Tracker(net.eval())
else:
    from sam2_ros.model import official
    info = dataclasses.replace(official.HUB_CHECKPOINTS[REPO], size=nbytes, sha256=sha)
    official.HUB_CHECKPOINTS[REPO] = official.OFFICIAL_CHECKPOINTS["tiny"] = info
    from sam2_ros.model.checkpoint import resolve_checkpoint
    path = resolve_checkpoint(checkpoint, "tiny")  # what from_pretrained does first, timed apart
    t_found = time.perf_counter() - t0
    tracker = Tracker.from_pretrained(str(path), image_size=size, device="cpu")  # the same as passing the id
t_built = time.perf_counter() - t0
frame = np.full((360, 640, 3), 100, np.uint8)
tracker.track(frame, [Prompt(1, points=[[320, 180]], labels=[1])])
t_frame = time.perf_counter() - t0
print("BENCH" + json.dumps({"imports": t_import, "found": t_found, "built": t_built, "first_frame": t_frame}))
'''.replace("REPO", repr(OFFICIAL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="processes per variant")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import hashlib

    import torch
    from hub_server import HubServer
    from safetensors.torch import save
    from test_transformers_format import tiny_config, transformers_state

    from sam2_ros.model.build import build_random_model

    state = build_random_model("tiny", 256, "cpu", seed=0).state_dict()
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    official = buffer.getvalue()
    sha = hashlib.sha256(official).hexdigest()
    work = Path(tempfile.mkdtemp(prefix="bench_checkpoint_"))
    before_module = work / "checkpoint_before.py"
    before_module.write_text(subprocess.run(["git", "show", f"{BEFORE}:sam2_ros/model/checkpoint.py"], cwd=ROOT,
                                            capture_output=True, text=True, check=True).stdout)
    old_cache = work / "sam2_ros_cache"
    old_cache.mkdir()
    (old_cache / "sam2.1_hiera_tiny.pt").write_bytes(official)

    server = HubServer()
    server.add(OFFICIAL, {"sam2.1_hiera_tiny.pt": official})
    server.add(FINETUNE, {"config.json": json.dumps(tiny_config()).encode(),
                          "model.safetensors": save(transformers_state(state))})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(work / "hf_home"), HF_ENDPOINT=server.endpoint, PYTHONPATH=str(ROOT),
               SAM2_ROS_CACHE=str(old_cache), BEFORE_MODULE=str(before_module), HF_HUB_DISABLE_PROGRESS_BARS="1")
    variants = {"before": ("", {}), "hub": ("", {}), "hub-id": (OFFICIAL, {}),
                "transformers": (FINETUNE, {}), "transformers-offline": (FINETUNE, {"HF_HUB_OFFLINE": "1"})}

    def run(name):
        checkpoint, extra = variants[name]
        out = subprocess.run([sys.executable, "-c", CHILD, name, checkpoint, str(args.image_size), sha,
                              str(len(official))], env={**env, **extra}, capture_output=True, text=True, timeout=600)
        line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH")), None)
        if line is None:
            raise SystemExit(f"{name} failed:\n{out.stdout}\n{out.stderr}")
        return json.loads(line[5:])

    for name in ("hub", "transformers"):  # the first use: downloads into the Hub cache (not timed)
        run(name)
    samples = {name: [] for name in variants}
    for _ in range(args.runs):
        for name in variants:  # alternating, so that machine noise hits all alike
            samples[name].append(run(name))
    server.stop()

    for runs in samples.values():
        for r in runs:
            r["find"] = r["found"] - r["imports"]  # locating the checkpoint: what this issue changed
    steps = ("imports", "find", "found", "built", "first_frame")
    result = {name: {s: statistics.median(r[s] for r in runs) for s in steps} for name, runs in samples.items()}
    print(f"tiny at {args.image_size} px, median of {args.runs} fresh processes each, seconds "
          f"(find: locating the checkpoint; the others: from process start)")
    print(f"{'variant':<22}" + "".join(f"{s:>12}" for s in steps))
    for name, r in result.items():
        print(f"{name:<22}" + "".join(f"{r[s]:12.3f}" for s in steps))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "machine": _cpu(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "image_size": args.image_size, "runs": args.runs,
            "median_seconds": result, "samples": samples}, indent=1))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
