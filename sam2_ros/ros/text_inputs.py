"""Text prompts on a camera's node: the ``~/text_prompt`` topic (std_msgs/String), the
``text_prompt`` and ``detector_*`` parameters, and the open-vocabulary detector (Grounding DINO
through ``transformers``, the optional extra ``sam2_ros[text]``) that turns the words into objects.

What a text does (:mod:`sam2_ros.tracking.text_prompts`): the detector runs on the next frame;
each detection that overlaps no tracked object starts a new object labelled with its phrase (on
``~/detections`` and the overlay); then it runs again every ``detector_every_n`` tracked frames
and whenever an object of one of the phrases is lost, re-acquiring lost objects under their old
id and adding new instances up to ``max_objects``. An empty text stops detecting (the objects
stay). The text in force stays after ``~/reset`` (and a time jump or a new image size): the
detector runs again on the next frame.

Threads: the callbacks only check the text and hand it over; the detector is loaded on a thread of
its own (the first text asks for it) and runs on another (:class:`~sam2_ros.tracking.detector_runner.DetectorRunner`,
lowered priority), so no frame's masks wait for it. The worker asks, under the tracker lock and
before tracking each frame, for the prompts of the detector run that finished since the last one
(:meth:`TextInputs.frame_prompts`): its boxes are applied to that newest frame unchanged when the
run is at most ``detector_max_age`` tracked frames old, and dropped (counted) when older, the
detector then running again at once.

Refused with the reason (logged, counted in the diagnostics' ``prompt_errors`` and
``last_error``; the text in force stays and tracking goes on): a malformed text (an empty phrase,
more than 2000 characters, bytes that are not UTF-8, control characters), a text the detector
cannot read whole (over 256 tokens), and any text while ``transformers`` is not installed (the
message gives the command that installs it) or the detector cannot be loaded.
"""
from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from sam2_ros.model.text_query import TextPromptError, TextQuery, parse_text_prompt
from sam2_ros.ros import prompts
from sam2_ros.ros.objects import ObjectBook
from sam2_ros.ros.stream import CameraStream, StreamHooks
from sam2_ros.tracking.object_state import VISIBLE
from sam2_ros.tracking.reseed import Tracked

SOURCE = '~/text_prompt'
_UNSET = object()


def string_payload(raw: bytes) -> bytes:
    """The bytes of a serialized std_msgs/String (CDR: encapsulation, length, bytes, NUL), not
    decoded: rclpy would turn bytes that are not UTF-8 into replacement characters silently."""
    if len(raw) < 8:
        raise TextPromptError(f'not a std_msgs/String message ({len(raw)} bytes)')
    order = 'little' if raw[1] & 1 else 'big'
    n = int.from_bytes(raw[4:8], order)
    data = raw[8:8 + n]
    if len(data) != n:
        raise TextPromptError(f'a truncated std_msgs/String message (length {n}, {len(raw) - 8} bytes)')
    return data[:-1] if data.endswith(b'\0') else data


def missing_dependency() -> Optional[str]:
    """Why text prompts cannot work here (``transformers`` or Pillow not installed, with the
    command that installs them), or None. Cheap: nothing is imported."""
    from sam2_ros.model.text_detector import INSTALL_HINT

    for name in ('transformers', 'PIL'):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (f'text prompts need the optional dependencies transformers and pillow ({name} is not '
                    f'installed); install them with: {INSTALL_HINT}')
    return None


