"""Reliability of the node's input handling, without DDS: every message either
converts / parses to something valid or is refused with the module's own error saying why,
never another exception; pixel budgets are enforced before any big allocation; prompt queues
stay bounded under a flood; checkpoint, ONNX and engine files are refused when they could run
code or do not match. The same cases over DDS with the real node: test_reliability_node.py.
"""
import os
import pickle
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip('sensor_msgs')

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import ImageMarker  # noqa: E402

from sam2_ros.ros import conversions as cv  # noqa: E402
from sam2_ros.ros import params, prompts  # noqa: E402
from helpers.export import Payload, fake_engine, tiny_onnx_file  # noqa: E402

ENCODINGS = list(cv.SUPPORTED_ENCODINGS)
_SPEC = cv._ENCODINGS


# --------------------------------------------------------------------------------------------
# raw images

def _random_array(rng, h, w, encoding):
    channels, depth, _ = _SPEC[encoding]
    high = 65536 if depth == 2 else 256
    a = rng.integers(0, high, (h, w, channels)).astype(np.uint16 if depth == 2 else np.uint8)
    return a[..., 0] if channels == 1 else a


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=st.sampled_from(ENCODINGS + ['32FC1', '', 'RGB8', 'jpeg', 'bgr8 ']),
       h=st.integers(-2, 40), w=st.integers(-2, 40), step_delta=st.integers(-8, 12),
       data_delta=st.sampled_from([0, 0, 0, -1, 1, -7, 64]), big=st.booleans(),
       max_pixels=st.one_of(st.none(), st.integers(1, 2000)), seed=st.integers(0, 2 ** 16))
def test_any_image_message_converts_or_is_refused_with_a_conversion_error(
        encoding, h, w, step_delta, data_delta, big, max_pixels, seed):
    """Random header fields and data lengths: a valid H x W x 3 uint8 image, or ConversionError."""
    spec = _SPEC.get(encoding, (1, 4, None))
    row = max(w, 0) * spec[0] * spec[1]
    step = max(row + step_delta, 0)
    n = max(step * max(h, 0) + data_delta, 0)
    msg = Image(height=max(h, 0), width=max(w, 0), encoding=encoding, step=step, is_bigendian=int(big))
    msg.data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    try:
        out = cv.image_to_rgb(msg, max_pixels=max_pixels)
    except cv.ConversionError as error:
        assert str(error)  # says why
        valid = (encoding in _SPEC and h > 0 and w > 0 and step >= row and n == step * h
                 and (max_pixels is None or h * w <= max_pixels)
                 and not (encoding.startswith(('yuv422', 'uyvy', 'yuyv')) and w % 2))
        assert not valid, f'a valid image was refused: {error}'
        return
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert n == step * h and step >= row and (max_pixels is None or h * w <= max_pixels)


