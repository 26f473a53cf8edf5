"""Text prompts on a stream: when the detector runs, and what its detections do to the tracked
objects (numpy only, no transformers, no rclpy; the detector is any ``detect(frame, query)``, in
practice :class:`sam2_ros.model.text_detector.TextDetector`).

What a detection does (:func:`plan_detections`; objects are matched by box IoU, an object's box
being that of its mask or its last one, as :mod:`sam2_ros.tracking.reseed` matches):

* boxes are clipped to the frame; a box with nothing left, or a duplicate of a better-scored box of
  the same phrase (IoU >= ``duplicate_iou``; Grounding DINO has no suppression of its own), is
  ignored;
* a detection overlapping (IoU >= ``iou_threshold``) an object that is tracked (visible or
  occluded) on the detection's frame or on the newest one adds nothing, unless both have class
  labels and they differ (a "cup" inside a tracked "person" is another object; an object prompted
  without a label matches any phrase);
* a lost object whose class label is one of the phrases is re-acquired under its old id by a
  detection of its phrase: first the detection its last box overlaps most (one-to-one,
  :func:`~sam2_ros.tracking.reseed.match`), then by class: the remaining detections and lost
  objects of the same phrase paired nearest first (distance between box centres; objects are kept
  and re-acquired by class);
* every other detection starts a new object, labelled with its phrase, best scores first, up to the
  free object slots (``max_objects``).

When the detector runs (:class:`DetectorSchedule`): when a text is set (and after a reset), every
``every_n`` tracked frames (0: never on a timer), when an object of one of the phrases becomes
lost (once per loss: an object that stays lost does not keep the detector busy), and again at once
when a result came too late to be used. Never while a run is in progress.

Timing (:class:`TextPrompter`, one :meth:`~TextPrompter.step` per tracked frame, before tracking
it): the detector runs off the caller's thread (:class:`~sam2_ros.tracking.detector_runner.DetectorRunner`)
and its result is applied on the newest frame, the one being tracked when it is picked up.
Boxes from an older frame are applied to the newest frame unchanged when the result is at most
``max_age`` tracked frames old, and dropped (counted; the detector runs again at once) when older:
nothing tells where a not-yet-tracked object has moved since, and a stale box would start the
wrong object. The overlap test (what is tracked already) uses the objects as they were when the
detector's frame was submitted, and as they are now, so an object that moved in between is not
started twice. A caller whose tracker still buffers the detection's frame (``prompt_buffer``) may
apply the plan there instead (``Tracker.prompt_past(update.frame_index, ...)``): the boxes are
exact on that frame.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from ..model.text_query import TextPromptError, TextQuery, parse_text_prompt
from .detector_runner import DetectorRunner
from .object_state import LOST
from .reseed import Plan, Tracked, box_iou, match

DEFAULT_EVERY_N = 30
DEFAULT_MAX_AGE = 10


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _same_class(a: Optional[str], b: Optional[str]) -> bool:
    return not (a and b and a != b)


def plan_detections(boxes: np.ndarray, scores: Sequence[float], phrases: Sequence[str], size: Tuple[int, int],
                    then: Mapping[int, Tracked], now: Mapping[int, Tracked], free_slots: int,
                    iou_threshold: float = 0.3, duplicate_iou: float = 0.5) -> Plan:
    """What the detections (boxes (N, 4) x0, y0, x1, y1 pixels of a frame of ``size`` (H, W),
    scores, phrases) do to the objects (see the module doc). ``then``: the objects (id ->
    :class:`~sam2_ros.tracking.reseed.Tracked`) when the detection's frame was taken; ``now``: as
    they are (the truth for which ids exist); ``free_slots``: how many objects may start.

    Returns a :class:`~sam2_ros.tracking.reseed.Plan`: ``reprompt`` the lost objects re-acquired
    (id, box, phrase), ``new`` the objects to start (box, phrase, score), ``matched`` detection
    index -> the tracked or re-acquired object's id, ``ignored`` the empty and duplicate boxes."""
    h, w = size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    phrases = list(phrases)
    if len(scores) != len(boxes) or len(phrases) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes need as many scores ({len(scores)}) and phrases ({len(phrases)})")
    finite = np.isfinite(boxes).all(1) & np.isfinite(scores)
    boxes = np.clip(np.where(finite[:, None], boxes, 0.0), 0.0, [w, h, w, h])
    plan = Plan()
    ok = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    order = [int(d) for d in np.argsort(-np.where(ok, scores, 0.0), kind="stable") if ok[d]]
    same = box_iou(boxes, boxes) >= duplicate_iou  # (N, N)
    keep: List[int] = []
    for d in order:  # duplicates of a better box of the same phrase
        if not any(same[d, k] and phrases[k] == phrases[d] for k in keep):
            keep.append(d)
    plan.ignored = len(boxes) - len(keep)

    # tracked (not lost) on the detection's frame or now: those detections add nothing
    tracked = [(o, t) for snap in (then, now) for o, t in snap.items()
               if o in now and t.state != LOST and t.box is not None]
    if tracked:
        iou = box_iou(boxes[keep], np.array([t.box for _, t in tracked], np.float64))  # (n, m)
        for i, d in enumerate(keep):
            best = [(iou[i, j], -o) for j, (o, t) in enumerate(tracked)
                    if iou[i, j] >= iou_threshold and iou[i, j] > 0 and _same_class(phrases[d], t.label)]
            if best:
                plan.matched[d] = -max(best)[1]
    rest = [d for d in keep if d not in plan.matched]

    # lost objects of the phrases: re-acquired under their id
    # (one lost now but tracked on the detection's frame is left to the run its loss triggers)
    lost = {o: t for o, t in now.items() if t.state == LOST and t.label in set(phrases)
            and (o not in then or then[o].state == LOST)}
    last_box = {o: then[o].box if o in then and then[o].box is not None else t.box for o, t in lost.items()}
    with_box = [o for o in sorted(lost) if last_box[o] is not None]
    pairs = match(boxes[rest], np.array([last_box[o] for o in with_box], np.float64).reshape(-1, 4), iou_threshold,
                  scores[rest], [phrases[d] for d in rest], [lost[o].label for o in with_box])
    found = {rest[i]: with_box[j] for i, j, _ in pairs}
    # then by class: nearest (detection, lost object) pairs first, ties to the better score
    by_class = sorted((_center_distance(boxes[d], last_box[o]), -scores[d], o, d) for d in rest if d not in found
                      for o in lost if o not in found.values() and lost[o].label == phrases[d])
    for _, _, o, d in by_class:
        if d not in found and o not in found.values():
            found[d] = o
    plan.matched.update(found)
    plan.reprompt = sorted(((o, boxes[d].copy(), phrases[d]) for d, o in found.items()), key=lambda r: r[0])

    for d in [d for d in rest if d not in plan.matched][:max(0, int(free_slots))]:
        plan.new.append((boxes[d].copy(), phrases[d], float(scores[d])))
    return plan


