"""Encoder and decoder time of our SAM 2 modules against Meta's, same input, same CPU.

Both models load the same official-format checkpoint; calls alternate (ours, theirs, ours, ...)
so machine noise hits both alike; the medians and their ratio are reported.

    .venv/bin/python benchmarks/bench_model.py --models tiny small --image-size 512 --repeats 10

On a CUDA machine ``--device cuda --dtype bfloat16`` times ours under autocast (no official
comparison there: GPU figures are ours alone).
Needs the test dependencies (the official ``sam2`` package): ``bash scripts/setup.sh --test``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from sam2_ros.model.build import autocast, build_model, resolve_dtype  # noqa: E402


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def bench(size: str, image_size: int, repeats: int, device: torch.device, dtype: torch.dtype, official: bool) -> dict:
    from helpers.oracle import build_official_model, make_official_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_official_checkpoint(size, image_size, Path(tmp) / "c.pt")
        ours = build_model(str(ckpt), size, image_size, device)
    theirs = build_official_model(size, image_size).to(device).eval() if official else None
    x = torch.randn(1, 3, image_size, image_size, device=device)
    pts = torch.tensor([[[image_size / 3, image_size / 2]]], device=device)
    lab = torch.ones(1, 1, dtype=torch.int32, device=device)
    res = {"model": size, "image_size": image_size, "device": str(device), "dtype": str(dtype).replace("torch.", "")}
    times = {k: [] for k in ("enc_ours", "enc_official", "dec_ours", "dec_official")}
    with torch.inference_mode(), autocast(device, dtype):
        feats = ours.encode_image(x)
        emb = ours.image_embedding(feats)
        if theirs is not None:
            bo = theirs.forward_image(x)
            hr_off = [bo["backbone_fpn"][0], bo["backbone_fpn"][1]]
            emb_off = bo["backbone_fpn"][2] + theirs.no_mem_embed.view(1, -1, 1, 1)
        for i in range(repeats + 2):
            te = _timed(lambda: ours.encode_image(x), device)
            td = _timed(lambda: ours.decode(emb, feats.high_res, pts, lab, None, True), device)
            if i >= 2:
                times["enc_ours"].append(te)
                times["dec_ours"].append(td)
            if theirs is not None:
                te = _timed(lambda: theirs.forward_image(x), device)

                def dec():
                    sp, de = theirs.sam_prompt_encoder(points=(pts, lab), boxes=None, masks=None)
                    theirs.sam_mask_decoder(image_embeddings=emb_off, image_pe=theirs.sam_prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sp, dense_prompt_embeddings=de, multimask_output=True,
                                            repeat_image=False, high_res_features=hr_off)

                td = _timed(dec, device)
                if i >= 2:
                    times["enc_official"].append(te)
                    times["dec_official"].append(td)
    for k, v in times.items():
        if v:
            res[k + "_ms"] = round(statistics.median(v), 2)
    if theirs is not None:
        res["enc_speedup"] = round(res["enc_official_ms"] / res["enc_ours_ms"], 2)
        res["dec_speedup"] = round(res["dec_official_ms"] / res["dec_ours_ms"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "small"])
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--no-official", action="store_true", help="time ours only")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
           f"{torch.get_num_threads()} torch threads, torch {torch.__version__}", "results": []}
    for m in args.models:
        r = bench(m, args.image_size, args.repeats, device, dtype, official=not args.no_official)
        out["results"].append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
