"""The ``sam2_tracker`` node: camera frames and prompts in, masks and ids out.

A lifecycle node (rclpy.lifecycle) that wires parameters, subscriptions, publishers and
services to the parts that do the work:

* configure: read and check the parameters, load the model and warm it up, create the
  publishers (:mod:`~sam2_ros.ros.outputs`) and services (:mod:`~sam2_ros.ros.services`);
* activate: subscribe to the image and the prompts (:mod:`~sam2_ros.ros.prompt_inputs`), with
  ``depth`` to the depth image and camera_info (:mod:`~sam2_ros.ros.outputs_3d`: objects in
  3-D), start the worker (:mod:`~sam2_ros.ros.stream`: frames, prompts, tracking, in its own
  thread or, with several cameras in one process, the shared one:
  :mod:`~sam2_ros.ros.shared_worker`);
* deactivate: unsubscribe, stop the worker (tracked objects are kept);
* cleanup: drop the tracker and free the model's (GPU) memory.

With ``autostart`` (default) the node configures and activates itself, so ``ros2 run`` and
``ros2 launch`` simply work; when the model cannot be loaded it then exits with the reason
(:mod:`~sam2_ros.ros.entry`, :mod:`~sam2_ros.ros.process`). Object states:
:mod:`sam2_ros.tracking.object_state`; detections as prompts (``~/prompt_boxes``):
:mod:`sam2_ros.tracking.reseed`; ``~/track_everything``: the automatic mask generator
(:mod:`sam2_ros.image.automatic`) on the latest frame.

Topics, services and parameters: README.md ("The tracker node") and config/tracker.yaml.
"""
from __future__ import annotations

import functools
import time
import traceback
from typing import Dict

import numpy as np

import rclpy
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_system_default

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import ImageMarker

from sam2_ros.ros import params, prompts
from sam2_ros.ros.diagnostics import Stats, camera_extras, diagnostics_stamp, to_diagnostic_array
from sam2_ros.ros.objects import ObjectBook
from sam2_ros.ros.outputs import Outputs
from sam2_ros.ros.outputs_3d import Outputs3D
from sam2_ros.ros.process import NODE_NAME
from sam2_ros.ros.prompt_inputs import PromptInputs
from sam2_ros.ros.rate_limited_log import RateLimitedLog
from sam2_ros.ros.services import Services
from sam2_ros.ros.stream import CameraStream
from sam2_ros.ros.text_inputs import TextInputs

PROMPT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# The node's own services: requests are answered at once, but a burst arrives faster than one
# executor turn; the default depth (10) would lose the requests beyond it (as parameter
# services, 1000 deep).
SERVICE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# depth and camera_info come as the image does (image_qos), but a few deep: their callbacks only
# store them, and a frame pairs with the one of its stamp, not the latest
DEPTH_QOS_DEPTH = 5
_LIFECYCLE_SERVICES = ('change_state', 'get_state', 'get_available_states', 'get_available_transitions',
                       'get_transition_graph')


def image_qos(kind: str, depth: int) -> QoSProfile:
    """The image subscription's QoS for the ``image_qos`` parameter."""
    if kind == 'system_default':
        return qos_profile_system_default
    reliability = ReliabilityPolicy.BEST_EFFORT if kind == 'sensor_data' else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST)


