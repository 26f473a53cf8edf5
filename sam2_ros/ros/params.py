"""The node's parameters: declarations (descriptions, ranges), validation and change rules.

Every parameter is declared with a :class:`ParameterDescriptor` (description, allowed values,
integer or floating-point range). A set-parameters callback refuses invalid values with the
reason, and refuses changes that cannot take effect in the node's current lifecycle state:

* ``configure``: the model and how it is built (model, checkpoint, device, dtype, fuse, image_size,
  encoder_backend, encoder_engine, num_maskmem, max_cond_frames, compile, memory_selection; the text
  detector's model, device, dtype and image size) are read-only once the
  node is configured; `cleanup` the node to change them (with compile on, max_objects too: it is
  the compiled step's capacity);
* ``activate``: the input subscriptions (image_transport, image_qos, qos_depth, depth) cannot
  change while the node is active; `deactivate` it first;
* ``live``: applied on the next frame (mask_threshold, max_objects, frame_policy, prompt_buffer,
  max_image_pixels, publish_overlay, publish_object_masks, and the time, object-state, polygon,
  3-D, segment-everything, detection and text-prompt parameters);
* ``start``: read once at start-up (autostart; declared read-only).

This module needs rclpy's message types only in :func:`declare` and :func:`make_callback`; the
validation itself is plain Python (unit-tested without ROS).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

MODELS = ('tiny', 'small', 'base_plus', 'large', 'edgetam')
DTYPES = ('auto', 'float32', 'float16', 'bfloat16')
BACKENDS = ('torch', 'onnxruntime', 'tensorrt')
FRAME_POLICIES = ('latest', 'all')
RESEED_MODES = ('none', 'every_n_frames', 'on_loss')
IMAGE_QOS = ('sensor_data', 'reliable', 'system_default')
TRANSPORTS = ('raw', 'compressed')
COMPILE = ('false', 'true', 'default', 'reduce-overhead', 'max-autotune')
MEMORY_SELECTIONS = ('sam2', 'samurai')


class ParameterError(ValueError):
    """A parameter value the node cannot start with; the text says which and why."""


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    when: str  # configure | activate | live | start
    choices: Optional[Tuple[str, ...]] = None
    int_range: Optional[Tuple[int, int, int]] = None  # from, to, step
    float_range: Optional[Tuple[float, float]] = None


SPECS: Tuple[Spec, ...] = (
    # --- model (read-only once configured) ---
    Spec('model', 'tiny', 'SAM 2 model size (aliases t, s, b+, l accepted), or edgetam (EdgeTAM: RepViT trunk, '
         '512-token memories; on a CPU about 3x (512 px) to 5x (1024 px) faster than tiny)', 'configure', MODELS),
    Spec('checkpoint', '', "Meta's .pt file, a folder, or a Hugging Face Hub id (facebook/sam2.1-hiera-tiny, "
         'facebook/EdgeTAM, or a SAM 2 saved by transformers); empty: the official checkpoint of `model` (SAM 2.1, '
         'or edgetam.pt), downloaded once into the Hugging Face Hub cache', 'configure'),
    Spec('device', 'auto', 'auto (CUDA when available, else CPU) | cpu | cuda | cuda:N', 'configure'),
    Spec('dtype', 'auto', 'compute dtype on CUDA (auto: bfloat16 where supported, else float16); '
         'float32 on the CPU', 'configure', DTYPES),
    Spec('fuse', False, 'model edgetam only: fold the RepViT trunk\'s BatchNorms and token-mixing branches into '
         'single convolutions after loading (10-20 % less encoder time on a CPU; outputs within ~1e-6 of the '
         'unfused model, the checkpoint unchanged); SAM 2 has none to fold', 'configure'),
    Spec('image_size', 1024, 'model input side in pixels, a multiple of 32 (1024: as trained; '
         '512: about 4x faster); with model edgetam a multiple of 256', 'configure', int_range=(64, 4096, 32)),
    Spec('encoder_backend', 'torch', 'image-encoder backend; one that cannot be used (package missing, '
         'encoder_engine missing or made for another model, size or GPU) falls back to torch with a '
         'warning', 'configure', BACKENDS),
    Spec('encoder_engine', '', '.onnx / .engine file for the onnxruntime / tensorrt encoder backends',
         'configure'),
    Spec('num_maskmem', 7, 'memory frames attended to per object (1 conditioning + recent ones)',
         'configure', int_range=(1, 7, 1)),
    Spec('max_cond_frames', 4, 'prompted (conditioning) frames kept per object; the oldest is dropped',
         'configure', int_range=(2, 64, 1)),
    Spec('compile', 'false', 'torch.compile the whole frame step (static shapes, fullgraph): true or '
         'default | reduce-overhead (CUDA graphs on GPUs) | max-autotune; false: the exact eager path. '
         'Compiling costs time at configure (minutes on a CPU); every slot of max_objects is computed '
         'every frame, so size max_objects to the objects you track (fixed once configured); needs '
         'prompt_buffer 0', 'configure', COMPILE),
    Spec('step_backend', 'torch', 'where the static frame step runs: torch (compile applies) | onnxruntime | '
         'tensorrt with step_engine (export/export_onnx.py --part step for this capacity, max_cond_frames, '
         'num_maskmem); one that cannot be used falls back to the torch step with a warning. Not torch: '
         'needs prompt_buffer 0 and compile false', 'configure', BACKENDS),
    Spec('step_engine', '', '.onnx / .engine file of the frame step for step_backend onnxruntime / tensorrt',
         'configure'),
    Spec('memory_selection', 'sam2', "which memories each object keeps: sam2 (SAM 2's: the last frames, the "
         'candidate mask with the highest predicted IoU) | samurai (SAMURAI: a Kalman filter on each '
         "object's box helps pick the mask, and only frames whose mask passed its confidence and motion "
         'tests are remembered: fewer switches to occluders and look-alikes, no training, a few ms a frame). '
         'samurai needs prompt_buffer 0; an exported step_engine must be exported for it', 'configure',
         MEMORY_SELECTIONS),
    # --- tracking (live) ---
    Spec('max_objects', 16, 'most objects tracked at once; prompts for more are refused', 'live',
         int_range=(1, 1024, 1)),
    Spec('mask_threshold', 0.0, 'a pixel is in a mask where its logit is > mask_threshold', 'live',
         float_range=(-32.0, 32.0)),
    Spec('frame_policy', 'latest', 'latest: track only the newest frame (stale frames are dropped '
         'and counted; bounded latency) | all: track every frame in order (evaluation)', 'live',
         FRAME_POLICIES),
    Spec('prompt_buffer', 8, 'the last N tracked frames keep their image features, so that a prompt '
         'stamped with one of them applies to that frame (as a prompt on an earlier frame in SAM 2\'s '
         'video predictor); older stamps apply to the next frame with a warning; a prompt stamped '
         'ahead of every received frame waits for its frame at most N frames. Costs about 20 MB a '
         'frame at 1024 px in float32 (1.3 MB at 256 px)', 'live', int_range=(0, 120, 1)),
    Spec('time_jump_threshold', 1.0, 'seconds: a frame stamped more than this before the last tracked '
         'one (or any step back after /clock went back) is a jump back in time (a bag replayed in a '
         'loop): the tracker is reset with a warning. Smaller steps back are out-of-order frames: '
         'dropped and counted (frames_out_of_order)', 'live', float_range=(0.0, 1e6)),
    Spec('max_image_pixels', 3840 * 2160, 'largest input image (width x height) accepted, on '
         '`image` and `~/prompt_mask`; larger ones are refused before being converted or decoded '
         '(default 8294400: 4K UHD)', 'live', int_range=(4096, 1 << 30, 1)),
    Spec('autostart', True, 'configure and activate at start-up (false: wait for lifecycle '
         'transitions)', 'start'),
    # --- input (fixed while active) ---
    Spec('image_transport', 'raw', 'raw: sensor_msgs/Image on `image` | compressed: '
         'sensor_msgs/CompressedImage on `image/compressed`', 'activate', TRANSPORTS),
    Spec('image_qos', 'sensor_data', 'QoS of the image subscription: sensor_data (best effort) | '
         'reliable | system_default', 'activate', IMAGE_QOS),
    Spec('qos_depth', 1, 'history depth of the image subscription', 'activate',
         int_range=(1, 1000, 1)),
    # --- output (live) ---
    Spec('publish_overlay', True, '~/overlay: the frame with colored masks and ids (bgr8), drawn '
         'only while someone subscribes', 'live'),
    Spec('publish_object_masks', False, '~/object_<id>/mask: one mono8 0/255 mask topic per object',
         'live'),
    Spec('publish_polygons', False, '~/object_<id>/polygon: geometry_msgs/PolygonStamped per object, the '
         'outline of its largest region (pixels), published while someone subscribes', 'live'),
    Spec('polygon_tolerance', 1.0, 'polygon simplification (Douglas-Peucker) in pixels: no boundary '
         'pixel lies farther from the polygon; 0 keeps every boundary pixel', 'live',
         float_range=(0.0, 100.0)),
    # --- objects in 3-D from an aligned depth image ---
    Spec('depth', False, 'subscribe to `depth` (sensor_msgs/Image 16UC1 millimetres or 32FC1 metres, registered '
         'to `image`: its size or an integer scale of it) and `camera_info` (the colour camera\'s CameraInfo), and '
         'publish each object in 3-D: ~/markers, ~/objects_3d (where vision_msgs is installed), ~/points '
         '(publish_points)', 'activate'),
    Spec('depth_max_delay', 0.02, 'seconds: a frame pairs with the depth image of the same stamp, else the '
         'nearest one within this (0: the same stamp only); none: the frame goes out without 3-D (counted)',
         'live', float_range=(0.0, 1.0)),
    Spec('depth_buffer', 15, 'depth images kept for pairing (besides those a frame being tracked may pair '
         'with): enough for the time a frame waits before it is tracked (15: half a second at 30 Hz)', 'live',
         int_range=(1, 300, 1)),
    Spec('depth_min_points', 30, 'valid depth pixels an object needs on a frame for 3-D (fewer: no 3-D for it '
         'on that frame, counted in objects_without_3d)', 'live', int_range=(1, 1 << 20, 1)),
    Spec('depth_erosion_px', 3, "colour pixels taken off each mask's border before measuring (flying pixels "
         "at an object's edges; the edge is grown back where the depth continues the surface)", 'live',
         int_range=(0, 50, 1)),
    Spec('publish_points', False, '~/points: sensor_msgs/PointCloud2 of every object\'s points (x, y, z '
         'float32, id uint16), with depth', 'live'),
    Spec('max_points_per_object', 1000, '~/points: at most this many points per object (a regular subsample)',
         'live', int_range=(1, 1 << 20, 1)),
    # --- object states (live) ---
    Spec('state_present_threshold', 0.6, 'an object is seen on a frame when its presence score is at '
         'least this', 'live', float_range=(0.0, 1.0)),
    Spec('state_absent_threshold', 0.4, 'an object is missing on a frame when its presence score is '
         'below this (taken as at most state_present_threshold); in between it keeps its state', 'live',
         float_range=(0.0, 1.0)),
    Spec('state_visible_frames', 1, 'frames seen in a row for an occluded or lost object to be visible '
         'again', 'live', int_range=(1, 1000, 1)),
    Spec('state_occluded_frames', 2, 'frames missing in a row for a visible object to be occluded',
         'live', int_range=(1, 1000, 1)),
    Spec('state_lost_frames', 30, 'frames missing in a row for an object to be lost (it keeps its id and '
         'memory and comes back when seen again; taken as at least state_occluded_frames)', 'live',
         int_range=(1, 100000, 1)),
    # --- segment everything (~/track_everything; live) ---
    Spec('everything_points_per_side', 32, '~/track_everything: clicks along each image side '
         '(points_per_side^2 prompts; the cost grows with its square)', 'live', int_range=(1, 128, 1)),
    Spec('everything_points_per_batch', 64, '~/track_everything: clicks decoded at once', 'live',
         int_range=(1, 4096, 1)),
    Spec('everything_pred_iou_thresh', 0.8, "~/track_everything: keep masks whose predicted IoU is above "
         'this (0 disables)', 'live', float_range=(0.0, 1.0)),
    Spec('everything_stability_score_thresh', 0.95, '~/track_everything: keep masks whose stability score '
         'is at least this (0 disables)', 'live', float_range=(0.0, 1.0)),
    Spec('everything_box_nms_thresh', 0.7, '~/track_everything: box IoU above which the lower-scored mask '
         'is a duplicate', 'live', float_range=(0.0, 1.0)),
    Spec('everything_min_mask_region_area', 0, '~/track_everything: fill holes and drop islands of at most '
         'this many low-res pixels in each mask (0: off)', 'live', int_range=(0, 1 << 20, 1)),
    Spec('everything_min_area', 0, '~/track_everything: masks smaller than this (pixels of the frame) are '
         'not tracked', 'live', int_range=(0, 1 << 30, 1)),
    # --- text prompts (~/text_prompt, sam2_ros.ros.text_inputs) ---
    Spec('text_prompt', '', 'phrases separated by " . " ("person . red cup") that the detector turns into '
         'objects labelled with their phrase; the same as a message on ~/text_prompt (the last one wins); '
         'empty: no detection. Needs the optional extra sam2_ros[text] (transformers)', 'live'),
    Spec('detector_model', 'IDEA-Research/grounding-dino-tiny', 'the text detector: a Hugging Face Hub id or '
         'local directory of a zero-shot object detector (Grounding DINO, MM Grounding DINO, OWLv2), loaded on '
         'the first text prompt', 'configure'),
    Spec('detector_box_threshold', 0.35, 'a detection is kept when its best phrase score is above this',
         'live', float_range=(0.0, 1.0)),
    Spec('detector_text_threshold', 0.25, "Grounding DINO: tokens scored above this make a detection's own "
         'label (the class label is always the phrase of its best token)', 'live', float_range=(0.0, 1.0)),
    Spec('detector_every_n', 30, 'tracked frames between two detector runs (0: only when a text arrives, after '
         'a reset and when an object of a phrase is lost)', 'live', int_range=(0, 100000, 1)),
    Spec('detector_max_age', 10, "a detector run's boxes are applied to the newest frame when the run is at "
         'most this many tracked frames old, else dropped (counted) and the detector runs again', 'live',
         int_range=(0, 100000, 1)),
    Spec('detector_device', 'auto', "the detector's device: auto (CUDA when available, else CPU) | cpu | cuda | "
         'cuda:N', 'configure'),
    Spec('detector_dtype', 'auto', "the detector's compute dtype (auto: bfloat16 on CUDA where supported, "
         'float32 on the CPU)', 'configure', DTYPES),
    Spec('detector_image_size', 0, "Grounding DINO's input: the shortest edge frames are resized to (0: the "
         "checkpoint's, 800; 480 costs about half on a CPU)", 'configure', int_range=(0, 2048, 1)),
    # --- detections as prompts (~/prompt_boxes; live) ---
    Spec('reseed', 'none', 'what ~/prompt_boxes detections do to tracked objects, matched to them by box '
         'IoU: none (nothing) | every_n_frames (re-prompt every matched object with its detection box, '
         'every reseed_every_n frames) | on_loss (re-prompt lost objects only)', 'live', RESEED_MODES),
    Spec('reseed_every_n', 30, 'reseed: every_n_frames: tracked frames between two re-prompts', 'live',
         int_range=(1, 100000, 1)),
    Spec('reseed_iou', 0.3, 'a detection matches an object when the IoU of its box with the box of the '
         "object's mask (lost or occluded objects: their last box) is at least this", 'live',
         float_range=(0.0, 1.0)),
    Spec('reseed_new_objects', False, 'detections that match no tracked object start new objects (up to '
         'max_objects, best scores first)', 'live'),
    Spec('detection_min_score', 0.0, '~/prompt_boxes: detections scored below this are ignored', 'live',
         float_range=(0.0, 1.0)),
)
SPEC_BY_NAME: Dict[str, Spec] = {s.name: s for s in SPECS}

_DEVICE_RE = re.compile(r'^(auto|cpu|cuda(:\d+)?|mps)$')


def validate(name: str, value: Any, check_cuda: bool = True) -> Optional[str]:
    """Why ``value`` is not valid for parameter ``name`` (None if it is). Types and ranges are
    also checked here, so this works without the descriptors' enforcement."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return None
    default = spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f'{name} must be true or false, got {value!r}'
        return None
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f'{name} must be an integer, got {value!r}'
        lo, hi, step = spec.int_range
        if not lo <= value <= hi or (value - lo) % step:
            extra = f' and a multiple of {step}' if step > 1 else ''
            return f'{name} must be in [{lo}, {hi}]{extra}, got {value}'
        if name == 'detector_image_size' and 0 < value < 64:
            return f"detector_image_size must be 0 (the checkpoint's size) or in [64, 2048], got {value}"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f'{name} must be a number, got {value!r}'
        lo, hi = spec.float_range
        if not lo <= value <= hi:
            return f'{name} must be in [{lo}, {hi}], got {value}'
        return None
    if not isinstance(value, str):
        return f'{name} must be a string, got {value!r}'
    if name == 'model':
        try:
            from sam2_ros.model.config import normalize_model_name

            normalize_model_name(value)
        except ValueError as error:
            return str(error)
        except ImportError:  # pragma: no cover - the model package is part of sam2_ros
            if value not in MODELS:
                return f'model must be one of {", ".join(MODELS)}, got {value!r}'
        return None
    if spec.choices is not None and value not in spec.choices:
        return f'{name} must be one of {", ".join(spec.choices)}, got {value!r}'
    if name == 'text_prompt':  # its form; the detector's limits (256 tokens) are checked when it is loaded
        from sam2_ros.model.text_query import TextPromptError, parse_text_prompt

        try:
            parse_text_prompt(value)
        except TextPromptError as error:
            return f'text_prompt: {error}'
    if name in ('device', 'detector_device'):
        if not _DEVICE_RE.match(value):
            return f"{name} must be auto, cpu, cuda or cuda:N, got {value!r}"
        if check_cuda and value.startswith('cuda'):
            import torch

            if not torch.cuda.is_available():
                return (f'{name} {value!r}: this torch ({torch.__version__}) sees no CUDA device; '
                        'use cpu or auto')
            index = int(value.split(':')[1]) if ':' in value else 0
            if index >= torch.cuda.device_count():
                return f'{name} {value!r}: only {torch.cuda.device_count()} CUDA device(s)'
    return None