def _center_distance(box: np.ndarray, other: Optional[Sequence[float]]) -> float:
    if other is None:
        return float("inf")
    return float(np.hypot((box[0] + box[2] - other[0] - other[2]) / 2, (box[1] + box[3] - other[1] - other[3]) / 2))


class DetectorSchedule:
    """When the detector runs (see the module doc). :meth:`due` once per tracked frame, :meth:`ran`
    when a run was submitted."""

    def __init__(self, every_n: int = DEFAULT_EVERY_N) -> None:
        self.every_n = _check_int("every_n", every_n, 0)
        self.phrases: Set[str] = set()
        self.active = False
        self._forced: Optional[str] = None  # a reason that makes the next frame due
        self._last: Optional[int] = None  # frame index of the last run
        self._lost_seen: Set[int] = set()  # lost objects a run has already looked for

    def start(self, phrases: Sequence[str], reason: str = "text") -> None:
        """Detect ``phrases`` from the next frame on."""
        self.phrases, self.active, self._forced, self._lost_seen = set(phrases), True, reason, set()

    def stop(self) -> None:
        self.active, self._forced, self._lost_seen = False, None, set()

    def retry(self) -> None:
        """Run again at once (a result came too late)."""
        if self.active:
            self._forced = "retry"

    def _lost(self, objects: Mapping[int, Tracked]) -> Set[int]:
        return {o for o, t in objects.items() if t.state == LOST and t.label in self.phrases}

    def due(self, frame_index: int, objects: Mapping[int, Tracked]) -> Optional[str]:
        """Why the detector should run on this frame ("text", "retry", "lost", "every_n"), or None."""
        if not self.active:
            return None
        lost = self._lost(objects)
        self._lost_seen &= lost  # an object found again may be lost (and looked for) again
        if self._forced:
            return self._forced
        if lost - self._lost_seen:
            return "lost"
        if self.every_n and (self._last is None or not 0 <= frame_index - self._last < self.every_n):
            return "every_n"
        return None

    def ran(self, frame_index: int, objects: Mapping[int, Tracked]) -> None:
        self._last, self._forced, self._lost_seen = int(frame_index), None, self._lost(objects)