@settings(max_examples=80, deadline=None)
@given(encoding=st.sampled_from(ENCODINGS), h=st.integers(1, 24), w=st.integers(1, 12).map(lambda x: 2 * x),
       pad=st.integers(1, 9), big=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_row_padding_gives_exactly_the_unpadded_image(encoding, h, w, pad, big, seed):
    """Every encoding, any padding (odd ones too, unaligned for 16-bit): same pixels."""
    arr = _random_array(np.random.default_rng(seed), h, w, encoding)
    plain = cv.numpy_to_image(arr, encoding, bigendian=big)
    padded = cv.numpy_to_image(arr, encoding, step=plain.step + pad, bigendian=big)
    assert padded.step == plain.step + pad and len(padded.data) == padded.step * h
    np.testing.assert_array_equal(cv.image_to_rgb(padded), cv.image_to_rgb(plain))
    np.testing.assert_array_equal(cv.image_to_numpy(padded), arr.reshape(h, w, -1))
    if encoding in ('mono8', 'mono16', '8UC1', '16UC1'):
        np.testing.assert_array_equal(cv.image_to_labels(padded), cv.image_to_labels(plain))


def test_refusals_say_what_is_wrong_and_what_is_accepted():
    good = cv.numpy_to_image(np.zeros((4, 6, 3), np.uint8), 'rgb8')
    cases = [
        (Image(height=4, width=6, encoding='32FC1', step=24, data=bytes(96)), r"unsupported image encoding '32FC1'; supported: .*rgb8"),
        (Image(height=0, width=6, encoding='rgb8', step=18), r'empty \(6x0\): width and height must be > 0'),
        (Image(height=4, width=0, encoding='rgb8', step=0), 'empty'),
        (Image(height=4, width=6, encoding='rgb8', step=17, data=bytes(68)), 'step 17 is smaller than a row'),
        (Image(height=4, width=6, encoding='rgb8', step=18, data=bytes(71)), r'needs 72 bytes of data, got 71: data must be step x height'),
        (Image(height=4, width=6, encoding='rgb8', step=18, data=bytes(73)), 'needs 72 bytes of data, got 73'),
        (Image(height=4, width=6, encoding='rgb8', step=20, data=bytes(78)), r'needs 80 bytes.*got 78'),  # last row unpadded
    ]
    for msg, pattern in cases:
        with pytest.raises(cv.ConversionError, match=pattern):
            cv.image_to_rgb(msg)
    assert cv.image_to_rgb(good).shape == (4, 6, 3)


def test_pixel_budget_is_checked_before_the_data():
    """An 8K header with no data is refused by the budget, not by the data check: the budget
    comes first, so nothing is read or allocated for a huge image."""
    assert params.SPEC_BY_NAME['max_image_pixels'].default == cv.DEFAULT_MAX_PIXELS == 3840 * 2160
    huge = Image(height=4320, width=7680, encoding='rgb8', step=7680 * 3)
    with pytest.raises(cv.ConversionError, match=r'7680x4320 = 33.2 MP, more than max_image_pixels = 8294400'):
        cv.image_to_rgb(huge, max_pixels=cv.DEFAULT_MAX_PIXELS)
    with pytest.raises(cv.ConversionError, match='label image is 7680x4320'):
        cv.image_to_labels(Image(height=4320, width=7680, encoding='mono16', step=7680 * 2),
                           max_pixels=cv.DEFAULT_MAX_PIXELS)
    ok = cv.numpy_to_image(np.zeros((2160, 3840), np.uint8), 'mono8')  # exactly the budget
    assert cv.image_to_rgb(ok, max_pixels=cv.DEFAULT_MAX_PIXELS).shape == (2160, 3840, 3)
    assert params.validate('max_image_pixels', 100) and not params.validate('max_image_pixels', 640 * 480)


# --------------------------------------------------------------------------------------------
# compressed images

def _encoded(ext, rgb, **kw):
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if kw.get('progressive') else []
    return cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), flags)[1].tobytes()


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), ext=st.sampled_from(['.jpg', '.png']),
       progressive=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_compressed_header_size_equals_the_decoded_size(h, w, ext, progressive, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data = _encoded(ext, rgb, progressive=progressive)
    kind, ww, hh = cv.compressed_size(data)
    assert (kind, ww, hh) == ('png' if ext == '.png' else 'jpeg', w, h)
    out = cv.compressed_to_rgb(CompressedImage(format=ext[1:], data=data), max_pixels=h * w)
    assert out.shape == (h, w, 3)
    if ext == '.png':
        np.testing.assert_array_equal(out, rgb)
    if h * w > 1:
        with pytest.raises(cv.ConversionError, match='from its header'):
            cv.compressed_to_rgb(CompressedImage(format=ext[1:], data=data), max_pixels=h * w - 1)


@settings(max_examples=120, deadline=None)
@given(ext=st.sampled_from(['.jpg', '.png']), cut=st.floats(0.0, 1.0), flips=st.lists(
    st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=4), prefix=st.binary(max_size=8),
    fmt=st.sampled_from(['jpeg', 'png', '', 'rgb8; jpeg compressed bgr8', '16UC1; compressedDepth']))
def test_broken_compressed_payloads_are_refused_with_a_conversion_error(ext, cut, flips, prefix, fmt):
    rgb = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    data = bytearray(_encoded(ext, rgb))
    for pos, value in flips:
        data[pos % len(data)] = value
    data = prefix + bytes(data[:int(len(data) * cut)])
    try:
        out = cv.compressed_to_rgb(CompressedImage(format=fmt, data=data), max_pixels=4096)
    except cv.ConversionError as error:
        assert str(error)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] * out.shape[1] <= 4096


