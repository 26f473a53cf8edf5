"""The ROS glue without DDS: message conversions, prompt parsing and timing, parameter rules,
diagnostics and detections (messages are built, nothing is sent)."""
import types

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip('sensor_msgs')

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import ImageMarker  # noqa: E402

from sam2_ros.ros import conversions as cv  # noqa: E402
from sam2_ros.ros import detections, diagnostics, params, prompts  # noqa: E402

# --------------------------------------------------------------------------------------------
# conversions

COLOR_ENCODINGS = {  # encoding -> RGB uint8 (H, W, 3) -> the array to put in the message
    'rgb8': lambda rgb: rgb,
    'bgr8': lambda rgb: rgb[..., ::-1],
    'rgba8': lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)]),
    'bgra8': lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 77, np.uint8)]),
    'rgb16': lambda rgb: rgb.astype(np.uint16) * 257,
    'bgr16': lambda rgb: rgb[..., ::-1].astype(np.uint16) * 257,
    'rgba16': lambda rgb: np.dstack([rgb.astype(np.uint16) * 257, np.full(rgb.shape[:2], 9, np.uint16)]),
    'bgra16': lambda rgb: np.dstack([rgb[..., ::-1].astype(np.uint16) * 257,
                                     np.full(rgb.shape[:2], 9, np.uint16)]),
    '8UC3': lambda rgb: rgb,
    '8UC4': lambda rgb: np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)]),
}


@st.composite
def rgb_images(draw, max_side=24):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2 ** 31))
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@settings(max_examples=60, deadline=None)
@given(rgb=rgb_images(), encoding=st.sampled_from(sorted(COLOR_ENCODINGS)), pad=st.integers(0, 7),
       big=st.booleans())
def test_color_encodings_round_trip_exactly(rgb, encoding, pad, big):
    arr = COLOR_ENCODINGS[encoding](rgb)
    row = arr.shape[1] * arr.shape[2] * arr.itemsize
    msg = cv.numpy_to_image(arr, encoding, step=row + pad, bigendian=big)
    assert msg.step == row + pad and len(msg.data) == msg.step * msg.height
    out = cv.image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


@settings(max_examples=30, deadline=None)
@given(rgb=rgb_images(), pad=st.integers(0, 5), big=st.booleans())
def test_mono_encodings_become_gray_rgb(rgb, pad, big):
    gray = rgb[..., 0]
    for encoding, arr in (('mono8', gray), ('8UC1', gray), ('mono16', (gray.astype(np.uint16) << 8) + 3),
                          ('16UC1', gray.astype(np.uint16) << 8)):
        msg = cv.numpy_to_image(arr, encoding, step=arr.shape[1] * arr.itemsize + pad, bigendian=big)
        np.testing.assert_array_equal(cv.image_to_rgb(msg), np.repeat(gray[..., None], 3, 2))


def test_rgb8_and_rgba8_are_views_of_the_message_buffer():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    for encoding, pad in (('rgb8', 0), ('rgb8', 3), ('rgba8', 0)):
        msg = cv.numpy_to_image(COLOR_ENCODINGS[encoding](rgb), encoding, step=None if not pad else 15 + pad)
        out = cv.image_to_rgb(msg)
        assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)), encoding
        msg.data[0] = (int(msg.data[0]) + 1) % 256  # writes show through: zero-copy
        assert out[0, 0, 0] == msg.data[0]


def _mosaic(rgb, pattern):
    """Bayer mosaic of an RGB image; ``pattern`` names the 2x2 tile row by row (e.g. 'rggb')."""
    h, w = rgb.shape[:2]
    out = np.zeros((h, w), rgb.dtype)
    channel = {'r': 0, 'g': 1, 'b': 2}
    for i, c in enumerate(pattern):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[c]]
    return out


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
@pytest.mark.parametrize('bits', [8, 16])
def test_bayer_patterns_demosaic_to_the_right_colors(pattern, bits):
    color = np.array([200, 90, 30], np.uint8)
    rgb = np.broadcast_to(color, (12, 16, 3)).copy()
    raw = _mosaic(rgb, pattern)
    if bits == 16:
        raw = raw.astype(np.uint16) * 257
    out = cv.image_to_rgb(cv.numpy_to_image(raw, f'bayer_{pattern}{bits}'))
    assert out.shape == (12, 16, 3)
    inner = out[2:-2, 2:-2].reshape(-1, 3)
    assert np.abs(inner.astype(int) - color).max() <= 1, (pattern, inner[:3])


