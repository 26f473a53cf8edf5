"""The ``sam2_tracker`` node: camera frames and prompts in, masks and ids out.

A lifecycle node (rclpy.lifecycle):

* configure: read and check the parameters, load the model, warm it up, create the publishers;
* activate: subscribe to the image and the prompts, start the inference thread;
* deactivate: unsubscribe, stop the thread (tracked objects are kept);
* cleanup: drop the tracker and free the model's (GPU) memory.

With ``autostart`` (default) the node configures and activates itself, so ``ros2 run`` and
``ros2 launch`` simply work; when the model cannot be loaded it then exits with the reason.

Threads: message callbacks only queue work; one worker thread converts, tracks and publishes.
``frame_policy: latest`` keeps only the newest frame waiting (older ones are dropped and
counted), ``all`` keeps every frame in order. Prompt timing: see :mod:`sam2_ros.ros.prompts`.
A change of image size resets the tracker with a warning (objects are tied to the old view).

Topics, services and parameters: README.md and DESIGN.md ("Contract: ROS 2 interface").
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Dict, List, Optional, Tuple

import numpy as np

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_system_default)

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import ImageMarker

from sam2_ros.ros import conversions, detections, params, prompts
from sam2_ros.ros.diagnostics import Stats, device_memory, to_diagnostic_array

NODE_NAME = 'sam2_tracker'
ALL_POLICY_QUEUE_LIMIT = 500  # frames waiting with frame_policy: all (then the oldest go)
LOG_INTERVAL_S = 5.0  # the same warning at most once per interval
PROMPT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# Reliable publishers serve reliable and best-effort subscribers alike.
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


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
        getattr(self._logger, level)(text)


class FrameQueue:
    """Frames waiting for the worker: the newest only (``latest``) or all in order (``all``)."""

    def __init__(self, stats: Stats) -> None:
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._stats = stats
        self.policy = 'latest'

    def put(self, item) -> int:
        """Queue a frame; returns how many frames were dropped for it."""
        with self._cond:
            dropped = 0
            if self.policy == 'latest':
                dropped = len(self._items)
                self._items.clear()
            elif len(self._items) >= ALL_POLICY_QUEUE_LIMIT:
                self._items.popleft()
                dropped = 1
            self._items.append(item)
            self._cond.notify()
        if dropped:
            self._stats.count('dropped', dropped)
        return dropped

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

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.log = RateLimitedLog(self.get_logger())
        self.p = params.declare(self)  # ParameterError on bad overrides
        self.add_on_set_parameters_callback(params.make_callback(self._state_label, self._apply_live))

        self.stats = Stats()
        self.frames = FrameQueue(self.stats)
        self.frames.policy = self.p['frame_policy']
        self.prompts = prompts.PromptQueue(self.p['prompt_buffer'])
        self._lock = threading.Lock()  # the tracker and what goes with it (labels, size, ids)
        self.tracker = None
        self._labels: Dict[int, str] = {}  # object id -> class label (ImageMarker.ns)
        self._ids: List[int] = []  # tracked ids after the last frame (for clicks)
        self._last_click_id = 0
        self._frame_hw: Optional[Tuple[int, int]] = None
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
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

    # ------------------------------------------------------------------ parameters / state
    def _state_label(self) -> str:
        return self._state

    def _apply_live(self, values: Dict) -> None:
        self.p.update(values)
        if 'frame_policy' in values:
            self.frames.set_policy(values['frame_policy'])
        if 'prompt_buffer' in values:
            self.prompts.set_buffer(values['prompt_buffer'])
        tracker = self.tracker
        if tracker is not None:
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
            self.tracker = self._load_tracker(p)
        except Exception as error:  # noqa: BLE001 - every load error becomes a clear message
            self.get_logger().error(f'cannot configure: {type(error).__name__}: {error}')
            self.tracker = None
            return TransitionCallbackReturn.FAILURE
        self._frame_hw = None
        self._labels.clear()
        self._ids = []
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
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self._own_services.append(self.create_service(Trigger, '~/reset', self._on_reset))
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def _load_tracker(self, p: Dict):
        from sam2_ros import Tracker
        from sam2_ros.backends import make_encoder_or_fallback
        from sam2_ros.model.build import build_model, resolve_device

        checkpoint = p['checkpoint'] or None
        start = time.perf_counter()
        model = build_model(checkpoint, model=p['model'], image_size=p['image_size'],
                            device=resolve_device(p['device']))
        # a backend that cannot be used (package missing, file made for another model, size,
        # GPU or TensorRT version) falls back to torch with a warning saying why
        encoder, self._backend = make_encoder_or_fallback(
            p['encoder_backend'], model, p['encoder_engine'] or None, warn=self.get_logger().warning)
        tracker = Tracker(model, max_objects=p['max_objects'], num_maskmem=p['num_maskmem'],
                          max_cond_frames=p['max_cond_frames'], mask_threshold=p['mask_threshold'],
                          dtype=p['dtype'], encoder=encoder)
        loaded = time.perf_counter()
        # Warm-up: one prompted frame and one tracked frame, so the first camera frame is not slow.
        size = p['image_size']
        frame = np.full((size, size, 3), 128, np.uint8)
        tracker.track(frame, [prompts.Prompt(1, points=[[size / 2, size / 2]], labels=[1])])
        tracker.track(frame)
        tracker.reset()
        self.get_logger().info(
            f"model {p['model']} ({checkpoint or 'official SAM 2.1 checkpoint'}) at {size} px on "
            f'{tracker.device} ({tracker.dtype}, {self._backend} encoder): loaded in '
            f'{loaded - start:.1f} s, warmed up in {time.perf_counter() - loaded:.1f} s')
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
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name='sam2_worker', daemon=True)
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
        self.stop_worker()
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
        self.stop_worker()
        for srv in self._own_services:
            self.destroy_service(srv)
        self._own_services.clear()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        for pub in list(self._pubs.values()) + list(self._object_pubs.values()):
            self.destroy_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._pubs.clear()
        self._object_pubs.clear()
        self._reuse.clear()
        with self._lock:
            tracker, self.tracker = self.tracker, None
        self.prompts.clear()
        if tracker is not None:
            device = tracker.device
            del tracker
            import gc

            gc.collect()
            if device.type == 'cuda':
                import torch

                torch.cuda.empty_cache()

    def stop_worker(self, timeout: float = 30.0) -> bool:
        """Stop the inference thread; False if it did not finish within ``timeout``."""
        worker = self._worker
        if worker is None:
            return True
        self._stop.set()
        self.frames.wake()
        worker.join(timeout)
        if worker.is_alive():
            return False
        self._worker = None
        return True

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
        self.prompts.push(op)

    def _on_prompt_mask(self, msg: Image) -> None:
        try:
            labels = conversions.image_to_labels(msg)
            ops = prompts.labels_to_ops(labels, prompts.stamp_to_ns(msg.header.stamp))
            for op in ops:
                prompts.check_id(op.obj_id)
        except (conversions.ConversionError, prompts.PromptMessageError) as error:
            self._bad_prompt('~/prompt_mask', str(error))
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

    def _on_reset(self, request, response):
        with self._lock:  # waits for the frame being tracked, if any
            n = len(self.tracker.object_ids) if self.tracker is not None else 0
            if self.tracker is not None:
                self.tracker.reset()
            self.prompts.clear()
            self._labels.clear()
            self._ids = []
            self._last_click_id = 0
            self._frame_hw = None
        response.success = True
        response.message = f'dropped {n} object(s)'
        self.get_logger().info(f'reset: {response.message}')
        return response

    def _bad_prompt(self, source: str, reason: str) -> None:
        self.stats.count('prompt_errors')
        self.log('warning', source + reason, f'{source}: prompt skipped: {reason}')

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.frames.get(timeout=0.2)
            if item is None or self._stop.is_set():
                continue
            try:
                self._process(*item)
            except Exception as error:  # noqa: BLE001 - keep tracking; say what happened
                if self._stop.is_set() or not rclpy.ok(context=self.context):
                    return  # shutting down: publishers may be gone
                self.log('error', f'frame:{type(error).__name__}',
                         f'frame skipped: {type(error).__name__}: {error}')

    def _process(self, msg, compressed: bool, received: float) -> None:
        t0 = time.perf_counter()
        try:
            rgb = conversions.compressed_to_rgb(msg) if compressed else conversions.image_to_rgb(msg)
        except conversions.ConversionError as error:
            self.stats.count('refused')
            self.log('warning', 'image:' + getattr(msg, 'encoding', getattr(msg, 'format', '')),
                     f'image skipped: {error}')
            return
        t1 = time.perf_counter()
        hw = rgb.shape[:2]
        stamp = prompts.stamp_to_ns(msg.header.stamp)
        with self._lock:
            tracker = self.tracker
            if tracker is None:
                return
            if self._frame_hw is not None and hw != self._frame_hw:
                n = len(tracker.object_ids)
                tracker.reset()
                self._labels.clear()
                change = f'image size changed from {self._frame_hw[1]}x{self._frame_hw[0]} to {hw[1]}x{hw[0]}'
                if n:
                    self.get_logger().warning(f'{change}: tracker reset, {n} object(s) dropped '
                                              '(prompt them again)')
                else:
                    self.get_logger().info(change)
            self._frame_hw = hw
            batch = self.prompts.take(stamp)
            for text in batch.warnings:
                self.log('warning', text, text)
            for op in batch.removes:
                if tracker.remove_object(op.obj_id):
                    self.get_logger().info(f'object {op.obj_id} removed')
                else:
                    self._bad_prompt(op.source, f'remove: object {op.obj_id} is not tracked')
                self._labels.pop(op.obj_id, None)
            frame_prompts = self._checked_prompts(tracker, batch.adds, hw)
            t2 = time.perf_counter()
            try:
                result = tracker.track(rgb, frame_prompts)
            except prompts.PromptError as error:  # safety net: prompts were checked above
                self._bad_prompt('prompt', str(error))
                result = tracker.track(rgb)
            t3 = time.perf_counter()
            ids = list(result.object_ids)
            self._ids = ids
            labels = dict(self._labels)
        self._publish(msg.header, rgb, result, ids, labels)
        t4 = time.perf_counter()
        self.stats.frame_done(t4 - received, {'convert': t1 - t0, 'track': t3 - t2, 'publish': t4 - t3,
                                              'ros': (t1 - t0) + (t4 - t3)}, len(ids))

    def _checked_prompts(self, tracker, ops, hw) -> List:
        """Prompts of this frame that the tracker will accept (bad ones are logged and skipped)."""
        out = []
        count = len(tracker.object_ids)
        for op in ops:
            try:
                op.prompt.parsed(hw)
            except prompts.PromptError as error:
                self._bad_prompt(op.source, str(error))
                continue
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
        label = label_image(result.logits, ids, threshold)
        self._reuse['masks'] = msg = conversions.label_to_image(label, header, reuse=self._reuse.get('masks'))
        self._pubs['masks'].publish(msg)

        masks = None

        def get_masks():
            nonlocal masks
            if masks is None:
                masks = (result.logits > threshold).numpy() if ids else np.zeros((0,) + rgb.shape[:2], bool)
            return masks

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
        scores = result.scores.numpy() if ids else np.zeros(0)
        det_pub = self._pubs.get('detections')
        if det_pub is not None and det_pub.get_subscription_count() > 0:
            det_pub.publish(detections.build(self._vision, header, ids, get_masks(), scores, labels))
        pub = self._pubs['overlay']
        if self.p['publish_overlay'] and pub.get_subscription_count() > 0:
            image = overlay(rgb, get_masks(), ids, scores=scores, labels=labels)
            m = conversions.rgb_to_bgr8_image(image, header, reuse=self._reuse.get('overlay'))
            self._reuse['overlay'] = m
            pub.publish(m)

    def _sync_object_publishers(self, ids: List[int]) -> None:
        """One ``~/object_<id>/mask`` publisher per tracked object (while publish_object_masks)."""
        wanted = set(ids) if self.p['publish_object_masks'] else set()
        for obj_id in list(self._object_pubs):
            if obj_id not in wanted:
                self.destroy_publisher(self._object_pubs.pop(obj_id))
                self._reuse.pop(f'object_{obj_id}', None)
        for obj_id in wanted - set(self._object_pubs):
            self._object_pubs[obj_id] = self.create_publisher(Image, f'~/object_{obj_id}/mask', OUTPUT_QOS)

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        tracker = self.tracker
        p = self.p
        extra = {'model': p['model'], 'image_size': p['image_size'], 'frame_policy': p['frame_policy'],
                 'encoder_backend': self._backend,
                 'device': str(tracker.device) if tracker is not None else p['device'],
                 'prompts_pending': len(self.prompts)}
        extra.update(device_memory(tracker.device if tracker is not None else None))
        array = to_diagnostic_array(f'{self.get_fully_qualified_name()}: tracking',
                                    extra['device'], self._state, self.stats.snapshot(), extra,
                                    self.get_clock().now().to_msg())
        self._diag_pub.publish(array)


# ---------------------------------------------------------------------------------------------
# main

def main(args=None) -> int:
    """Entry point of ``tracker_node`` and ``python -m sam2_ros``: run the node until SIGINT or
    SIGTERM, then stop cleanly (exit status 0). A second signal exits at once."""
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    try:
        try:
            node = TrackerNode()
        except params.ParameterError as error:
            print(f'[{NODE_NAME}] {error}', file=sys.stderr, flush=True)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.p['autostart'] and not stop.is_set():
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal('autostart: configure failed (reason above); exiting')
                return 1
            if not stop.is_set() and node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal('autostart: activate failed (reason above); exiting')
                return 1
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        if stop.is_set():
            node.get_logger().info('signal received: shutting down')
    finally:
        if node is not None:
            finished = node.stop_worker(timeout=10.0)
            if not finished:
                node.get_logger().warning('the inference thread did not stop within 10 s; exiting anyway')
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        rclpy.try_shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


if __name__ == '__main__':
    sys.exit(main())
