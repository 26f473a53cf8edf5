#!/usr/bin/env python3
"""Build a TensorRT 10 engine from an ONNX export of sam2_ros, and write its metadata beside it.

    python export/build_engine.py --onnx F.onnx --output F.engine --fp16 [--workspace-mb 2048] \
        [--timing-cache F.cache] [--strongly-typed]
    python export/build_engine.py --onnx F.onnx --output F.engine --metadata-only   # engine from trtexec

CHECKED ONLY ON MACHINES WITH TENSORRT: this file is written against TensorRT 10's documented
Python API (trt.Builder, create_network, trt.OnnxParser, IBuilderConfig.set_memory_pool_limit
(WORKSPACE), set_flag(FP16), create_timing_cache / set_timing_cache, build_serialized_network).
The project's CI has no TensorRT and no GPU; there only the argument handling and the error
for a missing tensorrt package run.

Build the engine on the machine that runs it (a Jetson for a Jetson): engines are specific to
the TensorRT version and the GPU. ``F.engine.json`` records TensorRT version, GPU name and
compute capability, and the ONNX file's metadata (model, image size, part, precision, weights
fingerprint); the tensorrt encoder backend refuses an engine whose metadata does not match.

--fp16 lets TensorRT choose float16 kernels for an float32 ONNX (its ONNX parser maps
LayerNormalization to a normalization layer computed in float32). For an ONNX exported with
--fp16 (float16 weights, LayerNorm/softmax already cast to float32), --strongly-typed makes
TensorRT keep exactly the graph's types.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from sam2_ros.backends.metadata import BackendError, file_sha256, read_onnx_metadata  # noqa: E402


def gpu_facts() -> dict:
    """GPU name and compute capability, from torch (always present with sam2_ros)."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("build_engine.py: no CUDA device visible to torch; build the engine on the machine that runs it")
    props = torch.cuda.get_device_properties(0)
    return {"gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}"}


def write_metadata(trt, onnx_path: str, engine_path: str, onnx_meta: dict, extra: dict) -> str:
    meta = {
        "tensorrt_version": trt.__version__,
        **gpu_facts(),
        "model": onnx_meta.get("model"),
        "image_size": int(onnx_meta.get("image_size", 0)),
        "part": onnx_meta.get("part"),
        "onnx_file": os.path.basename(onnx_path),
        "onnx_sha256": file_sha256(onnx_path),
        "onnx_metadata": onnx_meta,
        # checked before the engine is deserialized: a replaced or corrupted engine is refused
        "engine_sha256": file_sha256(engine_path),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    path = engine_path + ".json"
    with open(path, "w") as f:
        json.dump(meta, f, indent=2)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True, help="ONNX file from export/export_onnx.py")
    ap.add_argument("--output", required=True, help="the .engine file to write (plus .engine.json)")
    ap.add_argument("--fp16", action="store_true", help="allow float16 kernels (BuilderFlag.FP16)")
    ap.add_argument("--strongly-typed", action="store_true", help="keep the ONNX's own types (for --fp16 exports)")
    ap.add_argument("--workspace-mb", type=int, default=2048, help="workspace memory pool limit (MiB)")
    ap.add_argument("--timing-cache", help="timing cache file: read if present, written after the build")
    ap.add_argument("--metadata-only", action="store_true", help="only write F.engine.json (engine built by trtexec)")
    args = ap.parse_args(argv)

    try:
        onnx_meta = read_onnx_metadata(args.onnx)
    except BackendError as e:
        raise SystemExit(f"build_engine.py: {e}")
    if onnx_meta.get("producer") != "sam2_ros":
        raise SystemExit(f"build_engine.py: {args.onnx} was not written by export/export_onnx.py (no sam2_ros metadata)")
    try:
        import tensorrt as trt
    except ImportError:
        raise SystemExit("build_engine.py: the tensorrt Python package is missing. On JetPack 6 it comes with the "
                         "system (sudo apt install python3-libnvinfer; in a venv use --system-site-packages); "
                         "on x86_64: pip install tensorrt. Or build with trtexec (export/README.md).")
    if not trt.__version__.startswith("10."):
        print(f"[engine] warning: written for TensorRT 10, this is {trt.__version__}", file=sys.stderr)
    if args.metadata_only:
        if not os.path.isfile(args.output):
            raise SystemExit(f"build_engine.py: --metadata-only needs the engine {args.output}")
        path = write_metadata(trt, args.onnx, args.output, onnx_meta, {"builder": "trtexec (metadata written by build_engine.py)"})
        print(f"[engine] wrote {path}", file=sys.stderr)
        return 0

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch (the EXPLICIT_BATCH flag is deprecated).
    flags = 0
    if args.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    print(f"[engine] parsing {args.onnx}", file=sys.stderr)
    if not parser.parse_from_file(os.path.abspath(args.onnx)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SystemExit(f"build_engine.py: TensorRT's ONNX parser failed:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, args.workspace_mb << 20)
    if args.fp16 and not args.strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = None
    if args.timing_cache:
        blob = b""
        if os.path.isfile(args.timing_cache):
            with open(args.timing_cache, "rb") as f:
                blob = f.read()
            print(f"[engine] timing cache {args.timing_cache} ({len(blob)} bytes)", file=sys.stderr)
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    print(f"[engine] building (fp16={args.fp16}, strongly_typed={args.strongly_typed}, workspace {args.workspace_mb} MiB); "
          "this takes minutes on a Jetson", file=sys.stderr)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SystemExit("build_engine.py: TensorRT could not build the engine (see its log above)")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "wb") as f:
        f.write(serialized)
    if cache is not None:
        with open(args.timing_cache, "wb") as f:
            f.write(config.get_timing_cache().serialize())
    meta_path = write_metadata(trt, args.onnx, args.output, onnx_meta, {
        "builder": "export/build_engine.py", "fp16": args.fp16, "strongly_typed": args.strongly_typed,
        "workspace_mb": args.workspace_mb, "build_seconds": round(time.perf_counter() - t0, 1)})
    print(f"[engine] wrote {args.output} and {meta_path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
