#!/usr/bin/env python3
"""Export a part of SAM 2 to ONNX (static shapes) for onnxruntime or TensorRT.

    python export/export_onnx.py --checkpoint sam2.1_hiera_tiny.pt --model tiny --image-size 1024 \
        --part encoder --output sam2.1_tiny_1024_encoder.onnx [--fp16] [--opset 18]

Parts: encoder (what the tracker's encoder backends run), step (the whole static frame step but
the encoder, for a tracker's bank: --capacity = max_objects, --max-cond-frames, --num-maskmem,
--max-prompt-points and --memory-selection must be the tracker's; run it with Tracker(step_backend="onnxruntime",
step_engine=F.onnx) or the node's step_backend / step_engine parameters), memory_attention
(--num-mem-frames, --num-ptrs fix the memory length), decoder (prompt encoder + mask decoder +
object-pointer head, --num-points fixes the point count) and memory_encoder. Graph inputs and
outputs are documented in sam2_ros/backends/onnx_export.py and export/README.md.

--fp16: float16 weights and activations, with every LayerNorm and attention softmax computed in
float32 (inputs and outputs stay float32). --opset 18 (default) uses torch's torch.export-based
exporter (needs onnxscript); --opset 17 uses the legacy TorchScript exporter.
The file's metadata_props record model, image size, opset, part, precision, sam2_ros version,
the checkpoint's SHA-256 and a fingerprint of the exported weights, which the backends check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from sam2_ros.backends.metadata import PARTS, file_sha256  # noqa: E402
from sam2_ros.backends.onnx_export import DEFAULT_OPSET, export_part, verify  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True,
                    help="Meta's checkpoint file (.pt), a folder, or a Hugging Face Hub id (facebook/sam2.1-hiera-tiny, "
                         "or a SAM 2 saved by transformers); 'random' for random weights (tests)")
    ap.add_argument("--model", default="tiny", help="tiny, small, base_plus, large or edgetam (EdgeTAM)")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--part", default="encoder", choices=PARTS)
    ap.add_argument("--output", required=True, help="the .onnx file to write")
    ap.add_argument("--fp16", action="store_true", help="float16 graph, LayerNorm and softmax in float32")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    ap.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"),
                    help="auto: dynamo for opset >= 18, torchscript for 17")
    ap.add_argument("--num-mem-frames", type=int, default=7, help="memory_attention: spatial memories (frames)")
    ap.add_argument("--num-ptrs", type=int, default=16, help="memory_attention: object pointers (4 tokens each)")
    ap.add_argument("--num-points", type=int, default=2, help="decoder: prompt points (pad with label -1)")
    ap.add_argument("--verify", action="store_true", help="compare onnxruntime CPU with PyTorch on random inputs")
    ap.add_argument("--capacity", type=int, default=16, help="step: object slots (the tracker's max_objects)")
    ap.add_argument("--max-cond-frames", type=int, default=4, help="step: conditioning frames kept per object")
    ap.add_argument("--num-maskmem", type=int, default=7, help="step: memory frames (1 conditioning + recent)")
    ap.add_argument("--max-prompt-points", type=int, default=16, help="step: points per prompt (box corners count 2)")
    ap.add_argument("--memory-selection", default="sam2", choices=("sam2", "samurai"),
                    help="step: the tracker's memory_selection (samurai: SAMURAI's released settings)")
    args = ap.parse_args(argv)

    import torch

    from sam2_ros.model.build import build_model, build_random_model

    t0 = time.perf_counter()
    if args.checkpoint == "random":
        print("[export] random weights (for tests only)", file=sys.stderr)
        model, digest = build_random_model(args.model, args.image_size, "cpu"), ""
    else:
        from sam2_ros.model.checkpoint import CheckpointError, resolve_checkpoint

        try:  # a Hub id is fetched into the Hub cache here; the digest is that of the weights file
            path = str(resolve_checkpoint(args.checkpoint, args.model))
        except CheckpointError as error:
            ap.error(f"checkpoint: {error}")
        print(f"[export] hashing and loading {path}", file=sys.stderr)
        digest = file_sha256(path)
        model = build_model(path, args.model, args.image_size, "cpu")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if args.part == "step":
        from sam2_ros.step.bank import BankLayout
        from sam2_ros.backends.step_export import export_step

        if args.fp16 or args.opset < 18:
            ap.error("--part step is exported in float32 with opset >= 18 (the dynamo exporter)")
        samurai = None
        if args.memory_selection == "samurai":
            from sam2_ros.step.memory_selection import SamuraiConfig

            samurai = SamuraiConfig()
        layout = BankLayout.for_model(model, args.capacity, args.max_cond_frames, args.num_maskmem, samurai)
        export_step(model, layout, args.output, args.max_prompt_points, args.opset, checkpoint_sha256=digest)
        print(f"[export] done in {time.perf_counter() - t0:.1f} s: {args.output} "
              f"({os.path.getsize(args.output) / 2**20:.1f} MiB)", file=sys.stderr)
        return 0
    shape_kw = dict(num_mem_frames=args.num_mem_frames, num_ptrs=args.num_ptrs, num_points=args.num_points)
    meta = export_part(model, args.part, args.output, opset=args.opset, fp16=args.fp16, exporter=args.exporter,
                       checkpoint_sha256=digest, **shape_kw)
    if args.verify:
        errs = verify(model, args.part, args.output, **shape_kw)
        print("[export] onnxruntime CPU vs PyTorch, max |diff| / max |ref| per output: "
              + ", ".join(f"{e:.2e}" for e in errs), file=sys.stderr)
    size = os.path.getsize(args.output) / 2**20
    print(f"[export] done in {time.perf_counter() - t0:.1f} s: {args.output} ({size:.1f} MiB; "
          f"{meta['part']}, {meta['model']}, {meta['image_size']} px, {meta['precision']}, opset {meta['opset']})",
          file=sys.stderr)
    del torch
    return 0


if __name__ == "__main__":
    sys.exit(main())