def _pack422(y, u, v, order):
    """Packed 4:2:2 bytes of constant chroma: order 'uyvy' or 'yuyv'."""
    h, w = y.shape
    out = np.zeros((h, w, 2), np.uint8)
    if order == 'uyvy':
        out[..., 1] = y
        out[:, 0::2, 0], out[:, 1::2, 0] = u, v
    else:
        out[..., 0] = y
        out[:, 0::2, 1], out[:, 1::2, 1] = u, v
    return out


@pytest.mark.parametrize('encoding,order', [('yuv422', 'uyvy'), ('uyvy', 'uyvy'),
                                            ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')])
def test_yuv422_byte_orders(encoding, order):
    y = np.tile(np.linspace(40, 220, 8).astype(np.uint8), (4, 1))
    gray = cv.image_to_rgb(cv.numpy_to_image(_pack422(y, 128, 128, order), encoding))
    assert np.abs(gray[..., 0].astype(int) - gray[..., 2]).max() <= 1  # no chroma: gray
    assert (np.diff(gray[0, :, 1].astype(int)) > 0).all()  # brightness follows Y
    packed = _pack422(np.full((4, 8), 120, np.uint8), 200, 100, order)
    bluish = cv.image_to_rgb(cv.numpy_to_image(packed, encoding))
    assert (bluish[..., 2].astype(int) > bluish[..., 0] + 50).all()  # U high, V low: blue
    with pytest.raises(cv.ConversionError, match='even width'):
        cv.image_to_rgb(cv.numpy_to_image(np.zeros((2, 3, 2), np.uint8), encoding))


def test_unsupported_and_broken_images_are_refused_with_the_reason():
    msg = Image(height=2, width=2, encoding='32FC1', step=8)
    msg.data = bytes(16)
    with pytest.raises(cv.ConversionError, match=r"unsupported image encoding '32FC1'; supported: .*rgb8"):
        cv.image_to_rgb(msg)
    short = cv.numpy_to_image(np.zeros((4, 4, 3), np.uint8), 'rgb8')
    short.data = short.data[:20]
    with pytest.raises(cv.ConversionError, match='needs 48 bytes of data, got 20'):
        cv.image_to_rgb(short)
    bad_step = cv.numpy_to_image(np.zeros((4, 4, 3), np.uint8), 'rgb8')
    bad_step.step = 5
    with pytest.raises(cv.ConversionError, match='step 5 is smaller than a row'):
        cv.image_to_rgb(bad_step)
    with pytest.raises(cv.ConversionError, match='empty'):
        cv.image_to_rgb(Image(encoding='rgb8'))


def test_compressed_images():
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    msg = CompressedImage(format='png')
    msg.data = cv2.imencode('.png', rgb[..., ::-1])[1].tobytes()
    np.testing.assert_array_equal(cv.compressed_to_rgb(msg), rgb)
    jpg = CompressedImage(format='rgb8; jpeg compressed bgr8')
    jpg.data = cv2.imencode('.jpg', rgb[..., ::-1])[1].tobytes()
    assert cv.compressed_to_rgb(jpg).shape == (20, 30, 3)
    with pytest.raises(cv.UnsupportedFormat, match='unknown format .* not accepted; accepted are JPEG, PNG'):
        cv.compressed_to_rgb(CompressedImage(format='jpeg', data=b'not a jpeg'))
    with pytest.raises(cv.ConversionError, match='depth'):
        cv.compressed_to_rgb(CompressedImage(format='16UC1; compressedDepth png', data=b'x'))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31), h=st.integers(1, 20), w=st.integers(1, 20))
