"""Reliability of the sam2_tracker node over DDS: bad images, bad prompts, bad
configuration, a flood of frames and prompts, signals. The node runs in its own process
(``python -m sam2_ros``, tiny model with random weights at 128 px on the CPU) and this process
is the client, as in test_ros_node.py (whose helpers are reused).

The rule checked for every case: a specific log line saying what was wrong (rate-limited), a
diagnostic (counter and ``last_error`` on /diagnostics), the message skipped, and the node
still answering afterwards. Unit-level counterparts (hypothesis): test_reliability_units.py.
"""
import array
import signal
import time

import cv2
import numpy as np
import pytest
import torch

rclpy = pytest.importorskip('rclpy')

from geometry_msgs.msg import Point  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import ImageMarker  # noqa: E402

from sam2_ros.ros import conversions  # noqa: E402
from helpers.ros import (fresh_status, status, H, W, Client, NodeProcess, raw_image, checkpoint, frames, k_ns,  # noqa: E402,F401
                           make_stamp, next_k, rect, ros_env)

NS = '/rel'


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint):  # noqa: F811
    proc = NodeProcess(tmp_path_factory.mktemp('rel'), checkpoint, '-r', f'__ns:={NS}', name='rel')
    yield proc
    code = proc.stop(signal.SIGINT)
    assert code == 0, proc.stderr()
    assert 'Traceback' not in proc.stderr()


@pytest.fixture(scope='module')
def client(node):
    c = Client(NS, name='rel_client')
    c.wait_ready(proc=node)
    yield c
    c.close()


@pytest.fixture
def fresh(client):
    assert all(r.successful for r in client.set_params(frame_policy='latest', max_objects=16,
                                                       max_image_pixels=3840 * 2160))
    assert client.reset().success
    return client


def counter(c, key):
    return int(float(fresh_status(c)[key]))


def publish_image(c, msg, k):
    msg.header.stamp = make_stamp(k)
    msg.header.frame_id = 'camera'
    c.image_pub.publish(msg)
    return k_ns(k)


def logged(node, mark, text, timeout=10.0):
    ok = Client.wait_for(lambda: text in node.stderr()[mark:], timeout)
    assert ok, f'{text!r} not logged:\n{node.stderr()[mark:][-3000:]}'
    return True


def labels_of(msg):
    return conversions.image_to_labels(msg)


# --------------------------------------------------------------------------------------------
# bad images

def test_bad_images_are_refused_with_the_reason_and_tracking_goes_on(fresh, frames, node):
    c = fresh
    k = next_k(30)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 1
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[0], k)
    refused0 = counter(c, 'frames_refused')
    mark = len(node.stderr())
    short = conversions.numpy_to_image(frames[1], 'rgb8')
    short.data = short.data[:-W * 3]  # one row missing
    long_ = conversions.numpy_to_image(frames[1], 'rgb8')
    long_.data = array.array('B', bytes(long_.data) + bytes(100))
    narrow = conversions.numpy_to_image(frames[1], 'rgb8')
    narrow.step = W * 3 - 1
    huge = Image(height=4320, width=7680, encoding='rgb8', step=7680 * 3)  # 8K, no data sent
    cases = [
        (raw_image(np.zeros((H, W), np.float32), '32FC1'), "image skipped: unsupported image encoding '32FC1'; supported:"),
        (short, f'needs {3 * W * H} bytes of data, got {3 * W * (H - 1)}: data must be step x height bytes'),
        (long_, None),  # the same kind as `short`: counted, its log line rate-limited
        (Image(encoding='rgb8'), 'image skipped: image is empty (0x0): width and height must be > 0'),
        (narrow, f'step {3 * W - 1} is smaller than a row'),
        (huge, 'image is 7680x4320 = 33.2 MP, more than max_image_pixels = 8294400'),
    ]
    for j, (msg, text) in enumerate(cases):
        key = publish_image(c, msg, k + 1 + j)
        if text:
            logged(node, mark, text)
        else:
            time.sleep(0.5)
        assert key not in c.masks
    # every one counted, the last reason on /diagnostics, and the node still tracks object 1
    out = c.frame_and_wait(frames[2], k + 10)
    assert set(np.unique(labels_of(out))) <= {0, 1}
    values = fresh_status(c)
    assert int(values['frames_refused']) - refused0 == len(cases)
    assert 'max_image_pixels' in values['last_error'] and int(values['objects']) == 1
    assert 'Traceback' not in node.stderr()[mark:]
    # rate-limited: the same kind again within 5 s is not logged again
    publish_image(c, short, k + 11)
    c.frame_and_wait(frames[3], k + 12)
    assert node.stderr()[mark:].count('bytes of data, got') == 1


