"""Text prompts' cost: Grounding DINO (grounding-dino-tiny's size) per call on a camera frame, and
the tracker's per-frame latency while the detector runs beside it.

No weights can be downloaded: the detector is built from ``IDEA-Research/grounding-dino-tiny``'s
configuration, written out below from its model card and config.json (Swin-T backbone, BERT-base
text encoder, 6 encoder and 6 decoder layers, 900 queries, d_model 256, 4 feature levels, 256 text
tokens; the processor resizes to a shortest edge of 800, longest 1333), with random weights: the
cost depends on shapes, not values. The BERT vocabulary is the tests' small one padded to BERT's
30522 entries (the phrases used tokenize to the same number of tokens as with BERT's).

    .venv/bin/python benchmarks/bench_text_detector.py --repeats 5 \\
        --json benchmarks/results/text_detector_<date>.json

Part 1 (``--texts``, ``--repeats`` > 0): ms per ``TextDetector.detect`` on a 640x480 frame, one
and three phrases, at each ``--image-sizes`` (the shortest edge the frame is resized to: 800 is
the checkpoint's, 480 the ``image_size`` option's cheaper setting), median over ``--repeats``
calls after one warm-up, the configurations taking turns call by call, the processor's share
(resize, normalise, tokenize) and the CPU time the call used (all threads; on a shared machine
the wall time grows with the load, the CPU time much less).

Part 2 (``--tracker-frames`` > 0): ``Tracker.track`` (tiny, ``--image-size``, one object)
per-frame latency with the tracker's asynchronous detector (``Tracker(detector=...,
detector_options={"asynchronous": True, "every_n": ...})``, the node's arrangement) submitted
every ``--every-n`` frames at niceness 10 (the default) and 0, and without a detector: blocks of
``--tracker-frames`` frames per configuration taking turns for ``--rounds`` rounds (the machine is
shared: its load hits every configuration alike; the load average is recorded). The plan is not
applied (``max_objects`` 1, one object): only the contention shows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from sam2_ros.model.text_detector import TextDetector  # noqa: E402

BERT_VOCAB_SIZE = 30522


def grounding_dino_tiny():
    """The architecture of IDEA-Research/grounding-dino-tiny, random weights, and its processor."""
    from helpers.text_models import bert_vocab
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoProcessor, SwinConfig)
    from transformers.models.grounding_dino import GroundingDinoImageProcessorPil

    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                   image_size=224, patch_size=4, mlp_ratio=4.0, out_indices=[2, 3, 4]),
        text_config=BertConfig(vocab_size=BERT_VOCAB_SIZE, hidden_size=768, num_hidden_layers=12,
                               num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512),
        num_queries=900, encoder_layers=6, decoder_layers=6, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        encoder_attention_heads=8, decoder_attention_heads=8, d_model=256, num_feature_levels=4,
        encoder_n_points=4, decoder_n_points=4, max_text_len=256, two_stage=True, decoder_bbox_embed_share=True,
        two_stage_bbox_embed_share=False, query_dim=4, embedding_init_target=True)
    vocab = bert_vocab()
    vocab.update({f"[pad{i}]": i for i in range(len(vocab), BERT_VOCAB_SIZE)})
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 800, "longest_edge": 1333}),
        tokenizer=BertTokenizer(vocab=vocab))
    torch.manual_seed(0)
    return GroundingDinoForObjectDetection(config).eval(), processor


def frames_640x480(n: int):
    """Camera-sized frames with structure (a gradient, a moving block, noise); with random weights
    the cost depends on their size only."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x * 255 // 639, y * 255 // 479, (x + y) % 256], -1).astype(np.int16)
    out = []
    for i in range(n):
        frame = base + rng.integers(-10, 11, base.shape)
        x0 = 100 + 3 * i % 300
        frame[120:240, x0:x0 + 160] = (200, 40, 40)
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out