@dataclass
class TextUpdate:
    """A detector result picked up on a frame, and what it does."""

    plan: Plan = field(default_factory=Plan)  # empty when dropped or failed
    frame_index: int = 0  # the frame the detector ran on
    age: int = 0  # tracked frames between that frame and the one it is applied on
    detections: Any = None
    latency_s: float = 0.0
    dropped: bool = False  # older than max_age: not applied
    error: Optional[str] = None  # the detector raised


class TextPrompter:
    """Text prompts for one tracker: schedule, asynchronous detector and plan (see the module doc).

    Args:
        detector: ``detect(frame, query) -> Detections`` (boxes, scores, phrases, size); when it
            also has ``check(query)`` (as :class:`~sam2_ros.model.text_detector.TextDetector`),
            :meth:`set_text` uses it to refuse a text it cannot read whole.
        every_n: tracked frames between two periodic runs (0: none; runs on text and losses only).
        max_age: results older than this many tracked frames are dropped (0: same frame only).
        iou_threshold, duplicate_iou: see :func:`plan_detections`.
        asynchronous: run the detector on a thread (False: on the caller's, for evaluation).

    Thread-safe: a text may be set (e.g. from a message callback) while another thread steps.
    """

    def __init__(self, detector: Any, every_n: int = DEFAULT_EVERY_N, max_age: int = DEFAULT_MAX_AGE,
                 iou_threshold: float = 0.3, duplicate_iou: float = 0.5, asynchronous: bool = True,
                 niceness: int = 10) -> None:
        self.detector = detector
        self.schedule = DetectorSchedule(every_n)
        self.configure(every_n, max_age, iou_threshold, duplicate_iou)
        detect = detector.detect if hasattr(detector, "detect") else detector
        self.runner = DetectorRunner(detect, asynchronous=asynchronous, niceness=niceness)
        self.query: Optional[TextQuery] = None
        self.counts: Counter = Counter()  # runs by reason, results applied / dropped, objects started ...
        self._lock = threading.Lock()  # the query, the schedule and the counts

    def configure(self, every_n: int = DEFAULT_EVERY_N, max_age: int = DEFAULT_MAX_AGE,
                  iou_threshold: float = 0.3, duplicate_iou: float = 0.5) -> None:
        """Change the settings (all checked first: a bad value raises ValueError with the reason
        and changes nothing)."""
        checked = (_check_int("every_n", every_n, 0), _check_int("max_age", max_age, 0),
                   _check_fraction("iou_threshold", iou_threshold), _check_fraction("duplicate_iou", duplicate_iou))
        self.schedule.every_n, self.max_age, self.iou_threshold, self.duplicate_iou = checked

    def set_text(self, text) -> Optional[TextQuery]:
        """A new text prompt (str, UTF-8 bytes or a parsed query): detected from the next step
        on; an empty text stops detecting. Raises :class:`TextPromptError` (nothing changes) when
        malformed. A run in progress for the old text is discarded."""
        query = text if isinstance(text, TextQuery) else parse_text_prompt(text)
        if query is not None and hasattr(self.detector, "check"):
            query = self.detector.check(query)
        with self._lock:
            self.runner.discard()
            self.query = query
            if query is None:
                self.schedule.stop()
            else:
                self.schedule.start(query.phrases)
        return query

    def reset(self) -> None:
        """The tracker was reset (its objects dropped): forget the run in progress; with a text,
        detect again from the next step on."""
        with self._lock:
            self.runner.discard()
            if self.query is not None:
                self.schedule.start(self.query.phrases, "reset")

    def step(self, frame: np.ndarray, frame_index: int, objects: Mapping[int, Tracked], free_slots: int,
             stamp: Any = None) -> Optional[TextUpdate]:
        """Once per tracked frame, before tracking it: ``objects`` are the tracker's objects after
        the previous frame (plus any prompted and not yet tracked), ``free_slots`` how many more it
        may start. Submits ``frame`` to the detector when due (never waits for it) and returns
        the result picked up on this frame, if one finished: apply ``update.plan`` to this frame."""
        frame_index = int(frame_index)
        with self._lock:
            update = self._take(frame_index, objects, free_slots)  # a run finished since the last step
            reason = self.schedule.due(frame_index, objects)
            if reason and self.query is not None and not self.runner.busy:
                if self.runner.submit(frame, frame_index, stamp, self.query, context=dict(objects)):
                    self.schedule.ran(frame_index, objects)
                    self.counts["runs_" + reason] += 1
            return update if update is not None else self._take(frame_index, objects, free_slots)  # synchronous

    def _take(self, frame_index: int, objects: Mapping[int, Tracked], free_slots: int) -> Optional[TextUpdate]:
        result = self.runner.poll()
        if result is None:
            return None
        update = TextUpdate(frame_index=result.frame_index, age=frame_index - result.frame_index,
                            detections=result.detections, latency_s=result.latency_s, error=result.error)
        if result.error is not None:
            self.counts["results_failed"] += 1
        elif not 0 <= update.age <= self.max_age:
            update.dropped = True
            self.counts["results_dropped"] += 1
            self.schedule.retry()
        else:
            det = result.detections
            update.plan = plan_detections(det.boxes, det.scores, det.phrases, det.size, result.context, objects,
                                          free_slots, self.iou_threshold, self.duplicate_iou)
            self.counts["results_applied"] += 1
            self.counts["detections"] += len(det.scores)
            self.counts["objects_started"] += len(update.plan.new)
            self.counts["objects_reacquired"] += len(update.plan.reprompt)
        return update

    def stats(self) -> Dict[str, Any]:
        """Diagnostics: the runner's counters and latency (ms), runs by reason, results applied,
        dropped (too old) and failed, detections, objects started and re-acquired, the text."""
        out: Dict[str, Any] = dict(self.runner.stats())
        with self._lock:
            for key in ("runs_text", "runs_reset", "runs_every_n", "runs_lost", "runs_retry", "results_applied",
                        "results_dropped", "results_failed", "detections", "objects_started", "objects_reacquired"):
                out[key] = self.counts[key]
            out["text"] = self.query.text if self.query is not None else ""
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Stop the detector's thread, waiting up to ``timeout`` s for a run in progress (0: leave
        it to finish on its own thread, unused)."""
        self.runner.close(timeout)


__all__ = ["DetectorSchedule", "TextPrompter", "TextUpdate", "TextPromptError", "plan_detections"]
