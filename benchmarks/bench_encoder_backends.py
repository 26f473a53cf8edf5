"""Image-encoder time: onnxruntime against torch, same model, same input, same machine.

    .venv/bin/python benchmarks/bench_encoder_backends.py --model tiny --image-sizes 512 1024 --repeats 7
    .venv/bin/python benchmarks/bench_encoder_backends.py --device cuda --image-sizes 1024   # GPU machine

CPU (default): torch float32 against onnxruntime's CPU provider on the fp32 export.
--device cuda: torch under bfloat16 autocast (the tracker's default on GPUs) against onnxruntime
with the CUDA provider on the fp32 and the fp16 export (needs onnxruntime-gpu), I/O bound to torch
CUDA tensors, timed after torch.cuda.synchronize().

Random weights (the time does not depend on them). Calls alternate (torch, onnxruntime, ...) so
machine noise hits both alike; medians and the ratio torch / onnxruntime are printed (> 1:
onnxruntime is faster) and, with --json, written to a file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam2_ros.backends import make_encoder  # noqa: E402
from sam2_ros.backends.onnx_export import export_part  # noqa: E402
from sam2_ros.model.build import autocast, build_random_model  # noqa: E402


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn, sync) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t) * 1e3


def bench(model_name: str, size: int, device: str, repeats: int, warmup: int, tmp: Path) -> dict:
    model = build_random_model(model_name, size, "cpu")
    variants = [("fp32", False)] + ([("fp16", True)] if device == "cuda" else [])
    paths = {}
    for tag, fp16 in variants:
        paths[tag] = tmp / f"{model_name}_{size}_{tag}.onnx"
        export_part(model, "encoder", str(paths[tag]), fp16=fp16, quiet=True)
    model = model.to(device)
    x = torch.randn(1, 3, size, size, device=device)
    if device == "cuda":
        sync = torch.cuda.synchronize
        dtype = torch.bfloat16
        providers = ["CUDAExecutionProvider"]
    else:
        sync, dtype, providers = (lambda: None), torch.float32, ["CPUExecutionProvider"]
    runners = {}

    def torch_run():
        with torch.inference_mode(), autocast(model.device, dtype):
            model.encode_image(x)

    runners["torch " + ("bf16" if device == "cuda" else "fp32")] = torch_run
    for tag, _ in variants:
        enc = make_encoder("onnxruntime", model, str(paths[tag]), providers=providers)
        runners[f"onnxruntime {providers[0].replace('ExecutionProvider', '')} {tag}"] = (lambda e=enc: e(x))
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in runners}
    for _ in range(repeats):
        for k, fn in runners.items():
            times[k].append(timed(fn, sync))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = next(iter(med))
    return {"model": model_name, "image_size": size, "device": device, "repeats": repeats,
            "median_ms": {k: round(v, 1) for k, v in med.items()},
            "speedup_vs_torch": {k: round(med[base] / v, 2) for k, v in med.items() if k != base}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__}
    import onnxruntime

    machine["onnxruntime"] = onnxruntime.__version__
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(machine))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.image_sizes:
            r = bench(args.model, size, args.device, args.repeats, args.warmup, Path(tmp))
            results.append(r)
            print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