class TextInputs(StreamHooks):
    """See the module docstring. ``p``: the node's parameters (its own dict, updated in place)."""

    def __init__(self, stream: CameraStream, objects: ObjectBook, p: Mapping, logger) -> None:
        self._stream = stream
        self._book = objects
        self._p = p
        self._logger = logger
        self._lock = threading.Lock()
        self._prompter = None  # TextPrompter, once the detector is loaded
        self._loader: Optional[threading.Thread] = None
        self._wanted: Any = _UNSET  # the text asked for (a TextQuery, or None: stop), until the detector is ready
        self._status = 'not loaded'  # of the detector: not loaded | loading | ready | failed
        self._closed = False
        self._boxes: Dict[int, tuple] = {}  # box each detector object was prompted with (its box until its mask has one)

    # ------------------------------------------------------------------ callbacks' side
    def on_text_prompt(self, raw: bytes) -> None:
        """``~/text_prompt`` (subscribed raw: the bytes are checked, not rclpy's decoding)."""
        try:
            text = string_payload(raw)
        except TextPromptError as error:
            self._stream.bad_prompt(SOURCE, str(error))
            return
        self.set_text(text, SOURCE)

    def set_text(self, text, source: str) -> bool:
        """A new text prompt (str or UTF-8 bytes; empty: stop detecting) from ``source``. False
        when refused (logged and counted with the reason; the text in force stays)."""
        try:
            query = parse_text_prompt(text)
            reason = missing_dependency() if query is not None else None
            if reason:
                raise TextPromptError(reason)
            with self._lock:
                if self._prompter is not None:
                    self._prompter.set_text(query or '')  # the detector's own check (token count) first
                self._wanted = query
                load = query is not None and self._prompter is None and self._status != 'loading'
                if load:
                    self._status = 'loading'
        except TextPromptError as error:
            self._stream.bad_prompt(source, str(error))
            return False
        if query is None:
            self._logger.info(f'{source}: text prompt cleared: the detector stops (tracked objects stay)')
        else:
            self._logger.info(f"{source}: text prompt {query.text!r}: detecting {', '.join(query.phrases)}"
                              + (' (loading the detector first)' if load or self._status == 'loading' else ''))
        if load:
            self._loader = threading.Thread(target=self._load, name='sam2_detector_load', daemon=True)
            self._loader.start()
        return True

    def refusal(self, name: str, value) -> Optional[str]:
        """Why a new value of parameter ``name`` is refused (the text's form is checked by
        :mod:`sam2_ros.ros.params`): a text while transformers is missing."""
        if name == 'text_prompt' and isinstance(value, str) and value.strip():
            return missing_dependency()
        return None

    def start(self) -> None:
        """Configure: the ``text_prompt`` parameter, if any, is the first text."""
        self._closed = False
        if self._p['text_prompt'].strip():
            self.set_text(self._p['text_prompt'], 'text_prompt')

    def configure(self, values: Mapping) -> None:
        """Live parameter changes (``values``: the changed ones, ``self._p`` updated already)."""
        if 'text_prompt' in values:
            self.set_text(values['text_prompt'], 'text_prompt')
        prompter = self._prompter
        if prompter is None:
            return
        if 'detector_box_threshold' in values:
            prompter.detector.box_threshold = float(values['detector_box_threshold'])
        if 'detector_text_threshold' in values:
            prompter.detector.text_threshold = float(values['detector_text_threshold'])
        if 'detector_every_n' in values or 'detector_max_age' in values:
            with self._lock:
                prompter.configure(self._p['detector_every_n'], self._p['detector_max_age'], prompter.iou_threshold,
                                   prompter.duplicate_iou)

    # ------------------------------------------------------------------ the detector
    def _load(self) -> None:
        """Load the detector (its own thread; seconds to minutes), then detect the text wanted."""
        from sam2_ros.model.text_detector import DetectorLoadError, MissingDependencyError, TextDetector
        from sam2_ros.tracking.text_prompts import TextPrompter

        p = self._p
        start = time.perf_counter()
        try:
            detector = TextDetector.from_pretrained(
                p['detector_model'], box_threshold=p['detector_box_threshold'],
                text_threshold=p['detector_text_threshold'], device=p['detector_device'], dtype=p['detector_dtype'],
                image_size=p['detector_image_size'] or None)
            prompter = TextPrompter(detector, every_n=p['detector_every_n'], max_age=p['detector_max_age'])
        except (MissingDependencyError, DetectorLoadError, ValueError, OSError, RuntimeError) as error:
            with self._lock:
                self._status = f'failed: {type(error).__name__}'
                self._wanted = _UNSET
            self._stream.bad_prompt(SOURCE, f'cannot load the detector {p["detector_model"]!r}: {error}')
            return
        with self._lock:
            if self._closed:
                prompter.close()
                return
            refused = None
            if self._wanted is not _UNSET:
                try:
                    prompter.set_text(self._wanted or '')
                except TextPromptError as error:
                    refused = str(error)
            self._prompter, self._status = prompter, 'ready'
            self._book.want_boxes = True
        self._logger.info(f"detector {p['detector_model']!r} loaded in {time.perf_counter() - start:.1f} s on "
                          f'{detector.device} ({detector.dtype})')
        if refused:
            self._stream.bad_prompt(SOURCE, refused)

    def frame_prompts(self, tracker, rgb, stamp_ns: int, adds: Sequence[prompts.PromptOp]) -> List[prompts.PromptOp]:
        """The worker, under the tracker lock, before tracking a frame: submits it to the detector
        when due (never waits) and returns the prompts of the run that finished since the last
        frame (new objects and re-acquired ones, labelled with their phrase). ``adds``: the
        frame's other prompts (they win over the detector's for the same object)."""
        prompter = self._prompter
        if prompter is None:
            return []
        stream = self._stream
        ids = set(tracker.object_ids)
        with self._book.lock:
            objects = {o: t for o, t in self._book.tracked.items() if o in ids}
        self._boxes = {o: b for o, b in self._boxes.items() if o in ids}
        for o, t in objects.items():
            if t.box is None and o in self._boxes:  # no mask yet: where its prompt put it
                objects[o] = Tracked(self._boxes[o], t.state, t.label)
        for op in adds:  # objects prompted on this frame count as tracked, where their box says
            if op.prompt is not None and op.prompt.box is not None:
                objects[op.obj_id] = Tracked(tuple(float(v) for v in op.prompt.box), VISIBLE,
                                             op.label or stream.labels.get(op.obj_id))
        taken = {op.obj_id for op in adds}
        free = tracker.max_objects - len(ids | taken)
        try:
            update = prompter.step(rgb, stream.frame_count, objects, free, stamp_ns)
        except RuntimeError:  # closed meanwhile (cleanup): no more detections
            if not self._closed:
                raise
            return []
        if update is None:
            return []
        if update.error is not None:
            stream.stats.count('frame_errors', error=f'text detector failed: {update.error}')
            stream.log('error', 'detector_failed', f'the text detector failed (tracking goes on): {update.error}')
            return []
        if update.dropped:
            stream.log('info', 'detector_dropped', f'a detector result {update.age} frames old (detector_max_age '
                       f'{self._p["detector_max_age"]}) was dropped: its boxes no longer say where the objects are; '
                       'detecting again (a faster detector_device or a smaller detector_image_size keeps results fresh)')
            return []
        ops = [prompts.PromptOp('add', o, prompts.Prompt(o, box=box), phrase, stamp_ns, SOURCE)
               for o, box, phrase in update.plan.reprompt if o not in taken]
        used = stream.used_ids() | ids | taken
        for box, phrase, _ in update.plan.new:
            oid = prompts.next_free_id(used)
            used.add(oid)
            ops.append(prompts.PromptOp('add', oid, prompts.Prompt(oid, box=box), phrase, stamp_ns, SOURCE))
        for op in ops:
            self._boxes[op.obj_id] = tuple(float(v) for v in op.prompt.box)
        if ops:
            again = [op for op in ops if op.obj_id in ids]
            new = [op for op in ops if op.obj_id not in ids]
            stream.log('info', 'detector_objects', f'{SOURCE}: {len(update.plan.matched) + len(new)} detection(s) '
                       f'of frame -{update.age}: new objects: '
                       + (', '.join(f'{op.obj_id} ({op.label})' for op in new) or 'none') + '; re-acquired: '
                       + (', '.join(f'{op.obj_id} ({op.label})' for op in again) or 'none'))
        return ops

    def tracker_reset(self) -> None:
        """The tracker was reset (``~/reset``, a time jump, a new image size or tracker): the
        run in progress is forgotten; the text in force is detected again on the next frame."""
        prompter = self._prompter
        self._boxes = {}
        if prompter is not None:
            prompter.reset()

    def close(self) -> None:
        """Cleanup: the detector goes (and its memory); a text must be sent again after the next
        configure (the ``text_prompt`` parameter is)."""
        with self._lock:
            self._closed = True
            prompter, self._prompter = self._prompter, None
            self._wanted, self._status = _UNSET, 'not loaded'
            self._book.want_boxes = False
        if prompter is not None:  # a run in progress finishes on its own thread, unused (no callback waits)
            prompter.close(timeout=0.0)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> Dict[str, object]:
        """The text, the detector's state, runs (by reason), latency, results applied / dropped /
        failed, detections and objects started / re-acquired; each labelled object's label."""
        out: Dict[str, object] = {}
        for obj_id, label in sorted(dict(self._stream.labels).items()):
            if label:
                out[f'object_{obj_id}_label'] = label
        prompter = self._prompter
        if prompter is None and self._status == 'not loaded':
            return out
        out['detector'] = self._status
        if prompter is None:
            query = self._wanted if isinstance(self._wanted, TextQuery) else None
            out['text_prompt'] = query.text if query is not None else ''
            return out
        stats = prompter.stats()
        out['text_prompt'] = stats.pop('text')
        stats.pop('busy', None)
        for key, value in stats.items():
            out[f'detector_{key}'] = value
        return out
