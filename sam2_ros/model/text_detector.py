"""Words -> boxes: an open-vocabulary detector (Grounding DINO) through ``transformers``.

``transformers`` is an optional dependency (the extra ``sam2_ros[text]``, or
``requirements-text.txt``); without it :meth:`TextDetector.from_pretrained` raises
:class:`MissingDependencyError` with the command that installs it. Nothing here imports rclpy,
and ``transformers`` is imported only when a detector is built.

::

    from sam2_ros.model.text_detector import TextDetector
    detector = TextDetector.from_pretrained("IDEA-Research/grounding-dino-tiny", device="cpu")
    det = detector.detect(frame, "person . red cup")   # frame: H x W x 3 uint8 RGB
    det.boxes     # (N, 4) float32 x0, y0, x1, y1 in the frame's pixels
    det.scores    # (N,) float32
    det.labels    # the detector's own text label of each box (transformers' ``text_labels``)
    det.phrases   # the phrase of the prompt each box belongs to: the objects' class label

Numbers: boxes, scores and labels are exactly those of the processor's own post-processing
(``post_process_grounded_object_detection`` with ``target_sizes`` = the frame's size), run on
the model's output for the processor's input. Boxes are not clipped to the frame (a box may
reach a little past the border); :mod:`sam2_ros.tracking.text_prompts` clips them.

Phrases: Grounding DINO scores each box against every token of the text, and its label is the
decoded tokens above ``text_threshold`` (it can be a part of a phrase, "cup" for "red cup", or
span two). A class label must be one of the phrases asked for, so each box also gets the phrase
holding its highest-scoring token (:attr:`Detections.phrases`).

Models: any checkpoint ``AutoModelForZeroShotObjectDetection`` and ``AutoProcessor`` load, by Hub
id or local directory: Grounding DINO (default ``IDEA-Research/grounding-dino-tiny``) and
MM Grounding DINO through the path above; OWLv2 / OWL-ViT take the phrases as a list, have no
``text_threshold`` (it is ignored) and label each box with its phrase.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .build import autocast, resolve_device, resolve_dtype
from .preprocess import check_image
from .text_query import TextPromptError, TextQuery, parse_text_prompt

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
INSTALL_HINT = ("pip install 'sam2_ros[text]'   (from a clone: pip install -r requirements-text.txt, "
                "or bash scripts/setup.sh --text)")
GROUNDING_TYPES = ("grounding-dino", "mm-grounding-dino")  # one text, token-level scores
OWL_TYPES = ("owlv2", "owlvit")  # one query per phrase, phrase-level scores

TextLike = Union[str, bytes, TextQuery, Sequence[str]]


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message gives the command that installs it."""


class DetectorLoadError(ValueError):
    """A detector checkpoint that cannot be loaded; the message says why and what is accepted."""


def require_transformers():
    """Import and return ``transformers`` (and check Pillow, which its image processors use
    without torchvision), or raise :class:`MissingDependencyError` with the install command."""
    try:
        import transformers
        import PIL  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(
            f"text prompts need the optional dependencies transformers and pillow ({error}); "
            f"install them with: {INSTALL_HINT}") from error
    return transformers


@dataclass
class Detections:
    """One frame's detections (see the module doc)."""

    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 pixels of the frame
    scores: np.ndarray  # (N,) float32
    labels: List[str]  # the detector's own text label per box
    phrases: List[str]  # the prompt's phrase per box (the class label)
    size: Tuple[int, int] = (0, 0)  # (H, W) of the frame
    query: Optional[TextQuery] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)


def as_query(text: TextLike) -> TextQuery:
    """A :class:`TextQuery` from a text prompt, a list of phrases or a query; an empty text is
    refused (there is nothing to detect)."""
    if isinstance(text, TextQuery):
        return text
    if isinstance(text, (list, tuple)):
        if not all(isinstance(p, str) for p in text):
            raise TextPromptError(f"phrases must be strings, got {[type(p).__name__ for p in text]}")
        if any("." in p for p in text):
            raise TextPromptError(f"a phrase cannot hold '.' (it separates phrases): {list(text)}")
        text = " . ".join(text)
    query = parse_text_prompt(text)
    if query is None:
        raise TextPromptError("the text prompt is empty: give phrases to detect, e.g. 'person . red cup'")
    return query