def compile_option(value: str):
    """The ``compile`` parameter as ``Tracker(compile=...)`` takes it."""
    return {'false': False, 'true': True}.get(value, value)


def _combination(name: str, value: Any, values: Dict[str, Any], state: str) -> Optional[str]:
    """Why ``name = value`` does not go with the other ``values`` (None if it does)."""
    values = {**values, name: value}
    if name in ('model', 'image_size') and str(values.get('model', '')).strip().lower() == 'edgetam' \
            and values.get('image_size', 1024) % 256:
        return (f"image_size {values['image_size']} does not fit model edgetam: its memory perceiver cuts the "
                'stride-16 map into 16 x 16 equal windows, so the side must be a multiple of 256 (e.g. 512, 1024)')
    if name in ('model', 'fuse') and values.get('fuse') and str(values.get('model', '')).strip().lower() != 'edgetam':
        return (f"fuse folds EdgeTAM's BatchNorms; model {values.get('model')} (SAM 2's Hiera) has none: "
                'set fuse: false, or model: edgetam')
    compiled = values.get('compile', 'false') != 'false'
    exported = values.get('step_backend', 'torch') != 'torch'
    if name in ('compile', 'step_backend') and compiled and exported:
        return (f"compile applies to the torch frame step; step_backend {values['step_backend']} runs an exported "
                'one: set compile: "false"')
    if name in ('compile', 'step_backend') and (compiled or exported) and values.get('prompt_buffer', 0) > 0:
        return (f'{name} {value} runs the static frame step, which needs prompt_buffer 0 (it has no prompt buffer '
                'yet: prompts stamped with earlier frames would apply to the next frame); set prompt_buffer: 0')
    if (compiled or exported) and name == 'prompt_buffer' and value > 0:
        return 'prompt_buffer must stay 0 with compile or an exported step_backend (the static frame step has no prompt buffer)'
    samurai = (value if name == 'memory_selection' else values.get('memory_selection', 'sam2')) == 'samurai'
    buffer = value if name == 'prompt_buffer' else values.get('prompt_buffer', 0)
    if samurai and name in ('memory_selection', 'prompt_buffer') and buffer > 0:
        return ('memory_selection samurai keeps no prompt buffer (a prompt on a past frame would rewrite the motion '
                'and memory choices of every frame after it): set prompt_buffer: 0')
    if (compiled or exported) and name == 'max_objects' and state in ('inactive', 'active'):
        return ('max_objects is the static frame step\'s capacity, fixed once configured; '
                'deactivate and clean up the node to change it')
    return None