def test_outputs_round_trip(seed, h, w):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 65536, (h, w)).astype(np.uint16)
    msg = cv.label_to_image(labels)
    assert msg.encoding == 'mono16' and msg.step == 2 * w and msg.is_bigendian == 0
    np.testing.assert_array_equal(cv.image_to_labels(msg), labels)
    mask = rng.random((h, w)) > 0.5
    m = cv.mask_to_image(mask)
    assert m.encoding == 'mono8'
    np.testing.assert_array_equal(cv.image_to_numpy(m)[..., 0], mask.astype(np.uint8) * 255)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = cv.rgb_to_bgr8_image(rgb)
    assert b.encoding == 'bgr8'
    np.testing.assert_array_equal(cv.image_to_numpy(b), rgb[..., ::-1])
    np.testing.assert_array_equal(cv.image_to_rgb(b), rgb)


def test_output_messages_are_reused_when_the_size_matches():
    a = cv.label_to_image(np.ones((4, 5), np.uint16))
    b = cv.label_to_image(np.full((4, 5), 3, np.uint16), reuse=a)
    assert b is a and (cv.image_to_labels(b) == 3).all()
    c = cv.label_to_image(np.ones((5, 5), np.uint16), reuse=a)
    assert c is not a


def test_label_images_accept_mono8_and_mono16_only():
    assert cv.image_to_labels(cv.numpy_to_image(np.full((2, 2), 4, np.uint8), 'mono8')).dtype == np.uint16
    with pytest.raises(cv.ConversionError, match='mono8 or mono16'):
        cv.image_to_labels(cv.numpy_to_image(np.zeros((2, 2, 3), np.uint8), 'rgb8'))


def test_conversion_cost_at_720p_is_small():
    """The ROS share of a 720p frame: bgr8 in, a mono16 label image out (reusing its buffer)."""
    import time

    rgb = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    msg = cv.numpy_to_image(rgb[..., ::-1], 'bgr8')
    labels = np.zeros((720, 1280), np.uint16)
    out = None
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        cv.image_to_rgb(msg)
        out = cv.label_to_image(labels, reuse=out)
        best = min(best, time.perf_counter() - t)
    assert best < 0.02  # generous (shared CI machines); typically ~1-2 ms


# --------------------------------------------------------------------------------------------
# prompts

def marker(obj_id=1, type_=ImageMarker.POINTS, points=(), action=ImageMarker.ADD, ns='', stamp=(0, 0)):
    m = ImageMarker(id=obj_id, type=type_, action=action, ns=ns)
    m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points]
    m.header.stamp = Time(sec=stamp[0], nanosec=stamp[1])
    return m


def test_points_marker():
    op = prompts.marker_to_op(marker(3, points=[(10, 20, 1), (30, 40, 0)], ns='cup', stamp=(5, 7)))
    assert (op.kind, op.obj_id, op.label, op.stamp_ns) == ('add', 3, 'cup', 5_000_000_007)
    np.testing.assert_array_equal(op.prompt.points, [[10, 20], [30, 40]])
    np.testing.assert_array_equal(op.prompt.labels, [1, 0])
    pts, labs, mask = op.prompt.parsed((100, 100))
    assert mask is None and labs.tolist() == [1, 0]


@pytest.mark.parametrize('type_', [ImageMarker.LINE_STRIP, ImageMarker.POLYGON])
def test_box_marker_any_corner_order(type_):
    op = prompts.marker_to_op(marker(2, type_, points=[(50, 10, 0), (5, 40, 0)]))
    np.testing.assert_array_equal(op.prompt.box, [5, 10, 50, 40])
    assert op.label is None


def test_remove_marker():
    op = prompts.marker_to_op(marker(9, action=ImageMarker.REMOVE))
    assert (op.kind, op.obj_id, op.prompt) == ('remove', 9, None)


@pytest.mark.parametrize('kwargs,reason', [
    (dict(obj_id=0, points=[(1, 1, 1)]), 'out of range: ids are 1 to 65535'),
    (dict(obj_id=70000, points=[(1, 1, 1)]), 'out of range'),
    (dict(points=[]), 'at least one point'),
    (dict(points=[(1, 1, 0.5)]), r'must be 1 \(foreground\) or 0'),
    (dict(points=[(float('nan'), 1, 1)]), 'finite'),
    (dict(type_=ImageMarker.LINE_STRIP, points=[(1, 1, 0)]), 'exactly 2 points'),
    (dict(type_=ImageMarker.POLYGON, points=[(1, 1, 0)] * 3), 'exactly 2 points'),
    (dict(type_=ImageMarker.CIRCLE, points=[(1, 1, 0)]), 'CIRCLE is not a prompt'),
    (dict(type_=ImageMarker.LINE_LIST, points=[(1, 1, 0)] * 2), 'LINE_LIST is not a prompt'),
    (dict(action=5, points=[(1, 1, 1)]), 'action 5 is not supported'),
])
def test_bad_markers_say_why(kwargs, reason):
    with pytest.raises(prompts.PromptMessageError, match=reason):
        prompts.marker_to_op(marker(**kwargs))