def test_huge_compressed_image_is_refused_from_its_header_without_decoding(monkeypatch):
    gray = np.zeros((4320, 7680), np.uint8)
    jpg = cv2.imencode('.jpg', gray)[1].tobytes()  # 8K, about 0.4 MB compressed, 33 MP decoded
    png = cv2.imencode('.png', gray)[1].tobytes()

    def no_decoding(*args, **kwargs):
        raise AssertionError('imdecode was called for an image above the budget')
    monkeypatch.setattr(cv.cv2, 'imdecode', no_decoding)
    for fmt, data in (('jpeg', jpg), ('png', png)):
        with pytest.raises(cv.ConversionError, match=fr'compressed {fmt} image \(from its header\) is '
                                                     r'7680x4320 = 33.2 MP, more than max_image_pixels'):
            cv.compressed_to_rgb(CompressedImage(format=fmt, data=data), max_pixels=cv.DEFAULT_MAX_PIXELS)
    for data, pattern in ((b'\xff\xd8\xff\xd9', 'no frame header'), (b'\xff\xd8\x00\x00\x00\x00', 'no marker'),
                          (b'\x89PNG\r\n\x1a\n\0\0\0\rXXXX', 'no IHDR')):
        with pytest.raises(cv.ConversionError, match=pattern):
            cv.compressed_to_rgb(CompressedImage(format='jpeg', data=data))


# --------------------------------------------------------------------------------------------
# prompts

_finite = st.floats(-1e4, 1e4, allow_nan=False)
_any_float = st.one_of(_finite, st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, 1e30, -1e300]))


@st.composite
def markers(draw):
    m = ImageMarker()
    m.id = draw(st.one_of(st.integers(-5, 70000), st.integers(-2 ** 31, 2 ** 31 - 1)))
    m.type = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 4, 4, 1, 3]), st.integers(-2 ** 31, 2 ** 31 - 1)))
    m.action = draw(st.one_of(st.sampled_from([0, 0, 0, 1, 2, 3]), st.integers(-2 ** 31, 2 ** 31 - 1)))
    m.ns = draw(st.text(max_size=8))
    n = draw(st.one_of(st.integers(0, 4), st.integers(0, 80)))
    zs = st.one_of(st.sampled_from([0.0, 1.0]), _any_float)
    m.points = [Point(x=draw(_any_float), y=draw(_any_float), z=draw(zs)) for _ in range(n)]
    m.header.stamp = Time(sec=draw(st.integers(0, 2 ** 31 - 1)), nanosec=draw(st.integers(0, 999_999_999)))
    return m


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(marker=markers(), frame=st.tuples(st.integers(1, 3000), st.integers(1, 3000)))
def test_any_marker_parses_to_a_valid_op_or_raises_prompt_message_error(marker, frame):
    try:
        op = prompts.marker_to_op(marker)
    except prompts.PromptMessageError as error:
        assert str(error)
        return
    assert 1 <= op.obj_id <= prompts.MAX_ID and op.kind in ('add', 'remove')
    if op.kind == 'remove':
        assert op.prompt is None and marker.action == ImageMarker.REMOVE
        return
    assert marker.action == ImageMarker.ADD and marker.type in (1, 3, 4)
    p = op.prompt
    if p.points is not None:
        assert 1 <= len(p.points) <= prompts.MAX_POINTS and set(np.unique(p.labels)) <= {0, 1}
        assert np.isfinite(p.points).all()
    else:
        assert p.box[0] <= p.box[2] and p.box[1] <= p.box[3] and np.isfinite(p.box).all()
    # against a frame: the prompt the tracker gets is valid, or PromptError saying why
    try:
        prompts.fit_to_frame(op, frame)
    except prompts.PromptError as error:
        assert str(error)
        return
    pts, labs, mask = op.prompt.parsed(frame)
    h, w = frame
    assert ((pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)).all()