def validate_all(values: Dict[str, Any]) -> None:
    """Check every value and the combinations; raise :class:`ParameterError` with all reasons."""
    errors = [r for r in (validate(n, v) for n, v in values.items()) if r]
    if not errors:
        names = ('model', 'fuse', 'compile', 'step_backend', 'memory_selection')
        errors = [r for r in (_combination(n, values[n], values, 'unconfigured') for n in names if n in values) if r][:1]
    if errors:
        raise ParameterError('; '.join(errors))


def change_refusal(name: str, value: Any, state: str, values: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """Why a change of ``name`` to ``value`` is refused in lifecycle ``state`` (unconfigured,
    inactive, active, finalized), or None; ``values``: the current parameters, for the
    combinations (compile with prompt_buffer and max_objects)."""
    reason = validate(name, value) or _combination(name, value, values or {}, state)
    if reason:
        return reason
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return None
    if spec.when == 'configure' and state in ('inactive', 'active'):
        return (f'{name} is read-only once the node is configured (it is {state}); '
                'deactivate and clean up the node to change it')
    if spec.when == 'activate' and state == 'active':
        return f'{name} cannot change while the node is active; deactivate it first'
    return None


# ---------------------------------------------------------------------------------------------
# rclpy side

def descriptor(spec: Spec):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    text = spec.description
    if spec.choices:
        text += f' [{" | ".join(spec.choices)}]'
    text += {'configure': ' (read-only once configured)',
             'activate': ' (fixed while active)',
             'start': ' (read at start-up)',
             'live': ''}[spec.when]
    d = ParameterDescriptor(name=spec.name, type=types[type(spec.default)], description=text,
                            read_only=spec.when == 'start')
    if spec.choices:
        d.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.int_range:
        lo, hi, step = spec.int_range
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step)]
    if spec.float_range:
        lo, hi = spec.float_range
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