def test_out_of_frame_points_are_caught_by_the_tracker_check():
    op = prompts.marker_to_op(marker(1, points=[(500, 10, 1)]))
    with pytest.raises(prompts.PromptError, match='outside the 160 x 96 frame'):
        op.prompt.parsed((96, 160))


def test_label_image_prompts():
    labels = np.zeros((6, 8), np.uint16)
    labels[1:3, 1:3] = 4
    labels[4:, 5:] = 300
    ops = prompts.labels_to_ops(labels, 123)
    assert [o.obj_id for o in ops] == [4, 300] and all(o.stamp_ns == 123 for o in ops)
    np.testing.assert_array_equal(ops[1].prompt.mask, labels == 300)
    with pytest.raises(prompts.PromptMessageError, match='no object'):
        prompts.labels_to_ops(np.zeros((3, 3), np.uint16))


def test_click_and_next_free_id():
    op = prompts.click_to_op(Point(x=3.0, y=4.0), 7)
    assert op.obj_id == 7 and op.prompt.labels == [1]
    assert prompts.next_free_id([]) == 1
    assert prompts.next_free_id([1, 5]) == 6
    assert prompts.next_free_id([65535, 1]) == 2
    with pytest.raises(prompts.PromptMessageError, match='finite'):
        prompts.click_to_op(Point(x=float('inf'), y=0.0), 1)


def _add(obj_id, stamp=0):
    return prompts.PromptOp('add', obj_id, prompts.Prompt(obj_id, points=[[1, 1]], labels=[1]),
                            stamp_ns=stamp, source='test')


def test_prompt_queue_timing():
    q = prompts.PromptQueue(buffer_frames=3)
    for s in (10, 20, 30):
        q.note_frame(s)
    # zero stamp: the next frame; a stamp already seen: the next frame; a future stamp: waits
    q.push(_add(1, 0))
    q.push(_add(2, 20))
    q.push(_add(3, 50))
    b = q.take(40)
    assert [o.obj_id for o in b.adds] == [1, 2] and not b.warnings
    q.note_frame(40)
    assert q.take(45).adds == []  # 3 still waits for 50
    q.note_frame(50)
    assert [o.obj_id for o in q.take(50).adds] == [3]  # exactly its frame


def test_prompt_queue_one_prompt_per_object_and_frame_and_removal_cancels():
    q = prompts.PromptQueue(4)
    q.push(_add(1))
    q.push(_add(1))
    assert len(q.take(1).adds) == 1 and len(q.take(2).adds) == 1
    q.push(_add(2, 100))  # waits for frame 100
    q.push(prompts.PromptOp('remove', 2))
    b = q.take(3)
    assert b.adds == [] and [o.obj_id for o in b.removes] == [2]
    assert len(q) == 0


def test_prompt_queue_gives_up_waiting_and_warns_about_stale_stamps():
    q = prompts.PromptQueue(2)
    q.push(_add(1, 10 ** 12))  # a clock far ahead
    assert q.take(1).adds == [] and q.take(2).adds == []
    b = q.take(3)
    assert [o.obj_id for o in b.adds] == [1] and 'no frame stamped' in b.warnings[0]
    for s in (100, 200):
        q.note_frame(s)
    q.push(_add(2, 5))  # older than the buffer
    b = q.take(300)
    assert [o.obj_id for o in b.adds] == [2] and 'older than the last 2 frames' in b.warnings[0]


# --------------------------------------------------------------------------------------------
# parameters