def _logged(method):
    """rclpy swallows exceptions raised in transition callbacks (the transition just fails):
    log them with the reason first."""

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
        own = all(hasattr(LifecycleNode, f'_LifecycleNodeMixin__on_{n}') for n in _LIFECYCLE_SERVICES)
        if own:
            kwargs.setdefault('enable_communication_interface', False)
        super().__init__(NODE_NAME, **kwargs)
        if own and not kwargs['enable_communication_interface']:
            from lifecycle_msgs import srv

            types = (srv.ChangeState, srv.GetState, srv.GetAvailableStates, srv.GetAvailableTransitions,
                     srv.GetAvailableTransitions)
            for name, srv_type in zip(_LIFECYCLE_SERVICES, types):
                self.create_service(srv_type, f'~/{name}', getattr(self, f'_LifecycleNodeMixin__on_{name}'),
                                    qos_profile=SERVICE_QOS)
        self.log = RateLimitedLog(self.get_logger())
        self.p = params.declare(self)  # ParameterError on bad overrides; updated in place from here on
        self.add_on_set_parameters_callback(
            params.make_callback(lambda: self._state, self._apply_live, lambda: params.current(self), self._refusal))
        self.stats = Stats()
        self.objects = ObjectBook(self.p)
        self.outputs = Outputs(self, self.p, self.objects)
        self.outputs_3d = Outputs3D(self, self.p, self.objects, self.log)
        self.stream = CameraStream(self.p, self.stats, self.log, self.get_logger(), self.objects,
                                   publish=self.outputs.publish, now_ns=lambda: self.get_clock().now().nanoseconds,
                                   alive=lambda: rclpy.ok(context=self.context), hooks=[self.outputs_3d])
        self.inputs = PromptInputs(self.stream, self.objects, self.p, self.get_logger())
        self.text = TextInputs(self.stream, self.objects, self.p, self.get_logger())
        self.stream.hooks.append(self.text)  # it needs the stream, so it joins after
        self.handlers = Services(self.stream, self.p, lambda: self._state, self.get_logger())
        self._subs: list = []
        self._own_services: list = []
        self._diag_timer = None
        self._diag_pub = None
        self._jump_handle = None
        self._state = 'unconfigured'
        self._backend = 'torch'  # the encoder backend in use
        self._step_backend = 'torch'  # the frame step's

    @property
    def tracker(self):
        """The tracker (None until configured)."""
        return self.stream.tracker

    @property
    def frames(self):
        return self.stream.frames

    # ------------------------------------------------------------------ parameters
    def _reload(self) -> Dict:
        """Every parameter's value now, into ``self.p`` in place (the parts hold that dict)."""
        self.p.update(params.current(self))
        return self.p

    def _apply_live(self, values: Dict) -> None:
        self.p.update(values)
        stream = self.stream
        if 'frame_policy' in values:
            stream.frames.set_policy(values['frame_policy'])
        if 'prompt_buffer' in values:
            stream.prompts.set_buffer(values['prompt_buffer'])
        if 'time_jump_threshold' in values:
            stream.timeline.jump_threshold_s = float(values['time_jump_threshold'])
        self.objects.configure(self.p, values)
        self.outputs_3d.configure(self.p, values)
        self.text.configure(values)
        tracker = stream.tracker
        if tracker is not None:
            if 'prompt_buffer' in values:  # the worker may be using the buffer: between frames
                size = int(values['prompt_buffer'])
                stream.run_or_queue(lambda: setattr(tracker, 'prompt_buffer', size))
            if 'mask_threshold' in values:
                tracker.mask_threshold = float(values['mask_threshold'])
            if 'max_objects' in values:
                tracker.max_objects = int(values['max_objects'])

    def _refusal(self, name: str, value):
        """What the parameter checks cannot see: a text prompt without transformers; a change a
        camera of several may not make alone."""
        return self.text.refusal(name, value) or (self._shared.refusal(name, value) if self._shared else None)

    # ------------------------------------------------------------------ lifecycle
    @_logged
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self._reload()
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
        self.stream.install(tracker)
        self.stats.reset()
        self.outputs.create()
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # once a second of real time (steady clock), also under use_sim_time while /clock is
        # paused or slow; the message is stamped with the node's clock
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        for name, handler in (('reset', self.handlers.on_reset), ('track_everything', self.handlers.on_track_everything)):
            self._own_services.append(self.create_service(Trigger, f'~/{name}', handler, qos_profile=SERVICE_QOS))
        if self._jump_handle is None:  # notice /clock going back (use_sim_time, a bag replayed in a loop)
            threshold = JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=False)
            self._jump_handle = self.get_clock().create_jump_callback(threshold, post_callback=self._on_clock_jump)
        self.text.start()
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def _load_tracker(self, p: Dict):
        from sam2_ros.backends import make_encoder_or_fallback
        from sam2_ros.model.build import build_model, resolve_device
        from sam2_ros.tracking.tracker import Tracker

        checkpoint = p['checkpoint'] or None
        start = time.perf_counter()
        if self._shared is not None:  # one camera of several: the process's one model
            model, encoder, self._backend, warm = self._shared.model.get(p, warn=self.get_logger().warning)
        else:
            model = build_model(checkpoint, model=p['model'], image_size=p['image_size'],
                                device=resolve_device(p['device']), fuse=p['fuse'])
            # a backend that cannot be used (package missing, file made for another model, size,
            # GPU or TensorRT version) falls back to torch with a warning saying why
            encoder, self._backend = make_encoder_or_fallback(
                p['encoder_backend'], model, p['encoder_engine'] or None, warn=self.get_logger().warning)
            warm = False
        settings = dict(max_objects=p['max_objects'], num_maskmem=p['num_maskmem'],
                        max_cond_frames=p['max_cond_frames'], mask_threshold=p['mask_threshold'],
                        dtype=p['dtype'], encoder=encoder, prompt_buffer=p['prompt_buffer'],
                        compile=params.compile_option(p['compile']), memory_selection=p['memory_selection'])
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
            f"model {tracker.model.cfg.name} ({checkpoint or 'official SAM 2.1 checkpoint'}) at {size} px on "
            f"{tracker.device} ({tracker.dtype}, {self._backend} encoder, {self._step_backend} step, compile "
            f"{p['compile']}): {took}")
        return tracker

    @_logged
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self._reload()  # input parameters may have changed while inactive
        stream = self.stream
        stream.frames.set_policy(p['frame_policy'])
        qos = image_qos(p['image_qos'], p['qos_depth'])
        compressed = p['image_transport'] == 'compressed'
        topic = 'image/compressed' if compressed else 'image'
        self._subs.append(self.create_subscription(CompressedImage if compressed else Image, topic,
                                                   lambda m: stream.receive(m, compressed), qos))
        inputs = self.inputs
        self._subs.append(self.create_subscription(ImageMarker, '~/prompt', inputs.on_marker, PROMPT_QOS))
        self._subs.append(self.create_subscription(Image, '~/prompt_mask', inputs.on_prompt_mask, PROMPT_QOS))
        self._subs.append(self.create_subscription(Point, '~/click', inputs.on_click, PROMPT_QOS))
        self._subs.append(self.create_subscription(String, '~/text_prompt', self.text.on_text_prompt, PROMPT_QOS,
                                                   raw=True))
        vision = self.outputs.vision
        if vision is not None:
            self._subs.append(self.create_subscription(vision.Detection2DArray, '~/prompt_boxes',
                                                       inputs.on_prompt_boxes, PROMPT_QOS))
        note = self.outputs_3d.activate(image_qos(p['image_qos'], max(p['qos_depth'], DEPTH_QOS_DEPTH)))
        if note:
            self.get_logger().info(note)
        stream.start(self._shared.worker if self._shared is not None else None)
        self._state = 'active'
        self.get_logger().info(f"tracking frames from {self.resolve_topic_name(topic)} ({p['image_qos']}, depth "
                               f"{p['qos_depth']}, frame_policy {p['frame_policy']})")
        return TransitionCallbackReturn.SUCCESS

    @_logged
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.stop_worker(timeout=None)  # a frame in progress finishes on its own, unpublished
        self.stream.frames.clear()
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

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        self.outputs_3d.deactivate()

    def _release(self) -> None:
        """Destroy publishers, services and timers; drop the tracker and free its memory."""
        self._unsubscribe()
        self.stop_worker(timeout=None)
        for srv in self._own_services:
            self.destroy_service(srv)
        self._own_services.clear()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self.outputs.destroy()
        self.outputs_3d.destroy()
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        self.text.close()
        self.stream.release()

    def stop_worker(self, timeout=30.0) -> bool:
        """Tell the worker to stop after its current frame (it publishes nothing more).
        ``timeout`` None: return at once (callbacks never wait for a frame); else wait up to
        ``timeout`` s. False if it is still running."""
        return self.stream.stop(timeout, self._shared.worker if self._shared is not None else None)

    # ------------------------------------------------------------------ time and diagnostics
    def _on_clock_jump(self, jump) -> None:
        if jump.delta.nanoseconds < 0:
            self.stream.timeline.clock_jumped()
            self.log('warning', 'clock_jump', f'/clock went back by {-jump.delta.nanoseconds / 1e9:.3f} s: the next '
                     'frame stamped before the last tracked one starts a new timeline (the tracker is reset)')

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        stamp = diagnostics_stamp(self.get_clock())
        if stamp is None:  # use_sim_time before the first /clock: see diagnostics_stamp
            return
        stream, tracker = self.stream, self.stream.tracker
        extra = camera_extras(self.p, self._backend, tracker.device if tracker is not None else None,
                              len(stream.prompts), stream.prompts.dropped, self.get_parameter('use_sim_time').value,
                              self.objects.snapshot, self._shared.worker if self._shared is not None else None)
        extra.update(self.outputs_3d.diagnostics())
        extra.update(self.text.diagnostics())
        self._diag_pub.publish(to_diagnostic_array(f'{self.get_fully_qualified_name()}: tracking', extra['device'],
                                                   self._state, self.stats.snapshot(), extra, stamp))
