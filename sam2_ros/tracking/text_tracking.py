"""A tracker's class labels and text prompts (no rclpy): what :class:`~sam2_ros.tracking.tracker.Tracker`
does around each frame so that ``Prompt(text="person . red cup")`` works and
``TrackResult.labels`` names every object.

::

    tracker = Tracker.from_pretrained(checkpoint, detector="IDEA-Research/grounding-dino-tiny")
    result = tracker.track(frame, prompts=[Prompt(text="person . red cup")])
    result.labels          # {1: "person", 2: "red cup", ...}: object id -> class label (or None)

Labels: an object prompted with ``Prompt(obj_id, ..., label="cup")`` is labelled "cup" until it is
removed (a later prompt with another label relabels it); one prompted without a label has None.
Objects started or re-acquired by the detector are labelled with their phrase.

Text prompts need a detector (``Tracker(..., detector=...)``: a Hub id or directory for
:class:`~sam2_ros.model.text_detector.TextDetector`, or any object with ``detect(frame, query)``).
A text prompt stays in force until another one replaces it; ``Prompt(text="")`` stops detecting.
What the detector's boxes do and when it runs: :mod:`sam2_ros.tracking.text_prompts` (new objects
for detections that overlap no tracked object, lost objects of a phrase re-acquired under their
id, every ``every_n`` frames and on each loss, up to ``max_objects``). The objects' states
(visible, occluded, lost) come from their presence scores
(:class:`~sam2_ros.tracking.object_state.ObjectStates`, default settings); an object's box is that
of its mask, else the last box it had (mask or prompt).

By default the detector runs synchronously (``asynchronous: False`` in ``detector_options``): on
the frame it is due, before that frame is tracked, so its boxes are exact on that frame and a
run is reproducible (evaluation). ``asynchronous: True`` runs it on a thread of its own, and
never delays a frame: its result is applied on the newest frame when it is at most ``max_age``
tracked frames old (the boxes unchanged), else dropped and the detector runs again.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..model.text_query import TextPromptError, parse_text_prompt
from .object_state import VISIBLE, ObjectStates
from .reseed import Tracked
from .text_prompts import TextPrompter
from .types import Prompt, PromptError, TrackResult

# detector_options the TextPrompter takes; the others go to TextDetector.from_pretrained
PROMPTER_OPTIONS = ("every_n", "max_age", "iou_threshold", "duplicate_iou", "asynchronous", "niceness")
DETECTOR_OPTIONS = ("box_threshold", "text_threshold", "device", "dtype", "image_size", "revision", "cache_dir",
                    "local_files_only", "token")
Box = Tuple[float, float, float, float]


def mask_boxes(masks: Tensor) -> List[Optional[Box]]:
    """(x0, y0, x1, y1) pixel edges (x1, y1 exclusive) of each of (N, H, W) bool masks; None
    for an empty mask."""
    if masks.shape[0] == 0:
        return []
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)
    out: List[Optional[Box]] = []
    for r, c in zip(rows, cols):
        ys, xs = torch.nonzero(r)[:, 0], torch.nonzero(c)[:, 0]
        out.append((float(xs[0]), float(ys[0]), float(xs[-1]) + 1, float(ys[-1]) + 1) if len(ys) else None)
    return out


def build_prompter(detector: Any, options: Optional[Mapping[str, Any]], device: torch.device) -> TextPrompter:
    """A :class:`TextPrompter` for ``detector`` (a Hub id or directory, or an object with
    ``detect``), ``options`` as :class:`TrackerText` takes them (checked: an unknown key is a
    ValueError naming the accepted ones)."""
    options = dict(options or {})
    unknown = set(options) - set(PROMPTER_OPTIONS) - set(DETECTOR_OPTIONS)
    if unknown:
        raise ValueError(f"unknown detector_options {sorted(unknown)}; accepted: "
                         f"{', '.join(DETECTOR_OPTIONS + PROMPTER_OPTIONS)}")
    prompter_options = {k: options.pop(k) for k in PROMPTER_OPTIONS if k in options}
    prompter_options.setdefault("asynchronous", False)
    if isinstance(detector, str):
        from ..model.text_detector import TextDetector

        options.setdefault("device", device)
        detector = TextDetector.from_pretrained(detector, **options)
    elif options:
        raise ValueError(f"detector_options {sorted(options)} are for a detector loaded by name; this one is "
                         "built already")
    elif not callable(getattr(detector, "detect", None)):
        raise ValueError(f"detector must be a Hugging Face Hub id, a local directory or an object with "
                         f"detect(frame, query), got {type(detector).__name__}")
    return TextPrompter(detector, **prompter_options)


class TrackerText:
    """Class labels and text prompts of one tracker (see the module doc).

    Args:
        detector: None (labels only), a Hub id or directory, or an object with ``detect``.
        options: ``detector_options``: for the detector (``box_threshold``, ``text_threshold``,
            ``device`` (default: the tracker's), ``dtype``, ``image_size``, and ``revision``,
            ``cache_dir``, ``local_files_only``, ``token`` for the Hub) and for when it runs
            (``every_n`` (30), ``max_age`` (10), ``iou_threshold``, ``duplicate_iou``,
            ``asynchronous`` (False), ``niceness``): :class:`~sam2_ros.tracking.text_prompts.TextPrompter`.
        device: the tracker's device.
    """

    def __init__(self, detector: Any = None, options: Optional[Mapping[str, Any]] = None,
                 device: Union[str, torch.device] = "cpu") -> None:
        if detector is None and options:
            raise ValueError("detector_options without a detector: pass detector= too")
        self.prompter: Optional[TextPrompter] = None if detector is None else build_prompter(detector, options,
                                                                                              torch.device(device))
        self.labels: Dict[int, Optional[str]] = {}
        self.states = ObjectStates()
        self.boxes: Dict[int, Box] = {}  # each object's last box: its mask's, else its last prompt's
        self.last_error: Optional[str] = None  # the detector's last failure

    # ------------------------------------------------------------------ around a frame
    def before(self, tracker, frame: np.ndarray, prompts: Sequence[Prompt]) -> List[Prompt]:
        """The prompts ``tracker.track`` applies to ``frame``: the object prompts given, checked
        (:class:`PromptError` before anything changes), and the objects the detector starts or
        re-acquires on this frame. A text prompt among ``prompts`` sets the text first."""
        texts = [p for p in prompts if p.text is not None]
        ours = [p for p in prompts if p.text is None]
        for p in texts:
            if p.obj_id is not None or any(x is not None for x in (p.points, p.labels, p.box, p.mask, p.label)):
                raise PromptError("a text prompt is Prompt(text=...) alone: the detector starts its objects and "
                                  "labels them with their phrase (no obj_id, points, box, mask or label)")
        if len(texts) > 1:
            raise PromptError(f"{len(texts)} text prompts on one frame; put every phrase in one: 'person . red cup'")
        query = None
        if texts:
            if self.prompter is None:
                raise PromptError("text prompts need a detector: Tracker.from_pretrained(..., "
                                  "detector='IDEA-Research/grounding-dino-tiny')")
            try:
                query = parse_text_prompt(texts[0].text)
                if query is not None and hasattr(self.prompter.detector, "check"):
                    query = self.prompter.detector.check(query)
            except TextPromptError as error:
                raise PromptError(str(error)) from None
        for p in ours:
            if p.label is not None and (not isinstance(p.label, str) or not p.label.strip()):
                raise PromptError(f"object {p.obj_id}: label must be a non-empty string or None, got {p.label!r}")
        tracker._checked(frame, ours, None)  # raises before anything changes
        known = set(tracker.object_ids)
        self.labels = {o: label for o, label in self.labels.items() if o in known}  # removed objects
        if texts:
            self.prompter.set_text(query if query is not None else "")
        out = list(ours)
        if self.prompter is not None:
            out += self._detected(tracker, frame, ours, known)
        for p in out:
            self._note(p, known)
        return out

    def _detected(self, tracker, frame: np.ndarray, given: Sequence[Prompt], known: set) -> List[Prompt]:
        """Prompts from the detector's result picked up on this frame (it is submitted when due)."""
        objects = {o: Tracked(self.boxes.get(o), self.states.state(o) or VISIBLE, self.labels.get(o))
                   for o in known}
        for p in given:  # objects prompted on this frame count as tracked, where their box says
            if p.box is not None:
                objects[p.obj_id] = Tracked(tuple(float(v) for v in np.asarray(p.box).reshape(4)), VISIBLE,
                                            p.label or self.labels.get(p.obj_id))
        taken = {p.obj_id for p in given}
        free = tracker.max_objects - len(known | taken)
        update = self.prompter.step(frame, tracker.frame_index + 1, objects, free)
        if update is None or update.dropped:
            return []
        if update.error is not None:
            self.last_error = update.error
            warnings.warn(f"the text detector failed: {update.error}", RuntimeWarning, stacklevel=4)
            return []
        out = [Prompt(o, box=box, label=phrase) for o, box, phrase in update.plan.reprompt if o not in taken]
        used = known | taken
        for box, phrase, _ in update.plan.new:
            oid = min(set(range(1, len(used) + 2)) - used)  # ids from 1 (0 is the background in label images)
            used.add(oid)
            out.append(Prompt(oid, box=box, label=phrase))
        return out

    def _note(self, p: Prompt, known: set) -> None:
        if p.label is not None:
            self.labels[p.obj_id] = p.label.strip()
        elif p.obj_id not in known:
            self.labels[p.obj_id] = None
        if p.box is not None:
            self.boxes[p.obj_id] = tuple(float(v) for v in np.asarray(p.box).reshape(4))

    def after(self, result: TrackResult) -> TrackResult:
        """The tracked frame's result, with :attr:`TrackResult.labels`; the objects' states and
        boxes for the detector's next plan."""
        ids = list(result.object_ids)
        if self.prompter is not None:
            scores = result.scores.float().tolist()
            boxes = mask_boxes(result.masks)
            self.states.update(ids, scores, boxes)
            self.boxes = {o: box if box is not None else self.boxes.get(o) for o, box in zip(ids, boxes)}
            self.boxes = {o: b for o, b in self.boxes.items() if b is not None}
        return self.labelled(result)

    def labelled(self, result: TrackResult) -> TrackResult:
        """``result`` with its objects' labels."""
        result.labels = {o: self.labels.get(o) for o in result.object_ids}
        return result

    # ------------------------------------------------------------------ state
    @property
    def text(self) -> str:
        """The text prompt in force, normalised ("person. red cup."), or "" for none."""
        query = self.prompter.query if self.prompter is not None else None
        return query.text if query is not None else ""

    def reset(self) -> None:
        """The tracker was reset: labels and states go; a text prompt stays and is detected again
        on the next frame."""
        self.labels.clear()
        self.states.clear()
        self.boxes.clear()
        if self.prompter is not None:
            self.prompter.reset()

    def stats(self) -> Dict[str, Any]:
        """The detector's counters and latency (:meth:`TextPrompter.stats`); empty without one."""
        if self.prompter is None:
            return {}
        out = self.prompter.stats()
        if self.last_error is not None:
            out["last_error"] = self.last_error
        return out

    def close(self) -> None:
        """Stop the detector's thread (asynchronous)."""
        if self.prompter is not None:
            self.prompter.close()
