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

Part 1 (``--texts``): ms per ``TextDetector.detect`` on a 640x480 frame, one and three phrases,
at each ``--image-sizes`` (the shortest edge the frame is resized to: 800 is the checkpoint's, 480
the ``image_size`` option's cheaper setting), median over ``--repeats`` calls after one warm-up,
and the processor's share (resize, normalise, tokenize). Part 2 (``--tracker-frames`` > 0): ``Tracker.track`` (tiny, ``--image-size``, one
object) per-frame latency alone, then with a :class:`TextPrompter` submitting every
``--every-n`` frames (the detector on its thread, niceness 10, then 0); the plan is not applied
(free slots 0), so the tracker's own work stays the same and only the contention shows.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from sam2_ros.image.text_detector import TextDetector  # noqa: E402

BERT_VOCAB_SIZE = 30522


def grounding_dino_tiny():
    """The architecture of IDEA-Research/grounding-dino-tiny, random weights, and its processor."""
    from text_models import bert_vocab
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
    from oracle import sample_frames

    return sample_frames(n, 640, 480)


def detector_latency(det: TextDetector, frame: np.ndarray, texts, repeats: int, image_size: int) -> list:
    rows = []
    for text in texts:
        query = det.check(text)
        det.detect(frame, query)  # warm-up
        total, pre = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            det.processor(images=frame, text=query.text, return_tensors="pt", **det._size)
            t1 = time.perf_counter()
            det.detect(frame, query)
            t2 = time.perf_counter()
            pre.append((t1 - t0) * 1e3)
            total.append((t2 - t1) * 1e3)
        tokens = len(det.processor.tokenizer(query.text)["input_ids"])
        rows.append({"text": text, "phrases": len(query.phrases), "tokens": tokens, "image_size": image_size,
                     "dtype": str(det.dtype).replace("torch.", ""), "ms_median": statistics.median(total),
                     "ms_min": min(total), "ms_max": max(total), "preprocess_ms_median": statistics.median(pre),
                     "repeats": repeats})
        print(f"  {image_size} px {rows[-1]['dtype']:8s} {len(query.phrases)} phrase(s), {tokens} tokens: "
              f"median {rows[-1]['ms_median']:.0f} ms (min {min(total):.0f}, max {max(total):.0f}; "
              f"preprocessing {rows[-1]['preprocess_ms_median']:.0f} ms)", flush=True)
    return rows


def tracker_with_detector(det: TextDetector, frames, image_size: int, every_n: int, text: str) -> list:
    """Per-frame latency of the tracker alone and with the detector beside it (module doc)."""
    from sam2_ros.tracking.reseed import Tracked
    from sam2_ros.tracking.text_prompts import TextPrompter
    from sam2_ros.tracking.tracker import Tracker
    from sam2_ros.tracking.types import Prompt

    rows = []
    for mode, niceness in (("alone", None), ("detector, niceness 10", 10), ("detector, niceness 0", 0)):
        tracker = Tracker.from_config("tiny", image_size=image_size, device="cpu")
        prompter = None
        if niceness is not None:
            prompter = TextPrompter(det, every_n=every_n, max_age=10 ** 6, niceness=niceness)
            prompter.set_text(text)
        h, w = frames[0].shape[:2]
        lat = []
        for i, frame in enumerate(frames):
            t0 = time.perf_counter()
            if prompter is not None:
                prompter.step(frame, i, {1: Tracked((w / 4, h / 4, w / 2, h / 2), "visible", None)}, free_slots=0)
            prompts = [Prompt(1, box=[w / 4, h / 4, w / 2, h / 2])] if i == 0 else []
            tracker.track(frame, prompts)
            lat.append((time.perf_counter() - t0) * 1e3)
        stats = {}
        if prompter is not None:
            prompter.runner.wait(600)
            stats = prompter.stats()
            prompter.close()
        lat = np.array(lat[3:])  # after warm-up
        frame_time = rows[0]["ms_p50"] if rows else float(np.percentile(lat, 50))  # the tracker's, alone
        rows.append({"mode": mode, "frames": len(lat), "image_size": image_size, "every_n": every_n,
                     "ms_p50": float(np.percentile(lat, 50)), "ms_p95": float(np.percentile(lat, 95)),
                     "ms_max": float(lat.max()), "frames_delayed_over_one_frame": int((lat > 2 * frame_time).sum()),
                     "detector_runs": stats.get("runs", 0),
                     "detector_ms_p50": stats.get("latency_ms_p50", float("nan"))})
        print(f"  {mode:24s} p50 {rows[-1]['ms_p50']:.0f} ms, p95 {rows[-1]['ms_p95']:.0f} ms, "
              f"max {rows[-1]['ms_max']:.0f} ms, frames delayed by more than one frame time "
              f"{rows[-1]['frames_delayed_over_one_frame']}/{len(lat)}; detector runs {rows[-1]['detector_runs']} "
              f"(p50 {rows[-1]['detector_ms_p50']:.0f} ms)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", nargs="+", default=["person", "person . red cup . bottle"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[800, 480],
                    help="the detector's shortest edge (800: the checkpoint's); part 2 uses the last")
    ap.add_argument("--tracker-frames", type=int, default=0, help="part 2: frames tracked per mode (0: skip)")
    ap.add_argument("--image-size", type=int, default=256, help="part 2: the tracker's image size")
    ap.add_argument("--every-n", type=int, default=30, help="part 2: frames between detector runs")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
           f"{torch.get_num_threads()} torch threads", "torch": torch.__version__, "command": " ".join(sys.argv)}
    t0 = time.perf_counter()
    model, processor = grounding_dino_tiny()
    out["build_s"] = time.perf_counter() - t0
    out["parameters"] = sum(p.numel() for p in model.parameters())
    print(f"grounding-dino-tiny architecture: {out['parameters'] / 1e6:.1f} M parameters, built in "
          f"{out['build_s']:.1f} s", flush=True)
    frames = frames_640x480(max(1, args.tracker_frames))
    out["detector"] = []
    for image_size in args.image_sizes:
        for dtype in args.dtypes:
            det = TextDetector(model, processor, device="cpu", dtype=dtype, image_size=image_size)
            out["detector"] += detector_latency(det, frames[0], args.texts, args.repeats, image_size)
    if args.tracker_frames:
        det = TextDetector(model, processor, device="cpu", dtype=args.dtypes[0], image_size=args.image_sizes[-1])
        out["tracker"] = tracker_with_detector(det, frames, args.image_size, args.every_n, args.texts[-1])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