def declare(node, specs: Iterable[Spec] = SPECS) -> Dict[str, Any]:
    """Declare every parameter (values from overrides, e.g. --ros-args -p or a params file);
    returns their values. Raises :class:`ParameterError` naming each bad override."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    errors = []
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        except InvalidParameterTypeException as error:
            errors.append(f'{spec.name}: wrong type ({error}); expected '
                          f'{type(spec.default).__name__}, default {spec.default!r}')
            node.declare_parameter(spec.name, spec.default, descriptor(spec),
                                   ignore_override=True)
        except InvalidParameterValueException as error:
            errors.append(f'{spec.name}: {error}')
            node.declare_parameter(spec.name, spec.default, descriptor(spec),
                                   ignore_override=True)
    values = current(node)
    for name, value in values.items():
        reason = validate(name, value, check_cuda=False)  # CUDA is checked when configuring
        if reason:
            errors.append(reason)
    if errors:
        raise ParameterError('invalid parameter(s): ' + '; '.join(errors))
    return values


def current(node, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    names = [s.name for s in SPECS] if names is None else names
    return {n: node.get_parameter(n).value for n in names}


def make_callback(state_of: Callable[[], str], apply_live: Callable[[Dict[str, Any]], None],
                  values_of: Optional[Callable[[], Dict[str, Any]]] = None,
                  refusal_of: Optional[Callable[[str, Any], Optional[str]]] = None):
    """A set-parameters callback: refuses invalid or untimely values with the reason (also
    combinations with the current values, ``values_of()``, and whatever ``refusal_of(name,
    value)`` refuses: a camera of several may not change what its cameras share), and passes
    accepted values of live parameters to ``apply_live``."""
    from rcl_interfaces.msg import SetParametersResult

    def callback(parameters) -> 'SetParametersResult':
        state = state_of()
        values = dict(values_of()) if values_of is not None else {}
        values.update({p.name: p.value for p in parameters})
        for p in parameters:
            reason = change_refusal(p.name, p.value, state, values)
            if not reason and refusal_of is not None:
                reason = refusal_of(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        live = {p.name: p.value for p in parameters
                if p.name in SPEC_BY_NAME and SPEC_BY_NAME[p.name].when == 'live'}
        if live:
            apply_live(live)
        return SetParametersResult(successful=True)

    return callback