def detector_latency(model, processor, frame: np.ndarray, texts, image_sizes, dtypes, repeats: int) -> list:
    """ms per detect call for every (image size, dtype, text), the configurations taking turns call
    by call (one warm-up call each first), so that the machine's load hits them alike."""
    configs = []
    for image_size in image_sizes:
        for dtype in dtypes:
            det = TextDetector(model, processor, device="cpu", dtype=dtype, image_size=image_size)
            for text in texts:
                query = det.check(text)
                det.detect(frame, query)  # warm-up
                configs.append((det, query, image_size, text, [], [], []))
    for _ in range(repeats):
        for det, query, _, _, total, pre, cpu in configs:
            t0 = time.perf_counter()
            det.processor(images=frame, text=query.text, return_tensors="pt", **det._size)
            t1, c1 = time.perf_counter(), time.process_time()
            det.detect(frame, query)
            t2, c2 = time.perf_counter(), time.process_time()
            pre.append((t1 - t0) * 1e3)
            total.append((t2 - t1) * 1e3)
            cpu.append(c2 - c1)
    rows = []
    for det, query, image_size, text, total, pre, cpu in configs:
        tokens = len(det.processor.tokenizer(query.text)["input_ids"])
        rows.append({"text": text, "phrases": len(query.phrases), "tokens": tokens, "image_size": image_size,
                     "dtype": str(det.dtype).replace("torch.", ""), "ms_median": statistics.median(total),
                     "ms_min": min(total), "ms_max": max(total), "preprocess_ms_median": statistics.median(pre),
                     "cpu_s_median": statistics.median(cpu), "repeats": repeats})
        print(f"  {image_size} px {rows[-1]['dtype']:8s} {len(query.phrases)} phrase(s), {tokens} tokens: "
              f"median {rows[-1]['ms_median']:.0f} ms (min {min(total):.0f}, max {max(total):.0f}; "
              f"preprocessing {rows[-1]['preprocess_ms_median']:.0f} ms; CPU time "
              f"{rows[-1]['cpu_s_median']:.1f} s, all threads)", flush=True)
    return rows


