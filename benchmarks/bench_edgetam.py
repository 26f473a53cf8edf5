"""EdgeTAM against SAM 2.1 tiny, per frame on this CPU: time and MACs of each model step.

Both models have random weights (cost depends on shapes, not values). For each image size the
models' calls alternate (EdgeTAM, EdgeTAM fused, tiny, EdgeTAM, ...) so machine noise hits all
alike; medians and p95 are reported, with MACs counted by torch's FlopCounterMode (MACs =
FLOPs / 2; convolutions, matmuls and attention, the CPU attention kernel counted here).
Steps:

* encoder: ``encode_image`` of one frame (RepViT-M1 + FPN against Hiera-tiny + FPN);
* memory attention with a full bank: 7 memory frames (h*w tokens each for tiny, 512 for
  EdgeTAM) and 16 object pointers (64 tokens), one object;
* memory encoder: one object's memory of the frame (EdgeTAM: + the spatial perceiver);
* decoder: prompt encoder + mask decoder + upsampling for one click, three candidates.

    .venv/bin/python benchmarks/bench_edgetam.py --image-sizes 512 1024 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam2_ros.model.build import build_random_model  # noqa: E402


def _steps(model, image_size: int) -> Dict[str, Callable[[], object]]:
    """The per-frame calls, on fixed inputs built once."""
    x = torch.randn(1, 3, image_size, image_size)
    feats = model.encode_image(x)
    pred = model.predict_masks(model.image_embedding(feats), feats.high_res, torch.tensor([[[image_size / 3, image_size / 2]]]),
                               torch.ones(1, 1, dtype=torch.int32), multimask=True)
    mem, _ = model.encode_memory(feats.feat, pred.high_res_masks, pred.object_score_logits, False)
    tokens = model.memory_as_tokens(mem)  # (1, T, C_mem)
    pos = model.memory_positions()[None]
    memory = torch.cat([tokens] * 7, 1)
    memory_pos = torch.cat([pos + model.memory_tpos(b) for b in range(7)], 1)
    ptr, ptr_pos = model.pointer_tokens(pred.obj_ptr[:, None].expand(1, 16, -1), torch.arange(16.0)[None], 16)
    memory, memory_pos = torch.cat((memory, ptr), 1), torch.cat((memory_pos, ptr_pos), 1)
    return {
        "encoder": lambda: model.encode_image(x),
        "memory_attention": lambda: model.condition_on_memory(feats, memory, memory_pos, ptr.shape[1]),
        "memory_encoder": lambda: model.encode_memory(feats.feat, pred.high_res_masks, pred.object_score_logits, False),
        "decoder": lambda: model.predict_masks(model.image_embedding(feats), feats.high_res,
                                               torch.tensor([[[image_size / 3, image_size / 2]]]),
                                               torch.ones(1, 1, dtype=torch.int32), multimask=True),
    }


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU attention kernel (FlopCounterMode counts only the GPU ones): Q K^T and
    the weighted sum of V."""
    *batch, lq, d = query_shape
    n = 1
    for dim in batch:
        n *= dim
    return 2 * n * lq * key_shape[-2] * (d + value_shape[-1])


def _macs(fn: Callable[[], object]) -> float:
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops})
    with counter:
        fn()
    return counter.get_total_flops() / 2


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """This CPU's float32 GMAC/s on a large square matmul (best of ``repeats`` after warm-up
    calls, which wake the threads and the clock): the rate a step would reach if all of its MACs
    were dense matmuls, so MACs / rate bounds its time from below."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return n ** 3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(image_size: int, repeats: int) -> Dict[str, Dict[str, dict]]:
    models = {
        "edgetam": build_random_model("edgetam", image_size, "cpu"),
        "edgetam_fused": build_random_model("edgetam", image_size, "cpu").fuse(),
        "tiny": build_random_model("tiny", image_size, "cpu"),
    }
    for m in models.values():
        m.requires_grad_(False)  # FlopCounterMode's module tracker hooks tensors that require grad
    out: Dict[str, Dict[str, dict]] = {}
    with torch.inference_mode():
        steps = {name: _steps(m, image_size) for name, m in models.items()}
        times = {name: {step: [] for step in steps[name]} for name in models}
        for name in models:
            for fn in steps[name].values():
                fn()  # warm-up
        for _ in range(repeats):
            for step in steps["tiny"]:
                for name in models:
                    t0 = time.perf_counter()
                    steps[name][step]()
                    times[name][step].append((time.perf_counter() - t0) * 1e3)
        for name in models:
            out[name] = {}
            for step, fn in steps[name].items():
                ts = sorted(times[name][step])
                p95 = ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))]
                out[name][step] = {"p50_ms": statistics.median(ts), "p95_ms": p95, "gmacs": _macs(fn) / 1e9}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = matmul_rate()
    print(f"# float32 matmul rate (2048^3, best of 10): {rate:.1f} GMAC/s")
    results = {"matmul_gmacs_per_s": rate}
    for size in args.image_sizes:
        res = bench(size, args.repeats)
        results[size] = res
        print(f"\n## {size} px (median / p95 ms of {args.repeats} calls, GMACs)")
        print("| step | EdgeTAM | EdgeTAM fused | SAM 2.1 tiny | tiny / EdgeTAM fused (time) | tiny / EdgeTAM (MACs) "
              "| GMAC/s EdgeTAM fused / tiny |")
        print("|---|---|---|---|---|---|---|")
        for step in res["tiny"]:
            e, f, t = res["edgetam"][step], res["edgetam_fused"][step], res["tiny"][step]
            cell = lambda r: f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms, {r['gmacs']:.2f}"  # noqa: E731
            print(f"| {step} | {cell(e)} | {cell(f)} | {cell(t)} | {t['p50_ms'] / f['p50_ms']:.2f}x | "
                  f"{t['gmacs'] / e['gmacs']:.2f}x | {f['gmacs'] / f['p50_ms'] * 1e3:.1f} / "
                  f"{t['gmacs'] / t['p50_ms'] * 1e3:.1f} |")
        total = {name: sum(r["gmacs"] for r in res[name].values()) for name in ("edgetam", "tiny")}
        print(f"a tracked frame, 1 object: EdgeTAM {total['edgetam']:.1f} GMACs (at the matmul rate: "
              f"{total['edgetam'] / rate * 1e3:.0f} ms at least), tiny {total['tiny']:.1f} GMACs "
              f"({total['tiny'] / rate * 1e3:.0f} ms at least)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