def test_row_padding_is_read_correctly(fresh, frames, node):
    """The same frame sent plain, with padded rows (rgb8), and padded odd (bgr8): the overlay
    (the converted frame with the masks drawn) and the masks of a new object started by the
    same click are identical each time, and the overlay shows the frame."""
    c = fresh
    k = next_k(10)
    outs, overlays = [], []
    for j, kw in enumerate([{}, {'step': 3 * W + 5}, {'encoding': 'bgr8', 'step': 3 * W + 7}]):
        assert c.reset().success
        c.marker(3, points=[[80, 40], [20, 80]], labels=[1, 0], k=k + j)
        outs.append(labels_of(c.frame_and_wait(frames[20], k + j, **kw)))
        assert c.wait_for(lambda: k_ns(k + j) in c.overlays, 10), 'no overlay'
        overlays.append(conversions.image_to_rgb(c.overlays[k_ns(k + j)]))
    for j in (1, 2):
        np.testing.assert_array_equal(outs[j], outs[0])
        np.testing.assert_array_equal(overlays[j], overlays[0])
    # where no mask is drawn, the overlay is the frame: the median, since an object without a
    # mask gets an "object 3 (score): no mask" tag in a corner (a misread frame moves every pixel)
    outside = outs[0] != 3
    diff = np.abs(overlays[0].astype(int) - frames[20].astype(int)).sum(-1)[outside]
    assert diff.size == 0 or np.median(diff) < 8, np.median(diff)
    # a mono8 label-image prompt with padded rows is read exactly too
    assert c.reset().success
    labels = np.zeros((H, W), np.uint8)
    labels[rect(20, 50, 30, 100)] = 4
    msg = conversions.numpy_to_image(labels, 'mono8', step=W + 3)
    msg.header.stamp = make_stamp(k + 5)
    c.mask_pub.publish(msg)
    time.sleep(0.15)
    out = labels_of(c.frame_and_wait(frames[21], k + 5))
    inter = ((out == 4) & (labels == 4)).sum()
    assert inter / ((out == 4) | (labels == 4)).sum() > 0.95


def test_size_change_mid_stream_resets_with_a_warning_and_goes_on(fresh, frames, node):
    c = fresh
    mark = len(node.stderr())
    k = next_k(4)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 2
    c.mask_prompt(labels, k=k)
    assert (labels_of(c.frame_and_wait(frames[4], k)) == 2).any()
    out = c.frame_and_wait(cv2.resize(frames[5], (96, 64)), k + 1)
    assert (out.width, out.height) == (96, 64) and not labels_of(out).any()
    logged(node, mark, 'image size changed from 160x96 to 96x64: tracker reset, 1 object(s) dropped')
    assert c.frame_and_wait(frames[6], k + 2).width == W