class TextDetector:
    """An open-vocabulary detector: frame + phrases -> boxes (see the module doc).

    Args:
        model, processor: a ``transformers`` zero-shot object detection model and its processor.
        box_threshold: keep boxes whose best token (phrase, for OWL) score is above it.
        text_threshold: tokens above it form a box's label (Grounding DINO).
        device, dtype: as :class:`~sam2_ros.tracking.tracker.Tracker` (``auto``: CUDA if present;
            bfloat16 / float16 autocast on GPUs, float32 on the CPU).
        image_size: Grounding DINO: the shortest edge frames are resized to (the longest at most
            1333/800 of it); None keeps the checkpoint's (800). Its cost grows with the square:
            on a CPU, 480 costs about half of 800 (benchmarks/RESULTS.md).
    """

    def __init__(self, model, processor, box_threshold: float = 0.35, text_threshold: float = 0.25,
                 device: Union[str, torch.device, None] = "auto", dtype: Union[str, torch.dtype, None] = "auto",
                 image_size: Optional[int] = None) -> None:
        for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        model_type = getattr(model.config, "model_type", None)
        if model_type not in GROUNDING_TYPES + OWL_TYPES:
            raise DetectorLoadError(f"model type {model_type!r} is not a detector sam2_ros can prompt with text "
                                    f"(supported: {', '.join(GROUNDING_TYPES + OWL_TYPES)})")
        if image_size is not None:
            if isinstance(image_size, bool) or not isinstance(image_size, int) or not 64 <= image_size <= 2048:
                raise ValueError(f"image_size must be an integer in [64, 2048] (the shortest edge), got {image_size!r}")
            if model_type in OWL_TYPES:
                raise ValueError("image_size is for Grounding DINO; OWLv2 / OWL-ViT take the square size they were "
                                 "trained at")
        self._size = {} if image_size is None else {
            "size": {"shortest_edge": image_size, "longest_edge": round(image_size * 1333 / 800)}}
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.owl = model_type in OWL_TYPES
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_DETECTOR, box_threshold: float = 0.35, text_threshold: float = 0.25,
                        device: Union[str, torch.device, None] = "auto", dtype: Union[str, torch.dtype, None] = "auto",
                        image_size: Optional[int] = None, **hub_kwargs) -> "TextDetector":
        """Load a detector by Hub id (downloaded once into the Hugging Face cache) or from a
        local directory written by ``save_pretrained`` (model and processor). ``hub_kwargs``
        (``revision``, ``local_files_only``, ``cache_dir``, ...) go to both ``from_pretrained``."""
        transformers = require_transformers()
        device = resolve_device(device)  # a bad device or dtype is refused before the download
        dtype = resolve_dtype(dtype, device)
        if not isinstance(name, str) or not name.strip():
            raise DetectorLoadError(f"detector must be a Hugging Face Hub id or a local directory, got {name!r}")
        local = os.path.expanduser(name)
        if (os.path.isabs(local) or name.startswith((".", "~"))) and not os.path.isdir(local):
            raise DetectorLoadError(f"detector directory {name!r} does not exist; give a directory written by "
                                    f"save_pretrained or a Hub id such as {DEFAULT_DETECTOR!r}")
        source = local if os.path.isdir(local) else name
        try:
            processor = transformers.AutoProcessor.from_pretrained(source, **hub_kwargs)
            model = transformers.AutoModelForZeroShotObjectDetection.from_pretrained(source, **hub_kwargs)
        except (OSError, ValueError, KeyError) as error:
            raise DetectorLoadError(
                f"cannot load the detector {name!r}: {error}\nGive a Hugging Face Hub id of a zero-shot object "
                f"detector (e.g. {DEFAULT_DETECTOR!r}) or a local directory holding its config.json, weights and "
                "processor/tokenizer files (written by save_pretrained).") from error
        return cls(model, processor, box_threshold, text_threshold, device, dtype, image_size)

    # ------------------------------------------------------------------ text
    def check(self, text: TextLike) -> TextQuery:
        """Parse ``text`` and check that the model reads it whole; returns the query or raises
        :class:`TextPromptError` (cheap: tokenizes only)."""
        query = as_query(text)
        tokenizer = self.processor.tokenizer
        if self.owl:
            limit = self.model.config.text_config.max_position_embeddings
            for phrase in query.phrases:
                n = len(tokenizer(phrase)["input_ids"])
                if n > limit:
                    raise TextPromptError(f"the phrase {phrase!r} is {n} tokens; this detector reads at most {limit} "
                                          "per phrase: shorten it")
        else:
            limit = self.model.config.max_text_len
            n = len(tokenizer(query.text)["input_ids"])
            if n > limit:
                raise TextPromptError(f"the text prompt is {n} tokens; this detector reads at most {limit}: "
                                      f"use fewer or shorter phrases ({len(query.phrases)} given)")
        return query

    # ------------------------------------------------------------------ detection
    @torch.inference_mode()
    def detect(self, frame: np.ndarray, text: TextLike) -> Detections:
        """Detect the phrases of ``text`` on ``frame`` (H x W x 3 uint8 RGB)."""
        h, w = check_image(frame, "frame")
        query = self.check(text)
        phrases = list(query.phrases)
        if self.owl:
            inputs = self.processor(images=frame, text=[phrases], return_tensors="pt")
        else:
            inputs = self.processor(images=frame, text=query.text, return_tensors="pt", **self._size)
        inputs = inputs.to(self.device)
        with autocast(self.device, self.dtype):
            outputs = self.model(**inputs)
        # post-processing in float32 (autocast may give bf16 logits)
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        if self.owl:
            result = self.processor.post_process_grounded_object_detection(
                outputs, threshold=self.box_threshold, target_sizes=[(h, w)], text_labels=[phrases])[0]
            labels = list(result["text_labels"])
            box_phrases = list(labels)
        else:
            input_ids = inputs["input_ids"]
            result = self.processor.post_process_grounded_object_detection(
                outputs, input_ids, threshold=self.box_threshold, text_threshold=self.text_threshold,
                target_sizes=[(h, w)])[0]
            n = len(result["scores"])
            labels = list(result["text_labels"]) if n else []  # (batch_decode of no boxes gives [""])
            box_phrases = self._phrases(outputs.logits[0], input_ids[0], query, n)
        return Detections(boxes=result["boxes"].float().cpu().numpy().reshape(-1, 4),
                          scores=result["scores"].float().cpu().numpy().reshape(-1),
                          labels=labels, phrases=box_phrases, size=(h, w), query=query)

    def _phrases(self, logits: torch.Tensor, input_ids: torch.Tensor, query: TextQuery, n: int) -> List[str]:
        """The phrase of each kept box: the one holding its highest-scoring token. Kept boxes
        are those the post-processing keeps (best token score above box_threshold), in order."""
        probs = logits.sigmoid()  # (Q, T)
        kept = probs[probs.max(-1).values > self.box_threshold]  # (N, T)
        if len(kept) != n:  # the post-processing's keep rule changed: say so rather than mislabel
            raise RuntimeError(f"transformers kept {n} boxes, sam2_ros's phrase assignment {len(kept)}: "
                               "this transformers version post-processes differently")
        if n == 0:
            return []
        encoding = self.processor.tokenizer(query.text, return_offsets_mapping=True)
        if list(encoding["input_ids"]) != input_ids.tolist():
            raise RuntimeError("the tokenizer's ids differ from the processor's: cannot map tokens to phrases")
        owner = torch.full((kept.shape[1],), -1, dtype=torch.long)  # (T,) phrase index of each token
        for t, (start, end) in enumerate(encoding["offset_mapping"][:kept.shape[1]]):
            for k, (s, e) in enumerate(query.spans()):
                if end > start and start >= s and end <= e:
                    owner[t] = k
        member = owner[None, :] == torch.arange(len(query.phrases))[:, None]  # (K, T)
        per_phrase = torch.where(member[None], kept.cpu()[:, None, :], -1.0).amax(-1)  # (N, K)
        return [query.phrases[k] for k in per_phrase.argmax(-1).tolist()]
