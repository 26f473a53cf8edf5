"""Small open-vocabulary detectors with random weights, saved as ``transformers`` checkpoint
directories (model + processor, ``save_pretrained``), for tests: nothing is downloaded.

The tokenizers are made here: a BERT WordPiece vocabulary with Grounding DINO's delimiter
tokens at the ids its model hard-codes ([CLS] 101, [SEP] 102, "." 1012, "?" 1029) and every
lower-case letter as a word and a word piece (any ASCII word tokenizes, none is [UNK]); a
character-level CLIP BPE vocabulary for OWLv2. Every parameter is perturbed, so that no path
hides behind zeros or ones of the default initialisation.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch

WORDS = ["person", "red", "cup", "dog", "cat", "car", "green", "bottle", "a", "the"]


def bert_vocab():
    """Token -> id: specials where Grounding DINO expects them, then letters, pieces and words."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(len(vocab), 1012)] + ["."]
    vocab += [f"[unused{i}]" for i in range(len(vocab), 1029)] + ["?", ",", "!", "-", "'"]
    vocab += list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase] + list(string.digits)
    vocab += [w for w in WORDS if w not in vocab]
    return {t: i for i, t in enumerate(vocab)}


def perturb(model: torch.nn.Module, seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def grounding_config(vocab_size: int, mm: bool = False):
    from transformers import BertConfig, GroundingDinoConfig, MMGroundingDinoConfig, SwinConfig

    cls = MMGroundingDinoConfig if mm else GroundingDinoConfig
    return cls(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64),
        num_queries=30, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, max_text_len=48,
        encoder_n_points=2, decoder_n_points=2)


def make_grounding_dino(path: Path, seed: int = 0, mm: bool = False, shortest_edge: int = 96,
                        longest_edge: int = 128, scale: float = 0.05) -> Path:
    """A tiny (MM) Grounding DINO with random weights, saved to ``path``; returns ``path``."""
    from transformers import (BertTokenizer, GroundingDinoForObjectDetection, GroundingDinoProcessor,
                              MMGroundingDinoForObjectDetection)
    from transformers.models.grounding_dino import GroundingDinoImageProcessorPil

    vocab = bert_vocab()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": shortest_edge, "longest_edge": longest_edge}),
        tokenizer=BertTokenizer(vocab=vocab))
    torch.manual_seed(seed)
    cls = MMGroundingDinoForObjectDetection if mm else GroundingDinoForObjectDetection
    model = cls(grounding_config(len(vocab), mm)).eval()
    perturb(model, seed, scale)
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def make_owlv2(path: Path, seed: int = 0, image_size: int = 64, scale: float = 0.05) -> Path:
    """A tiny OWLv2 with random weights and a character-level CLIP tokenizer, saved to ``path``."""
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2 import Owlv2ImageProcessorPil

    vocab = {t: i for i, t in enumerate(["!", '"', *string.ascii_lowercase, *(c + "</w>" for c in string.ascii_lowercase),
                                         "<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer)
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=16),
        projection_dim=32)
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    perturb(model, seed, scale)
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def threshold_for(detector, frame, text, count: int, free_slots: int = 100):
    """A ``box_threshold`` at which ``detector`` (a TextDetector; its own threshold is set to 0
    here) starts exactly ``count`` objects on ``frame`` (after the planner folds duplicate boxes),
    in the middle of the widest gap between two detection scores (in logits) that gives that count,
    so that float rounding elsewhere (another number of threads) cannot change which boxes pass.
    Returns (threshold, the plan of those objects on an empty tracker, the gap in logits)."""
    import numpy as np

    from sam2_ros.tracking.text_prompts import plan_detections

    detector.box_threshold = 0.0
    det = detector.detect(frame, text)
    scores = det.scores.astype(np.float64)
    logits = np.log(scores) - np.log1p(-np.minimum(scores, 1 - 1e-12))
    best = None
    levels = np.unique(logits)[::-1]
    for hi, lo in zip(levels[:-1], levels[1:]):
        cut = (hi + lo) / 2
        keep = logits > cut
        plan = plan_detections(det.boxes[keep], det.scores[keep], [p for p, k in zip(det.phrases, keep) if k],
                               det.size, {}, {}, free_slots)
        if len(plan.new) == count and (best is None or hi - lo > best[2]):
            best = (float(1 / (1 + np.exp(-cut))), plan, float(hi - lo))
    assert best is not None, f"no threshold gives {count} objects: {sorted(scores)[::-1][:10]}"
    return best