def test_parameter_validation():
    v = params.validate
    assert v('model', 'tiny') is None and v('model', 'b+') is None
    assert 'unknown model' in v('model', 'huge')
    assert v('image_size', 512) is None
    assert 'multiple of 32' in v('image_size', 500)
    assert 'in [64, 4096]' in v('image_size', 32)
    assert 'must be an integer' in v('image_size', 512.0)
    assert v('device', 'cpu') is None and v('device', 'cuda:1', check_cuda=False) is None
    assert 'auto, cpu, cuda or cuda:N' in v('device', 'gpu')
    assert 'one of latest, all' in v('frame_policy', 'newest')
    assert 'must be a number' in v('mask_threshold', 'high')
    assert 'must be true or false' in v('publish_overlay', 1)
    with pytest.raises(params.ParameterError, match='encoder_backend must be one of torch'):
        params.validate_all({'encoder_backend': 'openvino', 'encoder_engine': ''})


def test_edgetam_model_parameter_and_its_image_sizes():
    assert params.validate('model', 'edgetam') is None and 'edgetam' in params.MODELS
    params.validate_all({'model': 'edgetam', 'image_size': 512})
    with pytest.raises(params.ParameterError, match='image_size 320 does not fit model edgetam.*multiple of 256'):
        params.validate_all({'model': 'edgetam', 'image_size': 320})
    params.validate_all({'model': 'tiny', 'image_size': 320})
    assert 'multiple of 256' in params.change_refusal('image_size', 800, 'unconfigured', {'model': 'edgetam'})


def test_fuse_parameter_is_edgetams_only():
    params.validate_all({'model': 'edgetam', 'fuse': True})
    params.validate_all({'model': 'tiny', 'fuse': False})
    with pytest.raises(params.ParameterError, match='fuse folds EdgeTAM.s BatchNorms; model tiny .* set fuse: false'):
        params.validate_all({'model': 'tiny', 'fuse': True})
    assert 'set fuse: false' in params.change_refusal('model', 'small', 'unconfigured', {'model': 'edgetam', 'fuse': True})
    assert 'read-only once the node is configured' in params.change_refusal('fuse', True, 'active', {'model': 'edgetam'})


def test_parameter_change_rules():
    r = params.change_refusal
    assert 'read-only once the node is configured' in r('model', 'small', 'active')
    assert 'read-only once the node is configured' in r('image_size', 512, 'inactive')
    assert r('model', 'small', 'unconfigured') is None
    assert 'deactivate it first' in r('image_qos', 'reliable', 'active')
    assert r('image_qos', 'reliable', 'inactive') is None
    assert r('mask_threshold', 1.0, 'active') is None
    assert 'one of latest, all' in r('frame_policy', 'x', 'unconfigured')


def test_compile_parameter_and_its_combinations():
    assert params.compile_option('false') is False and params.compile_option('true') is True
    assert params.compile_option('reduce-overhead') == 'reduce-overhead'
    assert 'one of false, true, default' in params.validate('compile', 'fast')
    with pytest.raises(params.ParameterError, match='set prompt_buffer: 0'):
        params.validate_all({'compile': 'true', 'prompt_buffer': 8})
    params.validate_all({'compile': 'true', 'prompt_buffer': 0})
    r = params.change_refusal
    compiled = {'compile': 'reduce-overhead', 'prompt_buffer': 0}
    assert 'must stay 0 with compile' in r('prompt_buffer', 4, 'active', compiled)
    assert "capacity, fixed once configured" in r('max_objects', 4, 'active', compiled)
    exported = {'step_backend': 'onnxruntime', 'prompt_buffer': 0, 'compile': 'false'}
    assert 'must stay 0' in r('prompt_buffer', 2, 'inactive', exported)
    assert 'set compile: "false"' in r('compile', 'true', 'unconfigured', exported)
    with pytest.raises(params.ParameterError, match='needs prompt_buffer 0'):
        params.validate_all({'step_backend': 'tensorrt', 'compile': 'false', 'prompt_buffer': 8})
    assert r('max_objects', 4, 'unconfigured', compiled) is None
    assert r('max_objects', 4, 'active', {'compile': 'false'}) is None
    assert 'read-only once the node is configured' in r('compile', 'true', 'active', {'prompt_buffer': 0})


