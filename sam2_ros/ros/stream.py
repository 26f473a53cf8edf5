"""One camera's stream through its tracker (no rclpy): the frames waiting, the prompts
waiting, the tracker lock, and the work of a frame: convert the image, apply the frame's
removals and prompts, track, hand the result to the publishers.

Threads: message callbacks only queue work (:meth:`CameraStream.receive`, the prompt queue,
:meth:`CameraStream.run_or_queue`); one worker converts, tracks and publishes: this stream's
own thread (:meth:`CameraStream.start`), or, with several cameras in one process, the
process's shared worker (:mod:`sam2_ros.ros.shared_worker`), for which a stream is a camera
(``frames``, ``tracker``, ``prepare``, ``track_prepared``, ``frame_work``, ``frame_failed``,
``run_jobs``). No callback waits for the frame being tracked: what must change the tracker is
run at once when the tracker lock is free, else queued and run by the worker as soon as its
frame is done (:mod:`sam2_ros.ros.tracker_lock`); long requests (``~/track_everything``) are
jobs for the worker (:attr:`CameraStream.jobs`), run between two frames.

``frame_policy: latest`` keeps only the newest frame waiting (older ones are dropped and
counted), ``all`` keeps every frame in order (:mod:`sam2_ros.ros.frame_queue`). Prompt timing:
:mod:`sam2_ros.ros.prompts`. Time along the stream (reordered frames dropped, jumps back in
time reset the tracker): :mod:`sam2_ros.ros.timeline`. A change of image size resets the
tracker with a warning (objects are tied to the old view).
"""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from sam2_ros.ros import conversions, prompts
from sam2_ros.ros.diagnostics import Stats
from sam2_ros.ros.frame_queue import FrameQueue
from sam2_ros.ros.objects import ObjectBook
from sam2_ros.ros.rate_limited_log import RateLimitedLog
from sam2_ros.ros.shared_worker import track_alone
from sam2_ros.ros.timeline import Timeline
from sam2_ros.ros.tracker_lock import TrackerLock
from sam2_ros.tracking.types import FrameNotBuffered

# publish(header, rgb, result, ids, labels) -> the frame's label image
Publish = Callable[[object, object, object, List[int], Dict[int, str]], object]


class StreamHooks:
    """What follows a camera's frames beside the masks (the objects in 3-D, text prompts' detector):
    the worker calls every hook at these points, under the tracker lock; each does nothing unless
    overridden."""

    def frame_started(self, stamp_ns: int) -> None:
        """The worker picked the frame stamped ``stamp_ns``."""

    def frame_prompts(self, tracker, rgb, stamp_ns: int, adds: Sequence) -> List:
        """Prompts to add on this frame, given the ones already queued (``adds``)."""
        return []

    def frame_published(self, header, hw, result, ids: List[int], labels) -> None:
        """The frame's masks are out and its latency counted (``hw``: the image's height, width)."""

    def tracker_reset(self) -> None:
        """Every object was dropped (``~/reset``, a time jump, a new image size or tracker)."""


