"""The ``sam2_tracker`` node: camera frames and prompts in, masks and ids out.

A lifecycle node (rclpy.lifecycle):

* configure: read and check the parameters, load the model, warm it up, create the publishers;
* activate: subscribe to the image and the prompts, start the inference thread;
* deactivate: unsubscribe, stop the thread (tracked objects are kept);
* cleanup: drop the tracker and free the model's (GPU) memory.

With ``autostart`` (default) the node configures and activates itself, so ``ros2 run`` and
``ros2 launch`` simply work; when the model cannot be loaded it then exits with the reason.

Threads: message callbacks only queue work; one worker thread converts, tracks and publishes
(several cameras in one process, ``--cameras``: one worker for all of them, batching their
frames, and one model: :mod:`sam2_ros.ros.multi`, :mod:`sam2_ros.ros.shared_worker`).
No callback waits for the frame being tracked (issue 14): what must change the tracker is run
at once when the tracker lock is free, else queued and run by the worker, in order, as soon as
its frame is done (``_run_or_queue``); long requests (``~/track_everything``) are jobs for the
worker, answered at once. Services are 1000 requests deep, the lifecycle ones too.
``frame_policy: latest`` keeps only the newest frame waiting (older ones are dropped and
counted), ``all`` keeps every frame in order. Prompt timing (prompts stamped with a frame in
the tracker's prompt buffer go to that frame): see :mod:`sam2_ros.ros.prompts`. Time along the
stream (reordered frames dropped, jumps back in time reset the tracker, use_sim_time): see
:mod:`sam2_ros.ros.timeline`. A change of image size resets the tracker with a warning (objects
are tied to the old view). Object states: :mod:`sam2_ros.tracking.object_state`; detections as prompts
(``~/prompt_boxes``): :mod:`sam2_ros.tracking.reseed`; ``~/track_everything``: the automatic mask
generator (:mod:`sam2_ros.image.automatic`) on the latest frame.

Topics, services and parameters: README.md ("The tracker node") and config/tracker.yaml.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections import deque
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_system_default)

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, Point32, PolygonStamped
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import ImageMarker

from sam2_ros.tracking.object_state import ObjectStates
from sam2_ros.tracking.reseed import Reseeder, Tracked
from sam2_ros.ros import conversions, detections, params, prompts
from sam2_ros.ros.diagnostics import Stats, device_memory, diagnostics_stamp, to_diagnostic_array
from sam2_ros.ros.timeline import Timeline
from sam2_ros.ros.shared_worker import track_alone

NODE_NAME = 'sam2_tracker'
ALL_POLICY_QUEUE_LIMIT = 500  # frames waiting with frame_policy: all (then the oldest go)
ALL_POLICY_QUEUE_BYTES = 1 << 30  # and at most this many bytes of image data waiting
LOG_INTERVAL_S = 5.0  # the same warning at most once per interval
# A signal repeated within this time of the first is the same request delivered twice (ros2
# launch signals the node and, without a terminal, the process group does too): ignored. A
# later one is the user insisting: the process exits at once with 128 + the signal number.
SIGNAL_GRACE_S = 1.0
EXIT_OK, EXIT_CONFIGURE_FAILED, EXIT_BAD_PARAMETERS = 0, 1, 2
PROMPT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# The node's own services: requests are answered at once, but a burst arrives faster than one
# executor turn; the default depth (10) would lose the requests beyond it (as parameter
# services, 1000 deep).
SERVICE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# Reliable publishers serve reliable and best-effort subscribers alike.
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def _lifecycle_services():
    from lifecycle_msgs import srv

    return (('change_state', srv.ChangeState), ('get_state', srv.GetState),
            ('get_available_states', srv.GetAvailableStates),
            ('get_available_transitions', srv.GetAvailableTransitions),
            ('get_transition_graph', srv.GetAvailableTransitions))


_LIFECYCLE_SERVICES = _lifecycle_services()


def image_qos(kind: str, depth: int) -> QoSProfile:
    if kind == 'system_default':
        return qos_profile_system_default
    reliability = ReliabilityPolicy.BEST_EFFORT if kind == 'sensor_data' else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST)


class RateLimitedLog:
    """Log each distinct message at most once per interval, with a count of the repeats."""

    def __init__(self, logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: Dict[Tuple[str, str], Tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, level: str, key: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get((level, key), (-1e9, 0))
            if now - last < self._interval:
                self._last[(level, key)] = (last, suppressed + 1)
                return
            self._last[(level, key)] = (now, 0)
            if len(self._last) > 1000:  # many distinct messages: forget the old ones
                self._last = {k: v for k, v in self._last.items() if now - v[0] < self._interval}
        if suppressed:
            text += f' ({suppressed} more like it in the last {now - last:.0f} s)'
        # one call site per severity: rclpy's logger refuses two severities from one line
        if level == 'info':
            self._logger.info(text)
        elif level == 'warning':
            self._logger.warning(text)
        else:
            getattr(self._logger, level)(text)


class FrameQueue:
    """Frames waiting for the worker: the newest only (``latest``) or all in order (``all``)."""

    def __init__(self, stats: Stats) -> None:
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._stats = stats
        self.policy = 'latest'
        # Called after a frame is queued or the queue is woken: the worker serving several
        # cameras (sam2_ros.ros.shared_worker) waits on all their queues at once.
        self.listener = None

    def put(self, item) -> int:
        """Queue a frame; returns how many frames were dropped for it."""
        with self._cond:
            dropped = 0
            if self.policy == 'latest':
                dropped = len(self._items)
                self._items.clear()
            else:  # bounded in frames and in bytes (a flood of big frames must not exhaust memory)
                size = _nbytes(item)
                total = sum(_nbytes(i) for i in self._items)
                while self._items and (len(self._items) >= ALL_POLICY_QUEUE_LIMIT
                                       or total + size > ALL_POLICY_QUEUE_BYTES):
                    total -= _nbytes(self._items.popleft())
                    dropped += 1
            self._items.append(item)
            self._stats.note_queue(len(self._items))
            self._cond.notify()
        if dropped:
            self._stats.count('dropped', dropped)
        if self.listener is not None:
            self.listener()
        return dropped

    def get_nowait(self):
        """The next frame, or None at once when none is waiting."""
        with self._cond:
            return self._items.popleft() if self._items else None

    def get(self, timeout: float):
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def set_policy(self, policy: str) -> None:
        with self._cond:
            self.policy = policy
            if policy == 'latest' and len(self._items) > 1:
                dropped = len(self._items) - 1
                while len(self._items) > 1:
                    self._items.popleft()
                self._stats.count('dropped', dropped)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self.listener is not None:
            self.listener()


def _nbytes(item) -> int:
    return len(getattr(item[0], 'data', b''))


def _logged(method):
    """rclpy swallows exceptions raised in transition callbacks (the transition just fails):
    log them with the reason first."""
    import functools
    import traceback

    @functools.wraps(method)
    def wrapper(self, state):
        try:
            return method(self, state)
        except Exception as error:  # noqa: BLE001
            self.get_logger().error(f'{method.__name__} failed: {type(error).__name__}: {error}\n'
                                    + traceback.format_exc())
            return TransitionCallbackReturn.ERROR
    return wrapper


class TrackerNode(LifecycleNode):
    """The sam2_tracker lifecycle node (see the module docstring)."""

    def __init__(self, shared=None, **kwargs) -> None:
        """``shared``: a :class:`sam2_ros.ros.shared_worker.SharedCameras` when this node is
        one camera of several in one process (one model, one worker for all; see
        :mod:`sam2_ros.ros.multi`); None: a node of its own, with its own model and worker.
        Other keyword arguments go to rclpy's node (``namespace``: the camera's)."""
        self._shared = shared
        # The lifecycle services rcl creates are 10 requests deep: a burst of get_state calls
        # would lose the rest. Where rclpy's own handlers can be reached, the node serves the
        # same five services itself, as deep as its other services (SERVICE_QOS).
        own = all(hasattr(LifecycleNode, f'_LifecycleNodeMixin__on_{n}') for n, _ in _LIFECYCLE_SERVICES)
        if own:
            kwargs.setdefault('enable_communication_interface', False)
        super().__init__(NODE_NAME, **kwargs)
        if own and not kwargs['enable_communication_interface']:
            for name, srv_type in _LIFECYCLE_SERVICES:
                self.create_service(srv_type, f'~/{name}', getattr(self, f'_LifecycleNodeMixin__on_{name}'),
                                    qos_profile=SERVICE_QOS)
        self.log = RateLimitedLog(self.get_logger())
        self.p = params.declare(self)  # ParameterError on bad overrides
        self.add_on_set_parameters_callback(
            params.make_callback(self._state_label, self._apply_live, lambda: params.current(self),
                                 self._shared.refusal if self._shared is not None else None))

        self.stats = Stats()
        self.frames = FrameQueue(self.stats)
        self.frames.policy = self.p['frame_policy']
        self.prompts = prompts.PromptQueue(self.p['prompt_buffer'])
        self._lock = threading.Lock()  # the tracker and what goes with it (labels, size, ids)
        # Callbacks never wait for this lock (the worker holds it for a whole frame): what they
        # need done under it is run at once when it is free, else queued here and run, in
        # order, by the holder before it lets go (see _run_or_queue and _tracker_locked).
        self._commands: deque = deque()
        self._commands_lock = threading.Lock()
        self._jobs: deque = deque()  # long work for the worker thread (segment everything)
        self.tracker = None
        self._labels: Dict[int, str] = {}  # object id -> class label (ImageMarker.ns)
        self._ids: List[int] = []  # tracked ids after the last frame (for clicks)
        self._last_click_id = 0
        self._frame_hw: Optional[Tuple[int, int]] = None
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()  # the current worker's; each worker has its own
        self._workers: List[threading.Thread] = []  # started and maybe still finishing a frame
        self._subs: list = []
        self._own_services: list = []
        self._pubs: Dict[str, object] = {}
        self._object_pubs: Dict[int, object] = {}
        self._reuse: Dict[str, object] = {}  # output messages whose buffers are refilled
        self._vision = None
        self._diag_timer = None
        self._diag_pub = None
        self._state = 'unconfigured'
        self._backend = 'torch'  # the encoder backend in use
        # time along the stream: stamps of the prompt buffer's frames, jumps back, reordering
        self._timeline = Timeline(self.p['time_jump_threshold'])
        self._jump_handle = None
        self._object_states = ObjectStates(**self._state_settings(self.p))
        self._reseeder = Reseeder(**self._reseed_settings(self.p))
        self._frame_count = 0  # frames tracked since configure (the reseeder's clock)
        self._tracked: Dict[int, Tracked] = {}  # per object after the last frame: box, state, label
        self._state_snapshot: Dict[int, Tuple[str, float]] = {}  # for the diagnostics
        self._polygon_pubs: Dict[int, object] = {}
        self._last_frame = None  # (rgb, header, tracker frame index, label image) of the last frame published
        self._reseed_lock = threading.Lock()  # the reseeder and the objects' boxes it matches against

    @staticmethod
    def _state_settings(p: Dict) -> Dict:
        return dict(present_threshold=p['state_present_threshold'], absent_threshold=p['state_absent_threshold'],
                    visible_frames=p['state_visible_frames'], occluded_frames=p['state_occluded_frames'],
                    lost_frames=p['state_lost_frames'])

    @staticmethod
    def _reseed_settings(p: Dict) -> Dict:
        return dict(mode=p['reseed'], every_n=p['reseed_every_n'], iou_threshold=p['reseed_iou'],
                    new_objects=p['reseed_new_objects'], min_score=p['detection_min_score'])

    # ------------------------------------------------------------------ parameters / state
    def _state_label(self) -> str:
        return self._state

    def _apply_live(self, values: Dict) -> None:
        self.p.update(values)
        if 'frame_policy' in values:
            self.frames.set_policy(values['frame_policy'])
        if 'prompt_buffer' in values:
            self.prompts.set_buffer(values['prompt_buffer'])
        if 'time_jump_threshold' in values:
            self._timeline.jump_threshold_s = float(values['time_jump_threshold'])
        if any(k.startswith('state_') for k in values):
            self._object_states.configure(**self._state_settings(self.p))
        if any(k.startswith(('reseed', 'detection_')) for k in values):
            self._reseeder.configure(**self._reseed_settings(self.p))
        tracker = self.tracker
        if tracker is not None:
            if 'prompt_buffer' in values:  # the worker may be using the buffer: between frames
                size = int(values['prompt_buffer'])
                self._run_or_queue(lambda: setattr(tracker, 'prompt_buffer', size))
            if 'mask_threshold' in values:
                tracker.mask_threshold = float(values['mask_threshold'])
            if 'max_objects' in values:
                tracker.max_objects = int(values['max_objects'])

    # ------------------------------------------------------------------ lifecycle
    @_logged
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.p = params.current(self)
        try:
            params.validate_all(p)
        except params.ParameterError as error:
            self.get_logger().error(f'cannot configure: {error}')
            return TransitionCallbackReturn.FAILURE
        try:
            tracker = self._load_tracker(p)
        except Exception as error:  # noqa: BLE001 - every load error becomes a clear message
            self.get_logger().error(f'cannot configure: {type(error).__name__}: {error}')
            return TransitionCallbackReturn.FAILURE

        def install() -> None:  # under the tracker lock: a worker stopped just before may still hold it
            self.tracker = tracker
            self._frame_hw = None
            self._labels.clear()
            self._ids = []
            self._forget_stream(new_timeline=True)
        self._run_or_queue(install)
        self.stats.reset()
        self._pubs['masks'] = self.create_publisher(Image, '~/masks', OUTPUT_QOS)
        self._pubs['overlay'] = self.create_publisher(Image, '~/overlay', OUTPUT_QOS)
        self._vision = detections.load()
        if self._vision is not None:
            self._pubs['detections'] = self.create_publisher(
                self._vision.Detection2DArray, '~/detections', OUTPUT_QOS)
        else:
            self.get_logger().info('vision_msgs is not installed: ~/detections is not published')
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # once a second of real time (steady clock), also under use_sim_time while /clock is
        # paused or slow; the message is stamped with the node's clock
        from rclpy.clock import Clock, ClockType

        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._own_services.append(self.create_service(Trigger, '~/reset', self._on_reset, qos_profile=SERVICE_QOS))
        self._own_services.append(self.create_service(Trigger, '~/track_everything', self._on_track_everything,
                                                      qos_profile=SERVICE_QOS))
        self._watch_clock()
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def _load_tracker(self, p: Dict):
        from sam2_ros import Tracker
        from sam2_ros.backends import make_encoder_or_fallback
        from sam2_ros.model.build import build_model, resolve_device

        checkpoint = p['checkpoint'] or None
        start = time.perf_counter()
        if self._shared is not None:  # one camera of several: the process's one model
            model, encoder, self._backend, warm = self._shared.model.get(p, warn=self.get_logger().warning)
        else:
            model = build_model(checkpoint, model=p['model'], image_size=p['image_size'],
                                device=resolve_device(p['device']))
            # a backend that cannot be used (package missing, file made for another model, size,
            # GPU or TensorRT version) falls back to torch with a warning saying why
            encoder, self._backend = make_encoder_or_fallback(
                p['encoder_backend'], model, p['encoder_engine'] or None, warn=self.get_logger().warning)
            warm = False
        settings = dict(max_objects=p['max_objects'], num_maskmem=p['num_maskmem'],
                        max_cond_frames=p['max_cond_frames'], mask_threshold=p['mask_threshold'],
                        dtype=p['dtype'], encoder=encoder, prompt_buffer=p['prompt_buffer'],
                        compile=params.compile_option(p['compile']))
        self._step_backend = p['step_backend']
        if p['step_backend'] == 'torch':
            tracker = Tracker(model, **settings)
        else:
            from sam2_ros.backends import BackendError

            try:
                tracker = Tracker(model, step_backend=p['step_backend'], step_engine=p['step_engine'] or None, **settings)
            except (BackendError, ValueError, ImportError, OSError, RuntimeError) as error:
                self.get_logger().warning(f"step backend {p['step_backend']!r} cannot be used ({error}); "
                                          'falling back to the torch frame step')
                self._step_backend = 'torch'
                tracker = Tracker(model, static=True, **settings)
        loaded = time.perf_counter()
        size = p['image_size']
        if not warm:
            # Warm-up: one prompted frame and one tracked frame, so the first camera frame is not
            # slow. Not for a camera of several once the model is warm: the shared worker may be
            # running the model for the other cameras right now (their frames, not this one's, and
            # no callback of ours may wait for them); a compiled step compiles on its first frames.
            frame = np.full((size, size, 3), 128, np.uint8)
            tracker.track(frame, [prompts.Prompt(1, points=[[size / 2, size / 2]], labels=[1])])
            tracker.track(frame)
            tracker.reset()
        took = ("the process's shared model, already loaded and warm" if warm else
                f'loaded in {loaded - start:.1f} s, warmed up in {time.perf_counter() - loaded:.1f} s')
        self.get_logger().info(
            f"model {p['model']} ({checkpoint or 'official SAM 2.1 checkpoint'}) at {size} px on "
            f"{tracker.device} ({tracker.dtype}, {self._backend} encoder, {self._step_backend} step, compile "
            f"{p['compile']}): {took}")
        return tracker

    @_logged
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.p = params.current(self)  # input parameters may have changed while inactive
        self.frames.set_policy(p['frame_policy'])
        qos = image_qos(p['image_qos'], p['qos_depth'])
        if p['image_transport'] == 'compressed':
            self._subs.append(self.create_subscription(
                CompressedImage, 'image/compressed', lambda m: self._on_image(m, True), qos))
        else:
            self._subs.append(self.create_subscription(
                Image, 'image', lambda m: self._on_image(m, False), qos))
        self._subs.append(self.create_subscription(ImageMarker, '~/prompt', self._on_marker, PROMPT_QOS))
        self._subs.append(self.create_subscription(Image, '~/prompt_mask', self._on_prompt_mask, PROMPT_QOS))
        self._subs.append(self.create_subscription(Point, '~/click', self._on_click, PROMPT_QOS))
        if self._vision is not None:
            self._subs.append(self.create_subscription(
                self._vision.Detection2DArray, '~/prompt_boxes', self._on_prompt_boxes, PROMPT_QOS))
        # A new worker with its own stop event: one stopped by a deactivate just before may
        # still be finishing its frame (deactivate does not wait for it), and stops after it.
        self._stop = stop = threading.Event()
        if self._shared is not None:  # the process's one worker tracks this camera's frames too
            self._shared.worker.attach(self, stop)
        else:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._worker = threading.Thread(target=self._work, args=(stop,), name='sam2_worker', daemon=True)
            self._workers.append(self._worker)
            self._worker.start()
        self._state = 'active'
        topic = self.resolve_topic_name(
            'image/compressed' if p['image_transport'] == 'compressed' else 'image')
        self.get_logger().info(f"tracking frames from {topic} ({p['image_qos']}, depth {p['qos_depth']}, "
                               f"frame_policy {p['frame_policy']})")
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        self.stop_worker(timeout=None)  # a frame in progress finishes on its own, unpublished
        self.frames.clear()
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.on_deactivate(state)
        self._release()
        self._state = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f'error in state {state.label}: cleaning up')
        self.on_shutdown(state)
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Destroy publishers, services and timers; drop the tracker and free its memory."""
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        self.stop_worker(timeout=None)
        for srv in self._own_services:
            self.destroy_service(srv)
        self._own_services.clear()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        for pub in list(self._pubs.values()) + list(self._object_pubs.values()) + list(self._polygon_pubs.values()):
            self.destroy_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._pubs.clear()
        self._object_pubs.clear()
        self._polygon_pubs.clear()
        self._reuse.clear()
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        self.prompts.clear()
        self._jobs.clear()
        # now if no frame is in progress, else by the worker once its frame is done
        self._run_or_queue(self._drop_tracker)

    def _drop_tracker(self) -> None:
        """Forget the tracker and free its memory (under the tracker lock)."""
        tracker, self.tracker = self.tracker, None
        self._forget_stream(new_timeline=True)
        if tracker is not None:
            device = tracker.device
            del tracker
            import gc

            gc.collect()
            if device.type == 'cuda':
                import torch

                torch.cuda.empty_cache()

    def stop_worker(self, timeout: Optional[float] = 30.0) -> bool:
        """Tell the inference thread to stop after its current frame (it publishes nothing
        more). ``timeout`` None: return at once (callbacks never wait for a frame); else wait
        up to ``timeout`` s for every worker started so far. False if one is still running."""
        self._stop.set()
        self._worker = None
        if self._shared is not None:  # the shared worker drops this camera (the others go on)
            return self._shared.worker.detach(self, timeout)
        self.frames.wake()
        if timeout is None:
            return not any(w.is_alive() for w in self._workers)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers = [w for w in self._workers if w.is_alive()]
        return not self._workers

    # ------------------------------------------------------------------ commands
    def _run_or_queue(self, command) -> bool:
        """Run ``command()`` under the tracker lock now if the lock is free, else queue it for
        the holder (the worker, mid-frame) to run before it lets go. Never waits. Commands run
        in the order they were given. Returns True if it ran now."""
        with self._commands_lock:
            if not self._lock.acquire(blocking=False):
                self._commands.append(command)
                return False
            self._commands.append(command)
        self._release_tracker_lock()
        return True

    def _release_tracker_lock(self) -> None:
        """Run the queued commands, then release the tracker lock (held by the caller). The
        queue is checked empty and the lock released under the commands lock, so a command
        queued meanwhile is never left behind."""
        while True:
            with self._commands_lock:
                if not self._commands:
                    self._lock.release()
                    return
                command = self._commands.popleft()
            try:
                command()
            except Exception as error:  # noqa: BLE001 - one failed command must not stop the others
                self.stats.count('frame_errors', error=f'command failed: {type(error).__name__}: {error}')
                self.get_logger().error(f'command failed: {type(error).__name__}: {error}')

    def _tracker_locked(self):
        """Context manager: hold the tracker lock (waiting for it: worker thread only), running
        the commands queued meanwhile before letting go."""
        import contextlib

        @contextlib.contextmanager
        def held():
            self._lock.acquire()
            try:
                yield
            finally:
                self._release_tracker_lock()
        return held()

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg, compressed: bool) -> None:
        self.stats.count('received')
        self.prompts.note_frame(prompts.stamp_to_ns(msg.header.stamp))
        self.frames.put((msg, compressed, time.perf_counter()))

    def _on_marker(self, msg: ImageMarker) -> None:
        try:
            op = prompts.marker_to_op(msg)
        except prompts.PromptMessageError as error:
            self._bad_prompt('~/prompt', str(error))
            return
        except Exception as error:  # noqa: BLE001 - a message must never stop the node
            self._bad_prompt('~/prompt', f'unexpected {type(error).__name__}: {error}')
            return
        self.prompts.push(op)

    def _on_prompt_mask(self, msg: Image) -> None:
        try:
            labels = conversions.image_to_labels(msg, max_pixels=self.p['max_image_pixels'])
            ops = prompts.labels_to_ops(labels, prompts.stamp_to_ns(msg.header.stamp),
                                        max_ids=self.p['max_objects'])
            for op in ops:
                prompts.check_id(op.obj_id)
        except (conversions.ConversionError, prompts.PromptMessageError) as error:
            self._bad_prompt('~/prompt_mask', str(error))
            return
        except Exception as error:  # noqa: BLE001 - a message must never stop the node
            self._bad_prompt('~/prompt_mask', f'unexpected {type(error).__name__}: {error}')
            return
        for op in ops:
            self.prompts.push(op)

    def _on_click(self, msg: Point) -> None:
        # Not under the tracker lock (that would wait for the frame in progress): the last id
        # given to a click is remembered, so a click whose prompt the worker has just taken
        # (no longer pending, not yet tracked) is not given again.
        used = set(self._ids) | self.prompts.pending_ids() | {self._last_click_id}
        try:
            obj_id = prompts.next_free_id(used)
            op = prompts.click_to_op(msg, obj_id)
        except prompts.PromptMessageError as error:
            self._bad_prompt('~/click', str(error))
            return
        self._last_click_id = obj_id
        self.prompts.push(op)
        self.get_logger().info(f'click at ({msg.x:.0f}, {msg.y:.0f}): new object {obj_id}')

    def _on_prompt_boxes(self, msg) -> None:
        """Detections (vision_msgs/Detection2DArray) -> box prompts, by the ``reseed`` policy
        (matching and policy: :mod:`sam2_ros.tracking.reseed`)."""
        try:
            boxes, scores, classes = detections.to_arrays(msg)
        except (ValueError, TypeError, AttributeError) as error:
            self._bad_prompt('~/prompt_boxes', f'cannot read the detections: {error}')
            return
        stamp = prompts.stamp_to_ns(msg.header.stamp)
        with self._reseed_lock:
            tracked = dict(self._tracked)
            pending = self.prompts.pending_ids()
            free = max(0, self.p['max_objects'] - len(set(tracked) | pending))
            plan = self._reseeder.plan(boxes, scores, classes, tracked, self._frame_count, free)
            used = set(self._ids) | pending | {self._last_click_id}
            ops = [prompts.PromptOp('add', oid, prompts.Prompt(oid, box=box), None, stamp, '~/prompt_boxes')
                   for oid, box, _ in plan.reprompt]
            for box, cls, _ in plan.new:
                oid = prompts.next_free_id(used)
                used.add(oid)
                self._last_click_id = oid
                ops.append(prompts.PromptOp('add', oid, prompts.Prompt(oid, box=box), cls, stamp, '~/prompt_boxes'))
                self._reseeder.started(oid, box, cls, self._frame_count)
        for op in ops:
            self.prompts.push(op)
        if ops:
            again = ', '.join(str(o) for o, _, _ in plan.reprompt) or 'none'
            new = ', '.join(str(o.obj_id) for o in ops[len(plan.reprompt):]) or 'none'
            self.log('info', 'prompt_boxes', f'~/prompt_boxes: {len(boxes)} detection(s): objects prompted '
                     f'again with their box: {again}; new objects: {new} (reseed: {self.p["reseed"]})')

    def _on_track_everything(self, request, response):
        """Segment everything on the latest tracked frame and track each mask found (largest
        first, up to max_objects), as mask prompts on that frame.

        Answered at once: the work (seconds on a CPU) is queued for the worker thread, which
        runs it between two frames and logs the result (``track_everything: started ...``).
        Calls while one is waiting are answered as covered by it."""
        tracker, last = self.tracker, self._last_frame
        if self._state != 'active' or tracker is None:
            response.success, response.message = False, f'the node is {self._state}: activate it first'
        elif last is None:
            response.success, response.message = False, 'no frame tracked yet: send images first'
        elif len(set(self._ids) | self.prompts.pending_ids()) >= tracker.max_objects:
            response.success = False
            response.message = f'max_objects ({tracker.max_objects}) objects are tracked already'
        elif self._jobs:
            response.success = True
            response.message = 'already queued: the segment-everything run waiting covers this request'
        else:
            self._jobs.append(self._track_everything)
            self.frames.wake()
            response.success = True
            response.message = ('queued: segmenting everything on the latest tracked frame (stamped '
                                f'{prompts.format_stamp(prompts.stamp_to_ns(last[1].stamp))}) between two '
                                'frames; the new objects start on that frame and are logged')
        if not response.success:  # rate-limited: a burst of refused calls is one line
            self.log('info', 'track_everything:' + response.message[:20], f'track_everything: {response.message}')
        return response

    def _track_everything(self) -> None:
        """The work of ~/track_everything (worker thread, tracker lock held)."""
        from sam2_ros.image.automatic import AutomaticMaskGenerator
        from sam2_ros.tracking.reseed import select_new_masks

        p = self.p
        tracker, last = self.tracker, self._last_frame
        if tracker is None or last is None:
            self.get_logger().info('track_everything: started 0 objects: no frame tracked since the reset')
            return
        rgb, header, index, label = last
        free = tracker.max_objects - len(tracker.object_ids)
        if free <= 0:
            self.get_logger().info(f'track_everything: started 0 objects: max_objects ({tracker.max_objects}) '
                                   'objects are tracked already')
            return
        start = time.perf_counter()
        generator = AutomaticMaskGenerator(
            tracker.model, points_per_side=p['everything_points_per_side'],
            points_per_batch=p['everything_points_per_batch'], pred_iou_thresh=p['everything_pred_iou_thresh'],
            stability_score_thresh=p['everything_stability_score_thresh'],
            box_nms_thresh=p['everything_box_nms_thresh'],
            min_mask_region_area=p['everything_min_mask_region_area'])
        records = generator.generate(rgb)
        ids = [i for i in np.unique(label) if i]
        existing = np.stack([label == i for i in ids]) if ids else None
        chosen = select_new_masks(records, existing, free, p['everything_min_area'])
        used = set(tracker.object_ids) | self.prompts.pending_ids() | {self._last_click_id}
        new = []
        for mask in chosen:
            oid = prompts.next_free_id(used)
            used.add(oid)
            new.append(prompts.Prompt(oid, mask=mask))
        if new:
            self._last_click_id = new[-1].obj_id
        where = 'on the latest frame'
        if new and index in tracker.buffered_frames:
            tracker.prompt_past(index, new)
            self._ids = list(tracker.object_ids)
        elif new:
            stamp = prompts.stamp_to_ns(header.stamp)
            for pr in new:
                self.prompts.push(prompts.PromptOp('add', pr.obj_id, pr, None, stamp, '~/track_everything'))
            where = 'from the next frame (prompt_buffer is 0)'
        took = time.perf_counter() - start
        if new:
            message = (f'started {len(new)} object(s) {where}: ids {new[0].obj_id} to {new[-1].obj_id} '
                       f'({len(records)} mask(s) found in {took:.1f} s)')
        else:
            message = f'started 0 objects: {len(records)} mask(s) found in {took:.1f} s, none new and large enough'
        self.get_logger().info(f'track_everything: {message}')

    def _on_reset(self, request, response):
        """Drop every object. Answered at once: applied now if no frame is being tracked, else
        as soon as that frame is done, before the next one. Prompts waiting now are dropped
        too; prompts that arrive after this call are kept (they come after the reset)."""
        n = len(set(self._ids))
        self.prompts.clear()
        self._jobs.clear()  # a segment-everything run asked for before the reset is dropped too
        self._last_click_id = 0  # clicks from now on start again from id 1
        self._ids = []

        def reset() -> None:
            if self.tracker is not None:
                self.tracker.reset()
            self._labels.clear()
            self._ids = []
            self._forget_stream(new_timeline=False)
            self._frame_hw = None
            self._last_frame = None  # segment everything waits for a frame after the reset
        now = self._run_or_queue(reset)
        response.success = True
        response.message = f'dropped {n} object(s)' + (
            '' if now else ' (a frame was being tracked: applied as soon as it is done, before the next frame)')
        self.log('info', 'reset', f'reset: {response.message}')
        return response

    def _bad_prompt(self, source: str, reason: str) -> None:
        self.stats.count('prompt_errors', error=f'{source}: {reason}')
        self.log('warning', source + re.sub(r'\d+', '#', reason), f'{source}: prompt skipped: {reason}')

    def _forget_stream(self, new_timeline: bool) -> None:
        """The tracker was reset (or is new): forget its frames and objects' states
        (``new_timeline``: also the stamps seen, after a jump back in time)."""
        if new_timeline:
            self._timeline.reset()
        else:
            self._timeline.forget_frames()
        self._object_states.clear()
        with self._reseed_lock:
            self._reseeder.reset()
            self._tracked = {}
        self._state_snapshot = {}

    def _watch_clock(self) -> None:
        """Notice /clock going back (use_sim_time with a bag replayed in a loop)."""
        from rclpy.clock import JumpThreshold
        from rclpy.duration import Duration

        if self._jump_handle is None:
            threshold = JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=False)
            self._jump_handle = self.get_clock().create_jump_callback(threshold, post_callback=self._on_clock_jump)

    def _on_clock_jump(self, jump) -> None:
        if jump.delta.nanoseconds < 0:
            self._timeline.clock_jumped()
            self.log('warning', 'clock_jump', f'/clock went back by {-jump.delta.nanoseconds / 1e9:.3f} s: the next '
                     'frame stamped before the last tracked one starts a new timeline (the tracker is reset)')

    def _time_jump(self, tracker, stamp: int) -> None:
        """Time went back (see sam2_ros.ros.timeline): start again."""
        last = self._timeline.last_stamp
        n = len(tracker.object_ids)
        waiting = len(self.prompts)
        tracker.reset()
        self.prompts.clear()
        self._labels.clear()
        self._ids = []
        self._forget_stream(new_timeline=True)
        self.stats.count('time_jumps')
        self.get_logger().warning(
            f'time jumped back from {prompts.format_stamp(last)} to {prompts.format_stamp(stamp)} (a bag replayed in a loop, '
            f'a simulator reset?): tracker reset, {n} object(s) and {waiting} waiting prompt(s) dropped')

    def _apply_past(self, tracker, past: Dict[int, List], hw) -> List:
        """Prompts stamped with frames in the prompt buffer: applied to those frames. Returns
        the prompts whose frame has just left the buffer (prompt_buffer made smaller): they go
        to the next frame."""
        from sam2_ros.tracking.tracker import FrameNotBuffered

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
                self._bad_prompt(ops[0].source, str(error))
                continue
            self.stats.count('prompts_past', len(chosen))
            self.log('info', 'prompt_past', f'{len(chosen)} prompt(s) (object(s) '
                     f'{", ".join(str(p.obj_id) for p in chosen)}) applied to the frame stamped '
                     f'{prompts.format_stamp(ops[0].stamp_ns)}, {tracker.frame_index - index} frame(s) before '
                     'the last tracked one')
        return late

    # ------------------------------------------------------------------ worker
    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self._jobs:
                self.run_jobs(stop)
                continue
            item = self.frames.get(timeout=0.2)
            if item is None or stop.is_set():
                continue
            try:
                self._process(*item, stop=stop)
            except Exception as error:  # noqa: BLE001 - keep tracking; say what happened
                if not self.frame_failed(error, stop):
                    return

    def frame_failed(self, error: Exception, stop: threading.Event) -> bool:
        """A frame raised ``error``: count and log it. False when the node is stopping (the
        error is then only a sign of it: publishers may be gone)."""
        if stop.is_set() or not rclpy.ok(context=self.context):
            return False
        self.stats.count('frame_errors', error=f'frame skipped: {type(error).__name__}: {error}')
        self.log('error', f'frame:{type(error).__name__}', f'frame skipped: {type(error).__name__}: {error}')
        return True

    def run_jobs(self, stop: threading.Event) -> None:
        """Long requests (segment everything) waiting for the worker, between two frames."""
        while self._jobs and not stop.is_set():
            job = self._jobs.popleft()
            try:
                with self._tracker_locked():
                    job()
            except Exception as error:  # noqa: BLE001 - keep tracking; say what happened
                self.stats.count('frame_errors', error=f'request failed: {type(error).__name__}: {error}')
                self.get_logger().error(f'request failed: {type(error).__name__}: {error}')

    def _process(self, msg, compressed: bool, received: float, stop: Optional[threading.Event] = None) -> None:
        frame = self.prepare(msg, compressed, received)
        if frame is not None:
            self.track_prepared(frame, stop)

    def prepare(self, msg, compressed: bool, received: float) -> Optional[Tuple]:
        """First half of a frame: the message converted to RGB (no tracker lock: the shared
        worker converts every camera's frame before encoding them together). None when the
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
        return msg, rgb, received, t0, time.perf_counter()

    def track_prepared(self, frame: Tuple, stop: Optional[threading.Event] = None, features=None) -> None:
        """Second half of a frame from :meth:`prepare`: prompts, tracking, publishing.
        ``features``: the frame's image features, encoded already with the other cameras'
        frames (``Tracker.encode``); None: the tracker encodes it."""
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
        with self._tracker_locked():
            tracker = self.tracker
            if tracker is None or (stop is not None and stop.is_set()):
                return
            verdict = self._timeline.check(stamp)
            if verdict == 'out_of_order':
                last = self._timeline.last_stamp
                self.stats.count('out_of_order')
                self.log('warning', 'out_of_order', f'frame stamped {prompts.format_stamp(stamp)} is {(last - stamp) / 1e9:.3f} s '
                         f'older than the last tracked frame ({prompts.format_stamp(last)}): dropped (frames are tracked in '
                         f'time order; more than time_jump_threshold = {self._timeline.jump_threshold_s} s back '
                         'resets the tracker instead)')
                return
            if verdict == 'jump':
                self._time_jump(tracker, stamp)
            if self._frame_hw is not None and hw != self._frame_hw:
                n = len(tracker.object_ids)
                tracker.reset()
                self._labels.clear()
                self._forget_stream(new_timeline=False)
                change = f'image size changed from {self._frame_hw[1]}x{self._frame_hw[0]} to {hw[1]}x{hw[0]}'
                if n:
                    self.get_logger().warning(f'{change}: tracker reset, {n} object(s) dropped '
                                              '(prompt them again)')
                else:
                    self.get_logger().info(change)
            self._frame_hw = hw
            batch = self.prompts.take(stamp, buffered=self._timeline.buffered())
            for text in batch.warnings:
                self.log('warning', re.sub(r'\d+', '#', text), text)
            for op in batch.removes:
                if tracker.remove_object(op.obj_id):
                    self.get_logger().info(f'object {op.obj_id} removed')
                else:
                    self._bad_prompt(op.source, f'remove: object {op.obj_id} is not tracked')
                self._labels.pop(op.obj_id, None)
            late = self._apply_past(tracker, batch.past, hw)
            frame_prompts = self._checked_prompts(tracker, batch.adds + late, hw)
            t2 = time.perf_counter()
            result = yield tracker, rgb, frame_prompts, features
            if isinstance(result, prompts.PromptError):  # safety net: prompts were checked above
                self._bad_prompt('prompt', str(result))
                result = tracker.track(rgb, features=features)
            t3 = time.perf_counter()
            ids = list(result.object_ids)
            self._ids = ids
            labels = dict(self._labels)
            self._timeline.tracked(stamp, result.frame_index, tracker.buffered_frames)
            self._frame_count += 1
        if stop is not None and stop.is_set():
            return  # deactivated or shutting down while this frame was tracked: nothing goes out
        self._publish(msg.header, rgb, result, ids, labels)
        t4 = time.perf_counter()
        # latency: steady clock inside the node; stamp age: the node's clock (sim time with
        # use_sim_time) against the image's stamp
        now_ns = self.get_clock().now().nanoseconds
        # now 0: use_sim_time before the first /clock, no time to measure an age against
        age = (now_ns - stamp) / 1e9 if stamp and now_ns else None
        self.stats.frame_done(t4 - received, {'convert': t1 - t0, 'track': t3 - t2, 'publish': t4 - t3,
                                              'ros': (t1 - t0) + (t4 - t3)}, len(ids), stamp_age_s=age)

    def _checked_prompts(self, tracker, ops, hw) -> List:
        """Prompts of this frame that the tracker will accept (bad ones are logged and skipped)."""
        out = []
        count = len(tracker.object_ids)
        for op in ops:
            try:
                note = prompts.fit_to_frame(op, hw)  # clips boxes reaching past the border
            except prompts.PromptError as error:
                self._bad_prompt(op.source, str(error))
                continue
            if note:
                self.log('warning', 'clip' + op.source, note)
            if op.obj_id not in tracker.object_ids:
                if count >= tracker.max_objects:
                    self._bad_prompt(op.source, f'object {op.obj_id} would be object {count + 1}; '
                                     f'max_objects is {tracker.max_objects}: remove objects first or '
                                     'raise max_objects')
                    continue
                count += 1
            if op.label:
                self._labels[op.obj_id] = op.label
            out.append(op.prompt)
        return out

    # ------------------------------------------------------------------ outputs
    def _publish(self, header, rgb: np.ndarray, result, ids: List[int], labels: Dict[int, str]) -> None:
        from sam2_ros.visualization import label_image, overlay

        threshold = result.mask_threshold
        masks = None

        def get_masks():
            nonlocal masks
            if masks is None:
                masks = (result.logits > threshold).numpy() if ids else np.zeros((0,) + rgb.shape[:2], bool)
            return masks

        scores = result.scores.numpy() if ids else np.zeros(0)
        states = self._update_states(ids, scores, get_masks, labels)  # before anything goes out
        label = label_image(result.logits, ids, threshold)
        self._reuse['masks'] = msg = conversions.label_to_image(label, header, reuse=self._reuse.get('masks'))
        self._pubs['masks'].publish(msg)
        self._last_frame = (rgb, header, result.frame_index, label)  # for ~/track_everything

        self._sync_object_publishers(ids)
        if self.p['publish_object_masks']:
            for k, obj_id in enumerate(ids):
                pub = self._object_pubs[obj_id]
                if pub.get_subscription_count() == 0:
                    continue
                key = f'object_{obj_id}'
                m = conversions.mask_to_image(get_masks()[k], header, reuse=self._reuse.get(key))
                self._reuse[key] = m
                pub.publish(m)
        det_pub = self._pubs.get('detections')
        if det_pub is not None and det_pub.get_subscription_count() > 0:
            last_boxes = {o: t.box for o, t in self._tracked.items()}
            det_pub.publish(detections.build(self._vision, header, ids, get_masks(), scores, labels,
                                             states=states, last_boxes=last_boxes))
        if self.p['publish_polygons']:
            from sam2_ros.image.polygons import largest_polygon

            for k, obj_id in enumerate(ids):
                pub = self._polygon_pubs[obj_id]
                if pub.get_subscription_count() == 0:
                    continue
                ring = largest_polygon(get_masks()[k], tolerance=self.p['polygon_tolerance'])
                poly = PolygonStamped()
                poly.header = header
                poly.polygon.points = [Point32(x=float(x), y=float(y), z=0.0) for x, y in ring]
                pub.publish(poly)
        pub = self._pubs['overlay']
        if self.p['publish_overlay'] and pub.get_subscription_count() > 0:
            image = overlay(rgb, get_masks(), ids, scores=scores, labels=labels)
            m = conversions.rgb_to_bgr8_image(image, header, reuse=self._reuse.get('overlay'))
            self._reuse['overlay'] = m
            pub.publish(m)

    def _sync_object_publishers(self, ids: List[int]) -> None:
        """One ``~/object_<id>/mask`` publisher per tracked object (while publish_object_masks),
        and one ``~/object_<id>/polygon`` (while publish_polygons)."""
        wanted = set(ids) if self.p['publish_object_masks'] else set()
        for obj_id in list(self._object_pubs):
            if obj_id not in wanted:
                self.destroy_publisher(self._object_pubs.pop(obj_id))
                self._reuse.pop(f'object_{obj_id}', None)
        for obj_id in wanted - set(self._object_pubs):
            self._object_pubs[obj_id] = self.create_publisher(Image, f'~/object_{obj_id}/mask', OUTPUT_QOS)
        wanted = set(ids) if self.p['publish_polygons'] else set()
        for obj_id in list(self._polygon_pubs):
            if obj_id not in wanted:
                self.destroy_publisher(self._polygon_pubs.pop(obj_id))
        for obj_id in wanted - set(self._polygon_pubs):
            self._polygon_pubs[obj_id] = self.create_publisher(PolygonStamped, f'~/object_{obj_id}/polygon', OUTPUT_QOS)

    def _update_states(self, ids: List[int], scores: np.ndarray, get_masks, labels: Dict[int, str]) -> Dict[int, str]:
        """Object states after this frame (sam2_ros.tracking.object_state); with vision_msgs, also each
        object's box (its mask's, else its last one) for ~/detections and ~/prompt_boxes."""
        boxes = [detections.mask_box(m) for m in get_masks()] if self._vision is not None else None
        states = self._object_states.update(ids, scores, boxes)
        tracked = {}
        for k, obj_id in enumerate(ids):
            st = self._object_states.get(obj_id)
            box = boxes[k] if boxes is not None and boxes[k] is not None else st.last_box
            tracked[obj_id] = Tracked(box, states[obj_id], labels.get(obj_id))
        with self._reseed_lock:
            self._tracked = tracked
        self._state_snapshot = {o: (states[o], float(scores[k])) for k, o in enumerate(ids)}
        return states

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        tracker = self.tracker
        p = self.p
        extra = {'model': p['model'], 'image_size': p['image_size'], 'frame_policy': p['frame_policy'],
                 'encoder_backend': self._backend,
                 'device': str(tracker.device) if tracker is not None else p['device'],
                 'prompts_pending': len(self.prompts), 'prompts_dropped': self.prompts.dropped,
                 'clock': 'sim (/clock)' if self.get_parameter('use_sim_time').value else 'system'}
        states = self._state_snapshot
        for name in ('visible', 'occluded', 'lost'):
            extra[f'objects_{name}'] = sum(1 for st, _ in states.values() if st == name)
        for obj_id, (st, score) in sorted(states.items()):
            extra[f'object_{obj_id}'] = f'{st} ({score:.2f})'
        extra.update(device_memory(tracker.device if tracker is not None else None))
        if self._shared is not None:  # one camera of several: what the process's worker did
            worker = self._shared.worker
            extra['cameras_attached'] = worker.attached
            extra['frames_batched'] = worker.batched_frames
        stamp = diagnostics_stamp(self.get_clock())
        if stamp is None:  # use_sim_time before the first /clock: see diagnostics_stamp
            return
        array = to_diagnostic_array(f'{self.get_fully_qualified_name()}: tracking',
                                    extra['device'], self._state, self.stats.snapshot(), extra,
                                    stamp)
        self._diag_pub.publish(array)


# ---------------------------------------------------------------------------------------------
# main

def main(args=None) -> int:
    """Entry point of ``tracker_node`` and ``python -m sam2_ros``: run the node until SIGINT or
    SIGTERM, then stop cleanly. With ``--cameras A B ...``: one node per camera in this process,
    sharing one model and one worker (:func:`sam2_ros.ros.multi.main`).

    Exit status: 0 after a clean stop; 1 when the node cannot configure or activate with
    ``autostart`` (unknown model, missing checkpoint, ...: the reason is logged); 2 for invalid
    parameters at start-up; 128 + N when a second signal N came more than ``SIGNAL_GRACE_S``
    after the first (the user insisting: exit at once). A repeat within the grace period is the
    same request delivered twice and is ignored."""
    from rclpy.signals import SignalHandlerOptions

    from sam2_ros.ros.usage import print_usage, wants_help

    argv = sys.argv[1:] if args is None else list(args)
    if wants_help(argv):
        print_usage()
        return 0
    from sam2_ros.ros import multi

    try:
        cameras, rest = multi.split_cameras(argv)
    except multi.CameraArgumentError as error:
        print(f'[{NODE_NAME}] {error}', file=sys.stderr, flush=True)
        return EXIT_BAD_PARAMETERS
    if cameras is not None:  # several cameras, one model: one node per camera in this process
        return multi.main(cameras, rest)
    stop, first_at, ignored = install_signal_handlers()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = EXIT_OK
    try:
        try:
            node = TrackerNode()
        except params.ParameterError as error:
            print(f'[{NODE_NAME}] {error}', file=sys.stderr, flush=True)
            return EXIT_BAD_PARAMETERS
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if not autostart(node, stop):
            return EXIT_CONFIGURE_FAILED
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        if stop.is_set():
            node.get_logger().info('signal received: shutting down')
    finally:
        nodes = [node] if node is not None else []
        close_nodes(nodes, all(n.stop_worker(timeout=10.0) for n in nodes), code, first_at, ignored)
    return code


def close_nodes(nodes: List['TrackerNode'], finished: bool, code: int, first_at: List[float],
                ignored: List[int]) -> None:
    """The end of a node process: exit at once with ``code`` if an inference thread did not
    stop (``finished`` False: it could hang the interpreter's exit), else destroy the nodes;
    then the signal rules of the interpreter's exit (:func:`finish_signals`)."""
    if not finished:
        print(f'[{NODE_NAME}] the inference thread did not stop within 10 s; exiting anyway',
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)
    for node in nodes:
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
    finish_signals(first_at, ignored)


def autostart(node: TrackerNode, stop: threading.Event) -> bool:
    """Configure and activate ``node`` if its ``autostart`` parameter says so (and no signal
    came first); False, with the reason logged, when a transition failed."""
    if not node.p['autostart']:
        return True
    for step, trigger in (('configure', node.trigger_configure), ('activate', node.trigger_activate)):
        if stop.is_set():
            break
        if trigger() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal(f'autostart: {step} failed (reason above); exiting with status '
                                    f'{EXIT_CONFIGURE_FAILED}')
            return False
    return True


def install_signal_handlers() -> Tuple[threading.Event, List[float], List[int]]:
    """SIGINT and SIGTERM handlers for a node process (see :func:`main` for the rules): returns
    the event set by the first signal, the time of that signal (a list, empty until then) and
    the signals ignored as repeats. Installed for the rest of the process, never restored."""
    stop = threading.Event()
    first_at: List[float] = []  # monotonic time of the first signal
    ignored: List[int] = []  # signals repeated within the grace period

    def on_signal(signum, frame):
        now = time.monotonic()
        if not first_at:
            first_at.append(now)
            stop.set()
            return
        if now - first_at[0] < SIGNAL_GRACE_S:
            ignored.append(signum)
            return
        os.write(2, f'[{NODE_NAME}] {signal.Signals(signum).name} again {now - first_at[0]:.1f} s after the '
                 f'first signal: exiting at once ({128 + signum})\n'.encode())
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return stop, first_at, ignored


def finish_signals(first_at: List[float], ignored: List[int]) -> None:
    """At the end of a node process: say which repeated signals were ignored, shut rclpy down,
    and ignore further signals while the interpreter exits."""
    if ignored:
        names = ', '.join(signal.Signals(n).name for n in ignored)
        print(f'[{NODE_NAME}] ignored {names} repeated within {SIGNAL_GRACE_S} s of the first signal '
              '(the same request delivered twice, e.g. by ros2 launch and the process group)',
              file=sys.stderr, flush=True)
    rclpy.try_shutdown()
    # Stopped: what is left is the interpreter's exit, during which Python puts the default
    # handlers back, so that a repeat arriving then would kill the process (status -2,
    # launch's "process has died"). Ignore both signals from here: exiting is under way.
    if first_at:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


if __name__ == '__main__':
    sys.exit(main())