@settings(max_examples=60, deadline=None)
@given(x=_any_float, y=_any_float, obj_id=st.integers(-3, 70000))
def test_any_click_parses_or_raises_prompt_message_error(x, y, obj_id):
    try:
        op = prompts.click_to_op(Point(x=x, y=y, z=0.0), obj_id)
    except prompts.PromptMessageError:
        assert not (np.isfinite([x, y]).all() and 1 <= obj_id <= prompts.MAX_ID)
        return
    assert op.obj_id == obj_id and np.isfinite(op.prompt.points).all()


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), n_ids=st.integers(0, 40), max_ids=st.integers(1, 20),
       seed=st.integers(0, 2 ** 16))
def test_label_image_prompts_are_bounded_by_max_objects(h, w, n_ids, max_ids, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_ids + 1, (h, w)).astype(np.uint16)
    present = set(np.unique(labels).tolist()) - {0}
    try:
        ops = prompts.labels_to_ops(labels, 5, max_ids=max_ids)
    except prompts.PromptMessageError as error:
        assert not present or len(present) > max_ids, error
        return
    assert {o.obj_id for o in ops} == present and len(ops) <= max_ids
    for o in ops:
        assert prompts.fit_to_frame(o, (h, w)) is None


def test_box_clipping_and_out_of_frame_points():
    def box_op(box):
        return prompts.marker_to_op(ImageMarker(id=3, type=ImageMarker.LINE_STRIP, points=[
            Point(x=float(box[0]), y=float(box[1])), Point(x=float(box[2]), y=float(box[3]))]))
    op = box_op([-20, 10, 200, 50])
    note = prompts.fit_to_frame(op, (96, 160))
    assert 'reaches past the 160 x 96 frame; clipped to [0.0, 10.0, 160.0, 50.0]' in note
    np.testing.assert_array_equal(op.prompt.box, [0, 10, 160, 50])
    op = box_op([150, 10, 90, 50])  # corners in any order: accepted as is
    assert prompts.fit_to_frame(op, (96, 160)) is None
    np.testing.assert_array_equal(op.prompt.box, [90, 10, 150, 50])
    with pytest.raises(prompts.PromptError, match='lies outside the 160 x 96 frame'):
        prompts.fit_to_frame(box_op([170, 10, 300, 50]), (96, 160))
    with pytest.raises(prompts.PromptError, match='needs x1 > x0'):
        prompts.fit_to_frame(box_op([40, 10, 40, 50]), (96, 160))  # zero width
    op = prompts.marker_to_op(ImageMarker(id=4, type=ImageMarker.POINTS, points=[Point(x=500.0, y=3.0, z=1.0)]))
    with pytest.raises(prompts.PromptError, match='refused, not clipped'):
        prompts.fit_to_frame(op, (96, 160))
    with pytest.raises(prompts.PromptMessageError, match=f'65 points; a prompt has at most {prompts.MAX_POINTS}'):
        prompts.marker_to_op(ImageMarker(id=4, type=ImageMarker.POINTS,
                                         points=[Point(x=1.0, y=1.0, z=1.0)] * 65))
    with pytest.raises(prompts.PromptMessageError, match='finite'):
        prompts.marker_to_op(ImageMarker(id=4, type=ImageMarker.POINTS, points=[Point(x=1e300, y=1.0, z=1.0)]))


def _op(obj_id, stamp=0, mask=None):
    p = prompts.Prompt(obj_id, mask=mask) if mask is not None else prompts.Prompt(obj_id, points=[[1, 1]], labels=[1])
    return prompts.PromptOp('add', obj_id, p, stamp_ns=stamp, source='test')