def test_bad_compressed_images_are_refused_and_tracking_goes_on(fresh, frames, node):
    c = fresh
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert c.set_params(image_transport='compressed')[0].successful
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    try:
        assert c.wait_for(lambda: c.compressed_pub.get_subscription_count() > 0, 10)
        mark = len(node.stderr())
        refused0 = counter(c, 'frames_refused')
        k = next_k(10)
        jpg = cv2.imencode('.jpg', frames[7][..., ::-1])[1].tobytes()
        huge = cv2.imencode('.jpg', np.zeros((4320, 7680), np.uint8))[1].tobytes()  # 8K, 0.4 MB
        from helpers.payloads import bombs, unaccepted

        bomb = bombs()
        other = unaccepted()
        cases = [
            ('jpeg', b'definitely not a jpeg', 'compressed image data is unknown format (first bytes 64 65'),
            ('jpeg', jpg[:len(jpg) // 2], 'OpenCV could not decode the compressed jpeg image'),  # truncated
            ('jpeg', huge, 'compressed jpeg image (from its header) is 7680x4320 = 33.2 MP'),
            ('16UC1; compressedDepth png', jpg, 'compressed depth images'),
            ('jpeg', b'', 'compressed image has no data'),
            # a bomb in every accepted format, refused from its header whatever the
            # label says; formats that cannot be sized up front refused from their bytes
            ('jpeg', bomb['bmp_rle'][0], 'compressed bmp image (from its header) is 8000x8000 = 64.0 MP'),
            ('png', bomb['webp_lossless'][0], 'compressed webp image (from its header) is 6000x6000'),
            ('jpeg', bomb['png'][0], 'compressed png image (from its header) is 8000x8000'),
            ('jpeg', bomb['ppm'][0], 'compressed pnm image (from its header) is 20000x20000'),
            ('png', other['tiff'][0], 'compressed image data is TIFF'),
            ('jpeg', other['gif'][0], 'compressed image data is GIF'),
            ('png', other['avif'][0], "compressed image data is 'avif' ISO media file"),
        ]
        too_large0, format0 = counter(c, 'frames_refused_too_large'), counter(c, 'frames_refused_format')
        for j, (fmt, data, text) in enumerate(cases):
            msg = CompressedImage(format=fmt)
            msg.header.stamp = make_stamp(k + j)
            msg.data = array.array('B', data)
            c.compressed_pub.publish(msg)
            if text:
                logged(node, mark, text)
            else:
                time.sleep(0.5)
        msg = CompressedImage(format='jpeg')
        msg.header.stamp = make_stamp(k + 8)
        msg.data = array.array('B', jpg)
        c.compressed_pub.publish(msg)
        assert c.wait_for(lambda: k_ns(k + 8) in c.masks, 10), 'a good frame after the bad ones was not answered'
        values = fresh_status(c)
        assert int(values['frames_refused']) - refused0 == len(cases)
        assert int(values['frames_refused_too_large']) - too_large0 == 5
        assert int(values['frames_refused_format']) - format0 == 5  # junk, depth, TIFF, GIF, AVIF
        assert 'accepted are JPEG, PNG, WebP, BMP and PNM' in node.stderr()[mark:]
        assert 'Traceback' not in node.stderr()[mark:]
    finally:
        assert c.transition(Transition.TRANSITION_DEACTIVATE)
        assert c.set_params(image_transport='raw')[0].successful
        assert c.transition(Transition.TRANSITION_ACTIVATE)
        c.wait_ready()


# --------------------------------------------------------------------------------------------
# bad prompts

def _marker(obj_id, type_=ImageMarker.POINTS, points=(), action=ImageMarker.ADD, k=None):
    m = ImageMarker(id=obj_id, type=type_, action=action)
    m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points]
    if k is not None:
        m.header.stamp = make_stamp(k)
    return m


def test_bad_prompts_are_refused_with_the_reason_and_tracking_goes_on(fresh, frames, node):
    c = fresh
    k = next_k(10)
    c.frame_and_wait(frames[8], k)
    errors0 = counter(c, 'prompt_errors')
    mark = len(node.stderr())
    nan, inf = float('nan'), float('inf')
    # refused on arrival (the message itself is wrong)
    on_arrival = [
        (_marker(1, points=[(nan, 10, 1)]), 'point coordinates must be finite numbers'),
        (_marker(1, points=[(10, inf, 1)]), None),  # same kind: counted, log rate-limited
        (_marker(1, points=[]), 'a POINTS marker needs at least one point'),
        (_marker(1, points=[(10, 10, 2)]), 'point labels (z) must be 1 (foreground) or 0 (background)'),
        (_marker(1, ImageMarker.LINE_STRIP, points=[(1, 1, 0)]), 'a box is a LINE_STRIP with exactly 2 points'),
        (_marker(1, ImageMarker.POLYGON, points=[(1, 1, 0)] * 3), None),
        (_marker(1, points=[(5, 5, 1)] * 65), '65 points; a prompt has at most 64'),
        (_marker(-4, points=[(5, 5, 1)]), 'ImageMarker.id (the object id) -4 is out of range'),
        (_marker(1, points=[(5, 5, 1)], action=7), 'ImageMarker.action 7 is not supported'),
        (_marker(1, ImageMarker.CIRCLE, points=[(5, 5, 1)]), 'ImageMarker.type CIRCLE is not a prompt'),
    ]
    for msg, text in on_arrival:
        c.marker_pub.publish(msg)
        if text:
            logged(node, mark, text)
    c.click_pub.publish(Point(x=nan, y=3.0))
    logged(node, mark, '~/click: prompt skipped: click coordinates must be finite')
    many = np.arange(H * W, dtype=np.uint16).reshape(H, W) % 20  # 19 ids > max_objects 16
    bad_masks = [
        (conversions.numpy_to_image(frames[0], 'rgb8'), 'a label image must be mono8 or mono16'),
        (conversions.numpy_to_image(many, 'mono16'), 'the label image has 19 object ids, more than max_objects = 16'),
        (conversions.numpy_to_image(np.zeros((H, W), np.uint16), 'mono16'), 'the label image has no object'),
        (Image(height=4320, width=7680, encoding='mono16', step=7680 * 2), 'label image is 7680x4320 = 33.2 MP'),
    ]
    for msg, text in bad_masks:
        c.mask_pub.publish(msg)
        logged(node, mark, text)
    n_arrival = len(on_arrival) + 1 + len(bad_masks)
    # refused against the frame they apply to
    c.marker_pub.publish(_marker(2, points=[(500, 10, 1)]))
    c.marker_pub.publish(_marker(3, ImageMarker.LINE_STRIP, points=[(170, 10, 0), (300, 50, 0)]))
    c.marker_pub.publish(_marker(4, ImageMarker.LINE_STRIP, points=[(40, 10, 0), (40, 50, 0)]))
    c.marker_pub.publish(_marker(42, action=ImageMarker.REMOVE))
    c.mask_prompt(np.ones((10, 10), np.uint16) * 5)
    # accepted: a box reaching past the border is clipped (and said so); corners in any order
    c.marker_pub.publish(_marker(6, ImageMarker.LINE_STRIP, points=[(-20, 60, 0), (40, 120, 0)]))
    c.marker_pub.publish(_marker(7, ImageMarker.POLYGON, points=[(150, 40, 0), (100, 10, 0)]))
    time.sleep(0.3)
    c.frame_and_wait(frames[9], k + 1)
    for text in ('points outside the frame are refused, not clipped',
                 'box [170.0, 10.0, 300.0, 50.0] lies outside the 160 x 96 frame',
                 'box [40.0, 10.0, 40.0, 50.0] needs x1 > x0 and y1 > y0',
                 'remove: object 42 is not tracked',
                 'mask has shape (10, 10), the frame is 96 x 160; masks must match the frame',
                 'box [-20.0, 60.0, 40.0, 120.0] reaches past the 160 x 96 frame; clipped to [0.0, 60.0, 40.0, 96.0]'):
        logged(node, mark, text)
    n_frame = 5
    values = fresh_status(c)
    assert int(values['objects']) == 2  # 6 (clipped) and 7
    assert int(values['prompt_errors']) - errors0 == n_arrival + n_frame
    assert values['last_error']
    # more objects than max_objects: the extra one is refused, the rest tracked
    assert c.set_params(max_objects=3)[0].successful
    labels = np.zeros((H, W), np.uint16)
    labels[rect(0, 20, 0, 20)] = 8
    labels[rect(0, 20, 40, 60)] = 9
    c.mask_prompt(labels, k=k + 2)
    out = labels_of(c.frame_and_wait(frames[10], k + 2))
    logged(node, mark, 'object 9 would be object 4; max_objects is 3')
    assert 8 in out and 9 not in out
    assert int(fresh_status(c)['objects']) == 3
    assert 'Traceback' not in node.stderr()[mark:]


def test_prompt_stamped_older_than_the_buffer_applies_with_a_warning(fresh, frames, node):
    """The prompt-stamp rules belong to the prompt queue (README "Prompt timing"); here only:
    an old stamp is not an error that stops anything, and it is said."""
    c = fresh
    mark = len(node.stderr())
    k = next_k(14)
    for j in range(10):  # more than prompt_buffer (8) frames
        c.frame_and_wait(frames[j], k + j)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 5
    c.mask_prompt(labels, k=k)  # stamped with the first of them
    out = labels_of(c.frame_and_wait(frames[11], k + 11))
    logged(node, mark, 'is older than the last 8')
    assert 'prompt_buffer' in node.stderr()[mark:]
    inter = ((out == 5) & (labels == 5)).sum()  # applied to the next frame: the mask comes back
    assert inter / ((out == 5) | (labels == 5)).sum() > 0.95
    c.frame_and_wait(frames[12], k + 12)


def test_reordered_frames_and_time_jumps_do_not_stop_tracking(fresh, frames, node):
    """Stamp handling belongs to sam2_ros.ros.timeline (test_ros_timing.py); here only the
    reliability rule: a frame stamped slightly before the last one is dropped and said, a jump
    back in time resets with a warning, and the node answers the frames after either."""
    c = fresh
    mark = len(node.stderr())
    k = next_k(30)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 1
    c.mask_prompt(labels, k=k + 20)
    c.frame_and_wait(frames[0], k + 20)
    late = c.frame(frames[1], k + 18)  # 0.2 s before the last tracked frame: reordered
    logged(node, mark, 'older than the last tracked frame')
    assert late not in c.masks
    assert (labels_of(c.frame_and_wait(frames[2], k + 21)) <= 1).all()
    back = c.frame_and_wait(frames[3], k)  # 2.1 s back: more than time_jump_threshold (1 s)
    logged(node, mark, 'time jumped back from')
    assert not labels_of(back).any()  # objects dropped with the old timeline
    c.frame_and_wait(frames[4], k + 1)
    assert 'Traceback' not in node.stderr()[mark:]


# --------------------------------------------------------------------------------------------
# load

def test_flood_of_frames_and_prompts_stays_bounded(fresh, frames, node):
    """Frames at 100 Hz and prompts at 50 Hz for 6 s, eight objects, frame_policy latest: the
    node answers in stamp order, drops frames (counted) rather than queueing them, at most one
    frame waits, waiting prompts stay bounded, and the newest frame is answered soon after."""
    from sam2_ros.ros.prompts import MAX_PENDING_PER_OBJECT

    c = fresh
    k = next_k(1000)
    labels = np.zeros((H, W), np.uint16)
    for i in range(8):
        labels[rect(10 + 40 * (i // 4), 40 + 40 * (i // 4), 5 + 38 * (i % 4), 35 + 38 * (i % 4))] = i + 1
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[0], k)
    before = fresh_status(c)
    mark = len(node.stderr())
    keys = []
    pending = []
    start = time.monotonic()
    j = 0
    duration = 6.0
    while time.monotonic() - start < duration:
        j += 1
        keys.append(c.frame(frames[j % len(frames)], k + j))
        if j % 2 == 0:
            obj = 1 + (j // 2) % 8
            c.marker_pub.publish(_marker(obj, points=[(5 + 38 * ((obj - 1) % 4) + 15, 25, 1)]))
        if j % 100 == 0:
            s = status(c)
            if s:
                pending.append(int(s['prompts_pending']))
        time.sleep(max(0.0, start + j / 100.0 - time.monotonic()))
    sent_at = time.monotonic()
    last = keys[-1]
    assert c.wait_for(lambda: last in c.masks, 15), 'the newest frame was not answered'
    answered_in = c.masks[last][1] - sent_at
    with c.lock:
        answered = [s for s in c.mask_order if s in set(keys)]
    after = fresh_status(c)
    dropped = int(after['frames_dropped']) - int(before['frames_dropped'])
    assert answered == sorted(answered) and len(set(answered)) == len(answered)  # stamps only increase
    assert 3 <= len(answered) < len(keys) and dropped > 0
    assert int(after['frames_waiting_max']) <= 1  # latest: never a backlog
    assert max(pending + [int(after['prompts_pending'])]) <= 8 * MAX_PENDING_PER_OBJECT
    assert answered_in < 10.0, answered_in  # bounded: one frame in progress, never a backlog
    assert int(after['objects']) == 8
    assert 'Traceback' not in node.stderr()[mark:]
    print(f'flood: {len(keys)} frames sent in {duration} s, {len(answered)} answered, {dropped} dropped, '
          f'prompts pending max {max(pending + [0])}, dropped prompts {after.get("prompts_dropped")}, '
          f'newest answered {answered_in:.2f} s after it was sent')


# --------------------------------------------------------------------------------------------
# configuration (a node of its own, not autostarted: every failure leaves it unconfigured)

def _configure_fails(c, proc, text, mark):
    assert not c.transition(Transition.TRANSITION_CONFIGURE)
    assert c.state() == 'unconfigured'
    logged(proc, mark, text)


def test_bad_configuration_is_refused_at_configure_with_the_reason(tmp_path, checkpoint, frames):  # noqa: F811
    import os

    pytest.importorskip('onnx')
    from helpers.export import fake_engine, Payload, tiny_onnx_file

    good = checkpoint
    data = open(good, 'rb').read()
    (tmp_path / 'truncated.pt').write_bytes(data[:len(data) // 3])
    (tmp_path / 'corrupt.pt').write_bytes(bytes(np.random.default_rng(0).integers(1, 255, 4096, dtype=np.uint8)))
    marker = tmp_path / 'pwned'
    torch.save({'model': Payload(os.system, (f'touch {marker}',))}, tmp_path / 'evil.pt')
    from sam2_ros.backends.metadata import expected_facts
    from sam2_ros.model.build import build_model

    model = build_model(good, 'tiny', 128, 'cpu')
    onnx_path = tiny_onnx_file(tmp_path / 'enc.onnx', **dict(expected_facts(model), model='small'))
    engine = fake_engine(tmp_path, model)
    del model

    proc = NodeProcess(tmp_path, good, '-r', '__ns:=/config', 'autostart:=false', 'device:=cuda', name='config')
    c = Client('/config', name='config_client')
    try:
        assert c.state() == 'unconfigured'
        mark = 0
        if not torch.cuda.is_available():
            _configure_fails(c, proc, "cannot configure: device 'cuda': this torch", mark)
            assert 'sees no CUDA device; use cpu or auto' in proc.stderr()
            (r,) = c.set_params(device='cuda:0')
            assert not r.successful and 'sees no CUDA device' in r.reason
        assert c.set_params(device='cpu')[0].successful
        (r,) = c.set_params(model='huge')
        assert not r.successful and "unknown model 'huge'; choose one of tiny, small" in r.reason
        for path, text in [
            (tmp_path / 'missing.pt', f"checkpoint file not found: '{tmp_path / 'missing.pt'}'"),
            (tmp_path / 'truncated.pt', 'truncated.pt\' is truncated'),
            (tmp_path / 'corrupt.pt', "corrupt.pt' is not a PyTorch checkpoint"),
            (tmp_path / 'evil.pt', 'refusing to load'),
        ]:
            mark = len(proc.stderr())
            assert c.set_params(checkpoint=str(path))[0].successful
            _configure_fails(c, proc, text, mark)
            assert 'cannot configure' in proc.stderr()[mark:]
        assert not marker.exists()  # the evil checkpoint's code never ran
        mark = len(proc.stderr())
        assert all(r.successful for r in c.set_params(checkpoint=good, model='small'))
        _configure_fails(c, proc, "checkpoint is hiera 'tiny' but model='small' was requested: pass model:=tiny", mark)
        # an encoder file made for something else: configure falls back to torch, saying why
        mark = len(proc.stderr())
        assert all(r.successful for r in c.set_params(model='tiny', encoder_backend='onnxruntime',
                                                      encoder_engine=str(onnx_path)))
        assert c.transition(Transition.TRANSITION_CONFIGURE) and c.state() == 'inactive'
        logged(proc, mark, "encoder backend 'onnxruntime' cannot be used")
        assert 'model: file has small, expected tiny' in proc.stderr()[mark:]
        assert 'falling back to the torch encoder' in proc.stderr()[mark:]
        assert c.wait_for(lambda: (status(c) or {}).get('encoder_backend') == 'torch', 5)
        assert c.transition(Transition.TRANSITION_CLEANUP) and c.state() == 'unconfigured'
        mark = len(proc.stderr())
        assert all(r.successful for r in c.set_params(encoder_backend='tensorrt', encoder_engine=str(engine)))
        assert c.transition(Transition.TRANSITION_CONFIGURE) and c.state() == 'inactive'
        logged(proc, mark, "encoder backend 'tensorrt' cannot be used")
        assert 'falling back to the torch encoder' in proc.stderr()[mark:]
        # and it tracks; a prompt sent before any frame arrived applies to the first frame
        assert c.transition(Transition.TRANSITION_ACTIVATE)
        c.wait_ready(proc=proc)
        labels = np.zeros((H, W), np.uint16)
        labels[rect(10, 60, 10, 90)] = 3
        c.mask_prompt(labels)  # zero stamp: the next frame
        out = labels_of(c.frame_and_wait(frames[0], next_k()))
        inter = ((out == 3) & (labels == 3)).sum()
        assert inter / ((out == 3) | (labels == 3)).sum() > 0.95
    finally:
        c.close()
    assert proc.stop(signal.SIGTERM) == 0, proc.stderr()
    assert 'Traceback' not in proc.stderr()


def test_bad_parameters_at_start_up_exit_with_the_reasons(tmp_path, checkpoint):  # noqa: F811
    bad = NodeProcess(tmp_path, checkpoint, 'model:=huge', 'max_image_pixels:=10', name='badstart')
    assert bad.proc.wait(60) == 2
    err = bad.stderr()
    assert "unknown model 'huge'" in err and 'max_image_pixels' in err and 'Traceback' not in err


# --------------------------------------------------------------------------------------------
# shutdown

def test_sigterm_with_a_backlog_exits_cleanly_and_a_restart_works(tmp_path, checkpoint, frames):  # noqa: F811
    """frame_policy all with 60 frames waiting: SIGTERM stops between two frames (exit 0, no
    traceback, within seconds), and the same node started again answers."""
    ns = '/backlog'
    args = ('-r', f'__ns:={ns}', 'frame_policy:=all', 'image_qos:=reliable', 'qos_depth:=100')
    proc = NodeProcess(tmp_path, checkpoint, *args, name='backlog1', image_size=256)
    c = Client(ns, name='backlog_client')
    try:
        c.wait_ready(proc=proc)
        k = next_k(100)
        c.frame_and_wait(frames[0], k, timeout=30)
        for j in range(1, 61):
            c.frame(frames[j % len(frames)], k + j)
        assert c.wait_for(lambda: len(c.masks) >= 3, 30)
        t = time.monotonic()
        code = proc.stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - t
        assert code == 0, proc.stderr()
        assert 'Traceback' not in proc.stderr() and 'signal received: shutting down' in proc.stderr()
        assert took < 10, took
        assert len(c.masks) < 61  # it did not drain the backlog first
        again = NodeProcess(tmp_path, checkpoint, *args, name='backlog2', image_size=256)
        try:
            c.wait_ready(proc=again)
            assert c.frame_and_wait(frames[1], k + 70, timeout=30).width == W
        finally:
            assert again.stop(signal.SIGINT) == 0, again.stderr()
            assert 'Traceback' not in again.stderr()
    finally:
        c.close()
        for p in (proc,):
            if p.proc.poll() is None:
                p.proc.kill()