def test_memory_selection_parameter():
    assert params.validate('memory_selection', 'samurai') is None
    assert 'one of sam2, samurai' in params.validate('memory_selection', 'motion')
    with pytest.raises(params.ParameterError, match='memory_selection samurai keeps no prompt buffer'):
        params.validate_all({'memory_selection': 'samurai', 'prompt_buffer': 8})
    params.validate_all({'memory_selection': 'samurai', 'prompt_buffer': 0})
    r = params.change_refusal
    assert 'set prompt_buffer: 0' in r('prompt_buffer', 2, 'active', {'memory_selection': 'samurai', 'prompt_buffer': 0})
    assert 'set prompt_buffer: 0' in r('memory_selection', 'samurai', 'unconfigured', {'prompt_buffer': 8})
    assert 'read-only once the node is configured' in r('memory_selection', 'samurai', 'active', {'prompt_buffer': 0})
    assert r('prompt_buffer', 2, 'active', {'memory_selection': 'sam2'}) is None


def test_config_file_values_are_valid_and_complete():
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parent.parent / 'config' / 'tracker.yaml'
    values = yaml.safe_load(path.read_text())['/**']['ros__parameters']
    assert set(values) == {s.name for s in params.SPECS}
    for name, value in values.items():
        assert params.validate(name, value, check_cuda=False) is None, name
        assert type(value) is type(params.SPEC_BY_NAME[name].default), name


def test_descriptors():
    d = params.descriptor(params.SPEC_BY_NAME['image_size'])
    assert d.integer_range[0].from_value == 64 and d.integer_range[0].step == 32
    assert 'read-only once configured' in d.description and not d.read_only
    assert params.descriptor(params.SPEC_BY_NAME['autostart']).read_only
    f = params.descriptor(params.SPEC_BY_NAME['mask_threshold'])
    assert f.floating_point_range[0].to_value == 32.0


# --------------------------------------------------------------------------------------------
# diagnostics, detections

def test_diagnostics_array():
    s = diagnostics.Stats()
    s.count('received', 3)
    s.count('dropped')
    for ms in (10, 20, 30, 40):
        s.frame_done(ms / 1000.0, {'convert': 0.001, 'track': 0.008}, 2)
    snap = s.snapshot()
    assert snap['latency_p50_ms'] == pytest.approx(25.0) and snap['latency_max_ms'] == pytest.approx(40.0)
    assert snap['frames_dropped'] == 1 and snap['objects'] == 2 and snap['rate_hz'] > 0
    arr = diagnostics.to_diagnostic_array('sam2_tracker: tracking', 'cpu', 'active', snap,
                                          diagnostics.device_memory(None))
    status = arr.status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == b'\x00' and 'tracking 2 object(s)' in status.message
    assert values['latency_p95_ms'] and float(values['process_rss_mib']) > 0
    assert diagnostics.status_level('inactive', snap)[0] == 1


def _fake_vision_msgs():
    """A stand-in with vision_msgs 4's layout (there is no wheel of the real one)."""
    def obj(**fields):
        return lambda: types.SimpleNamespace(**{k: v() if callable(v) else v for k, v in fields.items()})
    point = obj(x=0.0, y=0.0)
    return types.SimpleNamespace(
        Detection2DArray=obj(header=None, detections=list),
        Detection2D=obj(header=None, id='', results=list,
                        bbox=obj(center=obj(position=point, theta=0.0), size_x=0.0, size_y=0.0)),
        ObjectHypothesisWithPose=obj(hypothesis=obj(class_id='', score=0.0)))


def test_detections_from_masks():
    masks = np.zeros((3, 20, 30), bool)
    masks[0, 2:6, 3:13] = True
    masks[2, 10:20, 0:1] = True  # object 2 (index 1) is invisible
    out = detections.build(_fake_vision_msgs(), 'hdr', [1, 2, 5], masks, [0.9, 0.1, 0.7], {5: 'bunny'})
    assert [d.id for d in out.detections] == ['1', '5'] and out.header == 'hdr'
    d0, d5 = out.detections
    box = (d0.bbox.center.position.x, d0.bbox.center.position.y, d0.bbox.size_x, d0.bbox.size_y)
    assert box == (8.0, 4.0, 10.0, 4.0)
    assert d0.results[0].hypothesis.class_id == '1' and d0.results[0].hypothesis.score == pytest.approx(0.9)
    assert d5.results[0].hypothesis.class_id == 'bunny'
    assert detections.load() is None or hasattr(detections.load(), 'Detection2DArray')