def tracker_with_detector(det: TextDetector, frames, image_size: int, every_n: int, text: str, block: int,
                          rounds: int) -> list:
    """The tracker's per-frame latency (``Tracker.track``, the API's asynchronous detector: the
    node's arrangement) without a detector and with one submitted every ``every_n`` frames on its
    thread at niceness 10 (the default) and 0: ``rounds`` rounds of one ``block`` of frames per
    configuration, taking turns, so that the shared machine's load hits them alike. A detector
    run still in progress at the end of a block is waited for outside the timing. The tracker
    has one object and ``max_objects`` 1 (its states held visible), so the detector's plan starts
    nothing and only the contention shows. A frame "delayed by more than one frame's time" takes
    over twice the median frame without a detector."""
    from sam2_ros.model.build import build_random_model
    from sam2_ros.tracking.tracker import Tracker
    from sam2_ros.tracking.types import Prompt

    model = build_random_model("tiny", image_size, torch.device("cpu"))
    h, w = frames[0].shape[:2]
    box = (w / 4, h / 4, w / 2, h / 2)
    configs = {"no detector": None, "detector, niceness 10": 10, "detector, niceness 0": 0}
    trackers = {}
    for name, niceness in configs.items():
        options = None if niceness is None else {"asynchronous": True, "every_n": every_n, "niceness": niceness,
                                                 "max_age": 10 ** 6}
        tracker = Tracker(model, max_objects=1, detector=None if niceness is None else det, detector_options=options)
        tracker.text.states.configure(present_threshold=0.0, absent_threshold=0.0)
        tracker.track(frames[0], [Prompt(1, box=box)] + ([Prompt(text=text)] if niceness is not None else []))
        if niceness is not None:
            tracker.text.prompter.runner.wait(3600)  # the first run: a warm-up
        trackers[name] = tracker
    samples = {name: {"all": [], "running": [], "idle": [], "load": []} for name in configs}
    k = 1
    for r in range(rounds):
        for name, tracker in trackers.items():
            runner = tracker.text.prompter.runner if tracker.text.prompter is not None else None
            out = samples[name]
            out["load"].append(os.getloadavg()[0])
            for _ in range(block):
                frame = frames[k % len(frames)]
                k += 1
                busy_before = runner is not None and runner.busy
                t0 = time.perf_counter()
                tracker.track(frame)
                ms = (time.perf_counter() - t0) * 1e3
                busy_after = runner is not None and runner.busy
                out["all"].append(ms)
                if busy_before == busy_after:  # not a frame in which a run began or ended
                    out["running" if busy_after else "idle"].append(ms)
            out["load"].append(os.getloadavg()[0])
            if runner is not None:
                runner.wait(3600)
            print(f"  round {r + 1}/{rounds}, {name}: {block} frames, median {np.median(out['all'][-block:]):.0f} ms, "
                  f"load {out['load'][-2]:.1f} -> {out['load'][-1]:.1f}", flush=True)
    base = float(np.percentile(samples["no detector"]["all"], 50))
    rows = []
    for name, tracker in trackers.items():
        stats = tracker.text.stats()
        for part in ("all", "running", "idle"):
            lat = np.array(samples[name][part])
            if not len(lat) or (part != "all" and configs[name] is None):
                continue
            rows.append({"config": name, "frames": part, "count": int(len(lat)), "image_size": image_size,
                         "every_n": every_n, "ms_p50": float(np.percentile(lat, 50)),
                         "ms_p95": float(np.percentile(lat, 95)), "ms_max": float(lat.max()),
                         "frames_delayed_over_one_frame": int((lat > 2 * base).sum()),
                         "load_mean": float(np.mean(samples[name]["load"])),
                         "detector_runs": stats.get("runs", 0), "detector_ms_p50": stats.get("latency_ms_p50")})
            r = rows[-1]
            print(f"  {name:22s} {part:8s} ({r['count']:3d} frames): p50 {r['ms_p50']:.0f} ms, p95 {r['ms_p95']:.0f} "
                  f"ms, max {r['ms_max']:.0f} ms, over twice the no-detector p50 ({base:.0f} ms): "
                  f"{r['frames_delayed_over_one_frame']}; detector runs {r['detector_runs']}"
                  + (f" (p50 {r['detector_ms_p50']:.0f} ms)" if r["detector_ms_p50"] else ""), flush=True)
        tracker.text.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", nargs="+", default=["person", "person . red cup . bottle"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[800, 480],
                    help="the detector's shortest edge (800: the checkpoint's); part 2 uses the last")
    ap.add_argument("--tracker-frames", type=int, default=0, help="part 2: frames per block (0: skip)")
    ap.add_argument("--rounds", type=int, default=2, help="part 2: rounds of one block per configuration")
    ap.add_argument("--image-size", type=int, default=256, help="part 2: the tracker's image size")
    ap.add_argument("--every-n", type=int, default=30, help="part 2: frames between detector runs")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
           f"{torch.get_num_threads()} torch threads", "torch": torch.__version__, "command": shlex.join(sys.argv),
           "load_at_start": os.getloadavg()}
    t0 = time.perf_counter()
    model, processor = grounding_dino_tiny()
    out["build_s"] = time.perf_counter() - t0
    out["parameters"] = sum(p.numel() for p in model.parameters())
    print(f"grounding-dino-tiny architecture: {out['parameters'] / 1e6:.1f} M parameters, built in "
          f"{out['build_s']:.1f} s", flush=True)
    frames = frames_640x480(min(60, max(1, args.tracker_frames)))
    out["detector"] = detector_latency(model, processor, frames[0], args.texts, args.image_sizes, args.dtypes,
                                       args.repeats) if args.repeats else []
    if args.tracker_frames:
        det = TextDetector(model, processor, device="cpu", dtype=args.dtypes[0], image_size=args.image_sizes[-1])
        out["tracker"] = tracker_with_detector(det, frames, args.image_size, args.every_n, args.texts[-1],
                                               args.tracker_frames, args.rounds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