class CameraStream:
    """See the module docstring.

    Args:
        p: the node's parameters (the node's own dict, updated in place).
        stats, log, logger: counters, the rate-limited log and the node's logger.
        objects: the objects' states, boxes and reseeder (cleared with the tracker).
        publish: sends a tracked frame's outputs; returns its label image.
        now_ns: the node clock's time (for the stamps' age; 0 when unknown).
        alive: False once the process's ROS context is shut down.
        hooks: :class:`StreamHooks` called on each frame (the node adds its 3-D outputs and text inputs).
    """

    def __init__(self, p: Dict, stats: Stats, log: RateLimitedLog, logger, objects: ObjectBook, publish: Publish,
                 now_ns: Callable[[], int], alive: Callable[[], bool], hooks: Sequence[StreamHooks] = ()) -> None:
        self.p = p
        self.hooks = list(hooks)
        self.stats, self.log, self.logger = stats, log, logger
        self.objects = objects
        self.publish = publish
        self.now_ns = now_ns
        self.alive = alive
        self.frames = FrameQueue(stats, p['frame_policy'])
        self.prompts = prompts.PromptQueue(p['prompt_buffer'])
        self.lock = TrackerLock(self._command_failed)
        self.jobs: deque = deque()  # long work for the worker (segment everything), between frames
        self.tracker = None
        self.labels: Dict[int, str] = {}  # object id -> class label (ImageMarker.ns)
        self.ids: List[int] = []  # tracked ids after the last frame (for clicks)
        self.last_click_id = 0  # the last id given to a new object by a click, box or segment-everything
        self.frame_hw: Optional[Tuple[int, int]] = None
        # time along the stream: stamps of the prompt buffer's frames, jumps back, reordering
        self.timeline = Timeline(p['time_jump_threshold'])
        self.frame_count = 0  # frames tracked since configure (the reseeder's clock)
        self.last_frame = None  # (rgb, header, tracker frame index, label image) of the last frame published
        self._stop = threading.Event()  # the current worker's; each worker has its own
        self._workers: List[threading.Thread] = []  # started and maybe still finishing a frame

    # ------------------------------------------------------------------ callbacks' side
    def receive(self, msg, compressed: bool) -> None:
        """An image message arrived (a callback): queue it for the worker."""
        self.stats.count('received')
        self.prompts.note_frame(prompts.stamp_to_ns(msg.header.stamp))
        self.frames.put((msg, compressed, time.perf_counter()))

    def run_or_queue(self, command: Callable[[], None]) -> bool:
        """Run ``command`` under the tracker lock now, or queue it for the worker (never waits)."""
        return self.lock.run_or_queue(command)

    def bad_prompt(self, source: str, reason: str) -> None:
        """A prompt was refused: counted and logged (rate-limited) with the reason."""
        self.stats.count('prompt_errors', error=f'{source}: {reason}')
        self.log('warning', source + re.sub(r'\d+', '#', reason), f'{source}: prompt skipped: {reason}')

    def used_ids(self) -> set:
        """Ids a new object must not take: tracked, waiting in a prompt, or just given."""
        return set(self.ids) | self.prompts.pending_ids() | {self.last_click_id}

    def install(self, tracker) -> None:
        """A new tracker (configure): installed under the tracker lock (a worker stopped just
        before may still hold it)."""
        def install() -> None:
            self.tracker = tracker
            self.frame_hw = None
            self.labels.clear()
            self.ids = []
            self.forget(new_timeline=True)
        self.run_or_queue(install)

    def release(self) -> None:
        """Drop the waiting prompts and jobs, and the tracker with its memory: now if no frame
        is in progress, else by the worker once its frame is done."""
        self.prompts.clear()
        self.jobs.clear()
        self.run_or_queue(self._drop_tracker)

    def reset_objects(self) -> bool:
        """Drop every object (``~/reset``): prompts waiting now and jobs are dropped at once,
        the tracker is reset under its lock. True if it was applied now (no frame in progress)."""
        self.prompts.clear()
        self.jobs.clear()  # a segment-everything run asked for before the reset is dropped too
        self.last_click_id = 0  # clicks from now on start again from id 1
        self.ids = []

        def reset() -> None:
            if self.tracker is not None:
                self.tracker.reset()
            self.labels.clear()
            self.ids = []
            self.forget(new_timeline=False)
            self.frame_hw = None
            self.last_frame = None  # segment everything waits for a frame after the reset
        return self.run_or_queue(reset)

    def forget(self, new_timeline: bool) -> None:
        """The tracker was reset (or is new): forget its frames and objects' states
        (``new_timeline``: also the stamps seen, after a jump back in time)."""
        if new_timeline:
            self.timeline.reset()
        else:
            self.timeline.forget_frames()
        self.objects.clear()
        for hook in self.hooks:
            hook.tracker_reset()

    def _drop_tracker(self) -> None:
        """Forget the tracker and free its memory (under the tracker lock)."""
        tracker, self.tracker = self.tracker, None
        self.forget(new_timeline=True)
        if tracker is not None:
            device = tracker.device
            del tracker
            import gc

            gc.collect()
            if device.type == 'cuda':
                import torch

                torch.cuda.empty_cache()

    def _command_failed(self, error: Exception) -> None:
        self.stats.count('frame_errors', error=f'command failed: {type(error).__name__}: {error}')
        self.logger.error(f'command failed: {type(error).__name__}: {error}')

    # ------------------------------------------------------------------ own worker
    def start(self, shared_worker=None) -> None:
        """Start tracking (activate): a thread of this stream's own, or attached to the
        process's shared worker. Each start has its own stop event: a worker stopped by a
        deactivate just before may still be finishing its frame, and stops after it."""
        self._stop = stop = threading.Event()
        if shared_worker is not None:
            shared_worker.attach(self, stop)
            return
        self._workers = [w for w in self._workers if w.is_alive()]
        worker = threading.Thread(target=self._work, args=(stop,), name='sam2_worker', daemon=True)
        self._workers.append(worker)
        worker.start()

    def stop(self, timeout: Optional[float] = 30.0, shared_worker=None) -> bool:
        """Tell the worker to stop after its current frame (it publishes nothing more).
        ``timeout`` None: return at once (callbacks never wait for a frame); else wait up to
        ``timeout`` s for every worker started so far. False if one is still running."""
        self._stop.set()
        if shared_worker is not None:  # the shared worker drops this camera (the others go on)
            return shared_worker.detach(self, timeout)
        self.frames.wake()
        if timeout is None:
            return not any(w.is_alive() for w in self._workers)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers = [w for w in self._workers if w.is_alive()]
        return not self._workers

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.jobs:
                self.run_jobs(stop)
                continue
            item = self.frames.get(timeout=0.2)
            if item is None or stop.is_set():
                continue
            try:
                frame = self.prepare(*item)
                if frame is not None:
                    self.track_prepared(frame, stop)
            except Exception as error:  # noqa: BLE001 - keep tracking; say what happened
                if not self.frame_failed(error, stop):
                    return

    # ------------------------------------------------------------------ the worker interface
    def frame_failed(self, error: Exception, stop: threading.Event) -> bool:
        """A frame raised ``error``: count and log it. False when the node is stopping (the
        error is then only a sign of it: publishers may be gone)."""
        if stop.is_set() or not self.alive():
            return False
        self.stats.count('frame_errors', error=f'frame skipped: {type(error).__name__}: {error}')
        self.log('error', f'frame:{type(error).__name__}', f'frame skipped: {type(error).__name__}: {error}')
        return True

    def run_jobs(self, stop: threading.Event) -> None:
        """Long requests (segment everything) waiting for the worker, between two frames."""
        while self.jobs and not stop.is_set():
            job = self.jobs.popleft()
            try:
                with self.lock.held():
                    job()
            except Exception as error:  # noqa: BLE001 - keep tracking; say what happened
                self.stats.count('frame_errors', error=f'request failed: {type(error).__name__}: {error}')
                self.logger.error(f'request failed: {type(error).__name__}: {error}')

    def prepare(self, msg, compressed: bool, received: float) -> Optional[Tuple]:
        """First half of a frame: the message converted to RGB (no tracker lock: the shared
        worker converts a camera's frame while another camera's is tracked). None when the
        image is refused (counted and logged with the reason)."""
        t0 = time.perf_counter()
        try:
            budget = self.p['max_image_pixels']
            rgb = (conversions.compressed_to_rgb(msg, max_pixels=budget) if compressed
                   else conversions.image_to_rgb(msg, max_pixels=budget))
        except conversions.ConversionError as error:
            self.stats.count('refused', error=f'image skipped: {error}')
            if isinstance(error, conversions.ImageTooLarge):
                self.stats.count('refused_too_large')
            elif isinstance(error, conversions.UnsupportedFormat):
                self.stats.count('refused_format')
            self.log('warning', 'image:' + getattr(msg, 'encoding', getattr(msg, 'format', ''))
                     + re.sub(r'\d+', '#', str(error)), f'image skipped: {error}')
            return None
        for hook in self.hooks:
            hook.frame_started(prompts.stamp_to_ns(msg.header.stamp))
        return msg, rgb, received, t0, time.perf_counter()

    def track_prepared(self, frame: Tuple, stop: Optional[threading.Event] = None, features=None) -> None:
        """Second half of a frame from :meth:`prepare`: prompts, tracking, publishing.
        ``features``: the frame's image features, encoded already (``Tracker.encode``); None:
        the tracker encodes it."""
        track_alone(self.frame_work(frame, stop, features))

    def frame_work(self, frame: Tuple, stop: Optional[threading.Event], features=None) -> Iterator:
        """:meth:`track_prepared` around its tracker call, as a generator: it takes the tracker
        lock, applies the frame's removals and checks its prompts, then yields ``(tracker, rgb,
        prompts, features)`` with the lock held and takes back the ``TrackResult`` (or the
        ``PromptError`` it raised: the frame is then tracked without prompts), lets go of the
        lock and publishes (see :func:`~sam2_ros.ros.shared_worker.track_alone`). Yields nothing
        when the frame is dropped. The shared worker drives the frames of several cameras this
        way, tracking them in one step (``sam2_ros.tracking.cameras.track_together``)."""
        msg, rgb, received, t0, t1 = frame
        hw = rgb.shape[:2]
        stamp = prompts.stamp_to_ns(msg.header.stamp)
        with self.lock.held():
            tracker = self.tracker
            if tracker is None or (stop is not None and stop.is_set()):
                return
            verdict = self.timeline.check(stamp)
            if verdict == 'out_of_order':
                last = self.timeline.last_stamp
                self.stats.count('out_of_order')
                self.log('warning', 'out_of_order', f'frame stamped {prompts.format_stamp(stamp)} is {(last - stamp) / 1e9:.3f} s '
                         f'older than the last tracked frame ({prompts.format_stamp(last)}): dropped (frames are tracked in '
                         f'time order; more than time_jump_threshold = {self.timeline.jump_threshold_s} s back '
                         'resets the tracker instead)')
                return
            if verdict == 'jump':
                self._time_jump(tracker, stamp)
            if self.frame_hw is not None and hw != self.frame_hw:
                n = len(tracker.object_ids)
                tracker.reset()
                self.labels.clear()
                self.forget(new_timeline=False)
                change = f'image size changed from {self.frame_hw[1]}x{self.frame_hw[0]} to {hw[1]}x{hw[0]}'
                if n:
                    self.logger.warning(f'{change}: tracker reset, {n} object(s) dropped (prompt them again)')
                else:
                    self.logger.info(change)
            self.frame_hw = hw
            batch = self.prompts.take(stamp, buffered=self.timeline.buffered())
            for text in batch.warnings:
                self.log('warning', re.sub(r'\d+', '#', text), text)
            for op in batch.removes:
                if tracker.remove_object(op.obj_id):
                    self.logger.info(f'object {op.obj_id} removed')
                else:
                    self.bad_prompt(op.source, f'remove: object {op.obj_id} is not tracked')
                self.labels.pop(op.obj_id, None)
            for hook in self.hooks:  # e.g. the text detector's objects (sam2_ros.ros.text_inputs)
                batch.adds += hook.frame_prompts(tracker, rgb, stamp, batch.adds)
            late = self._apply_past(tracker, batch.past, hw)
            frame_prompts = self._checked_prompts(tracker, batch.adds + late, hw)
            t2 = time.perf_counter()
            result = yield tracker, rgb, frame_prompts, features
            if isinstance(result, prompts.PromptError):  # safety net: prompts were checked above
                self.bad_prompt('prompt', str(result))
                result = tracker.track(rgb, features=features)
            t3 = time.perf_counter()
            ids = list(result.object_ids)
            self.ids = ids
            labels = dict(self.labels)
            self.timeline.tracked(stamp, result.frame_index, tracker.buffered_frames)
            self.frame_count += 1
        if stop is not None and stop.is_set():
            return  # deactivated or shutting down while this frame was tracked: nothing goes out
        # For ~/track_everything: set before the masks go out, so that a client calling it as soon
        # as it has them finds this frame (its job runs on this thread, after the label is in).
        self.last_frame = (rgb, msg.header, result.frame_index, None)
        label = self.publish(msg.header, rgb, result, ids, labels)
        self.last_frame = (rgb, msg.header, result.frame_index, label)
        t4 = time.perf_counter()
        # latency: steady clock inside the node; stamp age: the node's clock (sim time with
        # use_sim_time) against the image's stamp
        now_ns = self.now_ns()
        # now 0: use_sim_time before the first /clock, no time to measure an age against
        age = (now_ns - stamp) / 1e9 if stamp and now_ns else None
        self.stats.frame_done(t4 - received, {'convert': t1 - t0, 'track': t3 - t2, 'publish': t4 - t3,
                                              'ros': (t1 - t0) + (t4 - t3)}, len(ids), stamp_age_s=age)
        for hook in self.hooks:  # after the masks: they never wait for depth
            hook.frame_published(msg.header, hw, result, ids, labels)

    # ------------------------------------------------------------------ a frame's prompts
    def _checked_prompts(self, tracker, ops, hw) -> List:
        """Prompts of this frame that the tracker will accept (bad ones are logged and skipped)."""
        out = []
        count = len(tracker.object_ids)
        for op in ops:
            try:
                note = prompts.fit_to_frame(op, hw)  # clips boxes reaching past the border
            except prompts.PromptError as error:
                self.bad_prompt(op.source, str(error))
                continue
            if note:
                self.log('warning', 'clip' + op.source, note)
            if op.obj_id not in tracker.object_ids:
                if count >= tracker.max_objects:
                    self.bad_prompt(op.source, f'object {op.obj_id} would be object {count + 1}; '
                                    f'max_objects is {tracker.max_objects}: remove objects first or '
                                    'raise max_objects')
                    continue
                count += 1
            if op.label:
                self.labels[op.obj_id] = op.label
            out.append(op.prompt)
        return out

    def _apply_past(self, tracker, past: Dict[int, List], hw) -> List:
        """Prompts stamped with frames in the prompt buffer: applied to those frames. Returns
        the prompts whose frame has just left the buffer (prompt_buffer made smaller): they go
        to the next frame."""
        late = []
        for index in sorted(past):
            ops = past[index]
            if index not in tracker.buffered_frames:
                late += ops
                self.log('warning', 'prompt_late', f'{len(ops)} prompt(s) stamped {prompts.format_stamp(ops[0].stamp_ns)}: '
                         'the frame has just left the prompt buffer; applied to the next frame')
                continue
            chosen = self._checked_prompts(tracker, ops, hw)
            if not chosen:
                continue
            try:
                tracker.prompt_past(index, chosen)
            except (prompts.PromptError, FrameNotBuffered) as error:
                self.bad_prompt(ops[0].source, str(error))
                continue
            self.stats.count('prompts_past', len(chosen))
            self.log('info', 'prompt_past', f'{len(chosen)} prompt(s) (object(s) '
                     f'{", ".join(str(p.obj_id) for p in chosen)}) applied to the frame stamped '
                     f'{prompts.format_stamp(ops[0].stamp_ns)}, {tracker.frame_index - index} frame(s) before '
                     'the last tracked one')
        return late

    def _time_jump(self, tracker, stamp: int) -> None:
        """Time went back (see sam2_ros.ros.timeline): start again."""
        last = self.timeline.last_stamp
        n = len(tracker.object_ids)
        waiting = len(self.prompts)
        tracker.reset()
        self.prompts.clear()
        self.labels.clear()
        self.ids = []
        self.forget(new_timeline=True)
        self.stats.count('time_jumps')
        self.logger.warning(
            f'time jumped back from {prompts.format_stamp(last)} to {prompts.format_stamp(stamp)} (a bag replayed in a loop, '
            f'a simulator reset?): tracker reset, {n} object(s) and {waiting} waiting prompt(s) dropped')