def test_prompt_queue_stays_bounded_under_a_flood():
    q = prompts.PromptQueue(8)
    for i in range(10_000):  # 8 objects prompted far faster than frames are tracked
        q.push(_op(1 + i % 8))
    assert len(q) == 8 * prompts.MAX_PENDING_PER_OBJECT
    assert q.dropped == 10_000 - 8 * prompts.MAX_PENDING_PER_OBJECT
    batch = q.take(1)
    assert len(batch.adds) == 8 and any('arrive faster than frames are tracked' in w for w in batch.warnings)
    assert not q.take(2).warnings  # reported once
    # the newest prompts are kept: the last pushed for object 1 is still waiting
    q2 = prompts.PromptQueue(8)
    for i in range(10):
        q2.push(_op(1, stamp=i + 1))
    assert [o.stamp_ns for o in q2._ops] == [7, 8, 9, 10]
    # distinct ids: at most MAX_PENDING in all
    q3 = prompts.PromptQueue(8)
    for i in range(1, 2000):
        q3.push(_op(i))
    assert len(q3) == prompts.MAX_PENDING and q3.dropped == 1999 - prompts.MAX_PENDING
    # big masks: bounded by bytes
    q4 = prompts.PromptQueue(8)
    mask = np.zeros((2160, 3840), bool)  # 8.3 MB each
    for i in range(1, 60):
        q4.push(_op(i, mask=mask))
    assert sum(o.prompt.mask.nbytes for o in q4._ops) <= prompts.MAX_PENDING_BYTES
    assert 'MiB of masks' in ' '.join(q4.take(1).warnings)


# --------------------------------------------------------------------------------------------
# files: checkpoints, ONNX, engines


@pytest.mark.parametrize('how', ['torch-zip', 'pickle-2', 'pickle-4', 'pickle-5', 'pickle-0', 'eval', 'popen',
                                 'nested-in-state-dict'])
def test_checkpoints_that_would_run_code_are_refused_with_the_reason(tmp_path, how):
    from sam2_ros.model.checkpoint import CheckpointError, load_checkpoint_file

    marker = tmp_path / 'pwned'
    system = Payload(os.system, (f'touch {marker}',))
    path = tmp_path / f'{how}.pt'
    if how == 'torch-zip':
        torch.save({'model': system}, path)
    elif how.startswith('pickle-'):
        path.write_bytes(pickle.dumps(system, protocol=int(how[-1])))
    elif how == 'eval':
        torch.save(Payload(eval, (f"__import__('pathlib').Path({str(marker)!r}).touch()",)), path)
    elif how == 'popen':
        torch.save({'model': Payload(subprocess.Popen, (['touch', str(marker)],))}, path,
                   _use_new_zipfile_serialization=False)
    else:
        torch.save({'model': {'w': torch.zeros(2), 'b': system}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    text = str(info.value)
    if how == 'pickle-0':  # a text pickle is not a torch file at all
        assert 'not a PyTorch checkpoint' in text
    else:
        assert 'refusing to load' in text and 'can run code' in text and 'weights_only=True' in text
    assert not marker.exists()


def test_node_refuses_a_code_running_checkpoint_at_configure(tmp_path):
    """Through the node's own loader (build_model): the same refusal, nothing ran."""
    from sam2_ros.model.build import build_model
    from sam2_ros.model.checkpoint import CheckpointError

    marker = tmp_path / 'pwned'
    torch.save({'model': Payload(os.system, (f'touch {marker}',))}, tmp_path / 'sam2.1_hiera_tiny.pt')
    with pytest.raises(CheckpointError, match='refusing to load'):
        build_model(str(tmp_path / 'sam2.1_hiera_tiny.pt'), 'tiny', 64, 'cpu')
    assert not marker.exists()


@pytest.fixture(scope='module')
def tiny64():
    from sam2_ros.model.build import build_random_model

    return build_random_model('tiny', 64, 'cpu')


def test_engine_files_are_checked_before_use(tmp_path, tiny64, caplog):
    """No TensorRT needed: hash, metadata and model facts are checked before the engine would
    be deserialized."""
    from sam2_ros.backends import BackendError, BackendMismatchError
    from sam2_ros.backends.tensorrt_backend import check_engine_file

    engine = fake_engine(tmp_path, tiny64)
    assert check_engine_file(tiny64, engine)['gpu_name'] == 'X'
    engine.write_bytes(b'\x00tampered' * 100)  # replaced after it was built
    with pytest.raises(BackendMismatchError, match='replaced or corrupted after it was built'):
        check_engine_file(tiny64, engine)
    other = fake_engine(tmp_path, tiny64, onnx_metadata={'part': 'encoder', 'model': 'small', 'image_size': '64',
                                                          'weights_fingerprint': 'x'})
    with pytest.raises(BackendMismatchError, match='model: file has small, expected tiny'):
        check_engine_file(tiny64, other)
    with caplog.at_level('WARNING'):
        legacy = fake_engine(tmp_path, tiny64, engine_sha256=None)
        check_engine_file(tiny64, legacy)
    assert 'records no engine_sha256' in caplog.text
    Path(str(engine) + '.json').unlink()
    with pytest.raises(BackendError, match='sam2_ros only runs engines whose metadata it can check'):
        check_engine_file(tiny64, engine)
    Path(str(engine) + '.json').write_text('{not json')
    with pytest.raises(BackendError, match='not valid JSON'):
        check_engine_file(tiny64, engine)


def test_onnx_files_are_checked_before_use(tmp_path, tiny64):
    pytest.importorskip('onnxruntime')
    from sam2_ros.backends import BackendError, BackendMismatchError, make_encoder, make_encoder_or_fallback
    from sam2_ros.backends.metadata import expected_facts

    facts = expected_facts(tiny64)
    other_model = tiny_onnx_file(tmp_path / 'small.onnx', **dict(facts, model='small'))
    with pytest.raises(BackendMismatchError, match='model: file has small, expected tiny'):
        make_encoder('onnxruntime', tiny64, str(other_model))
    other_weights = tiny_onnx_file(tmp_path / 'w.onnx', **dict(facts, weights_fingerprint='0' * 16))
    with pytest.raises(BackendMismatchError, match='another checkpoint'):
        make_encoder('onnxruntime', tiny64, str(other_weights))
    unlabeled = tiny_onnx_file(tmp_path / 'none.onnx')
    with pytest.raises(BackendMismatchError, match='the file does not say'):
        make_encoder('onnxruntime', tiny64, str(unlabeled))
    right_facts_wrong_graph = tiny_onnx_file(tmp_path / 'graph.onnx', **facts)
    with pytest.raises(BackendError, match='is not an encoder graph'):
        make_encoder('onnxruntime', tiny64, str(right_facts_wrong_graph))
    warnings = []
    enc, used = make_encoder_or_fallback('onnxruntime', tiny64, str(other_model), warn=warnings.append)
    assert used == 'torch' and 'falling back to the torch encoder' in warnings[0] and 'small' in warnings[0]


# --------------------------------------------------------------------------------------------
# parameters

def test_bad_configuration_values_are_refused_with_the_reason():
    assert 'tiny, small, base_plus' in (params.validate('model', 'huge') or '')
    if not torch.cuda.is_available():
        assert 'sees no CUDA device' in params.validate('device', 'cuda')
        assert 'sees no CUDA device' in params.change_refusal('device', 'cuda:1', 'unconfigured')
    assert 'must be in [4096' in params.validate('max_image_pixels', 0)
    with pytest.raises(params.ParameterError, match='device'):
        params.validate_all({'device': 'gpu', 'model': 'tiny'})


def test_frame_queue_is_bounded_in_frames_and_bytes(monkeypatch):
    """frame_policy all keeps every frame in order, but not without bound: at most
    ALL_POLICY_QUEUE_LIMIT frames and ALL_POLICY_QUEUE_BYTES of image data wait; the oldest go
    (counted as dropped). latest keeps one."""
    pytest.importorskip('rclpy')
    from sam2_ros.ros import frame_queue as node_mod
    from sam2_ros.ros.diagnostics import Stats

    monkeypatch.setattr(node_mod, 'ALL_POLICY_QUEUE_BYTES', 1000)
    stats = Stats()
    q = node_mod.FrameQueue(stats)
    q.policy = 'all'
    for i in range(10):
        q.put((Image(data=bytes(300)), False, float(i)))
    assert len(q._items) == 3 and stats.dropped == 7
    assert [item[2] for item in q._items] == [7.0, 8.0, 9.0]  # the newest, in order
    monkeypatch.setattr(node_mod, 'ALL_POLICY_QUEUE_BYTES', 1 << 30)
    for i in range(node_mod.ALL_POLICY_QUEUE_LIMIT + 20):
        q.put((Image(), False, float(i)))
    assert len(q._items) == node_mod.ALL_POLICY_QUEUE_LIMIT
    q.set_policy('latest')
    q.put((Image(), False, 0.0))
    assert len(q._items) == 1 and stats.queue_max == node_mod.ALL_POLICY_QUEUE_LIMIT
