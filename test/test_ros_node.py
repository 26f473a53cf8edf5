"""The sam2_tracker node end to end: node and client in separate processes, over DDS on loopback.

The node runs as ``python -m sam2_ros`` (a tiny model with random weights at 128 px on the CPU);
this process is the client: it publishes frames of the bundled clip and prompts, and checks what
comes back. With random weights the masks of tracked frames mean nothing, but a mask prompt's
frame is exact (the prompt mask is the output), which the checks use.
"""
import array
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from geometry_msgs.msg import Point  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from visualization_msgs.msg import ImageMarker  # noqa: E402

from sam2_ros.ros import conversions  # noqa: E402
from helpers.ros import (Client, H, NodeProcess, ROOT, W, k_ns, make_stamp, next_k, rect, to_ns, checkpoint, frames,  # noqa: E402,F401
                         ros_env)


# --------------------------------------------------------------------------------------------
# fixtures: environment, checkpoint, frames, node process, client


@pytest.fixture(scope='module')
def node(tmp_path_factory, checkpoint):
    proc = NodeProcess(tmp_path_factory.mktemp('node'), checkpoint, 'publish_object_masks:=true')
    yield proc
    code = proc.stop(signal.SIGINT)
    assert code == 0, proc.stderr()


@pytest.fixture(scope='module')
def client(node):
    c = Client()
    c.wait_ready(proc=node)
    yield c
    c.close()


@pytest.fixture
def fresh(client):
    """A tracker without objects and the default live parameters."""
    assert all(r.successful for r in client.set_params(frame_policy='latest', mask_threshold=0.0,
                                                       publish_overlay=True, max_objects=16))
    assert client.reset().success
    return client


# --------------------------------------------------------------------------------------------
# tests

def test_masks_carry_the_frame_header_and_mask_prompts_come_back(fresh, frames):
    c = fresh
    k = next_k(3)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 50, 20, 80)] = 2
    labels[rect(60, 90, 100, 150)] = 7
    c.mask_prompt(labels, k=k)
    out = c.frame_and_wait(frames[0], k, frame_id='cam_front')
    assert out.encoding == 'mono16' and (out.width, out.height) == (W, H) and out.step == 2 * W
    assert to_ns(out.header.stamp) == to_ns(make_stamp(k)) and out.header.frame_id == 'cam_front'
    got = conversions.image_to_labels(out)
    assert set(np.unique(got)) <= {0, 2, 7}
    for obj_id in (2, 7):  # the prompted frame's masks are the prompt masks
        inter = ((got == obj_id) & (labels == obj_id)).sum()
        union = ((got == obj_id) | (labels == obj_id)).sum()
        assert inter / union > 0.95, obj_id
    # tracked frames: same header rules, values only of tracked ids
    for j in (1, 2):
        out = c.frame_and_wait(frames[j], k + j, encoding='bgr8', frame_id='cam_front')
        assert to_ns(out.header.stamp) == to_ns(make_stamp(k + j)) and out.header.frame_id == 'cam_front'
        assert set(np.unique(conversions.image_to_labels(out))) <= {0, 2, 7}


def test_objects_added_corrected_removed_and_reset(fresh, frames):
    c = fresh
    subs = [c.watch_object(i) for i in (1, 2, 3)]
    k = next_k(8)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 40, 10, 60)] = 1
    labels[rect(50, 90, 90, 150)] = 2
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[3], k)
    # per-object topics appear and carry the frame's header
    assert c.wait_for(lambda: k_ns(k) in c.objects[1] and k_ns(k) in c.objects[2], 10)
    m1 = c.objects[1][k_ns(k)]
    assert m1.encoding == 'mono8' and set(np.unique(conversions.image_to_numpy(m1))) <= {0, 255}
    assert (conversions.image_to_numpy(m1)[..., 0] > 0).sum() > 0.9 * rect(10, 40, 10, 60).sum()
    # a box prompt adds object 3 (with a class label); points correct object 1
    c.marker(3, box=[100, 5, 60, 40], k=k + 1, ns='bunny')
    c.marker(1, points=[[30, 20], [5, 5]], labels=[1, 0], k=k + 1)
    out = c.frame_and_wait(frames[4], k + 1)
    assert c.wait_for(lambda: k_ns(k + 1) in c.objects[3], 10), 'object 3 was not added'
    assert k_ns(k + 1) in c.objects[1] and k_ns(k + 1) in c.objects[2]
    # a mask prompt for a tracked id replaces its mask (a correction we can see exactly)
    corr = np.zeros((H, W), np.uint16)
    corr[rect(60, 90, 10, 50)] = 1
    c.mask_prompt(corr, k=k + 2)
    out = conversions.image_to_labels(c.frame_and_wait(frames[5], k + 2))
    assert ((out == 1) & (corr == 1)).sum() > 0.9 * (corr == 1).sum()
    assert not ((out == 1) & rect(10, 40, 10, 60)).any()
    # removal: the id is gone from the labels and its topic goes away
    c.marker(2, action=ImageMarker.REMOVE)
    out = conversions.image_to_labels(c.frame_and_wait(frames[6], k + 3))
    assert 2 not in np.unique(out)
    assert c.wait_for(lambda: c.count_publishers(f'{c.tracker_ns}/object_2/mask') == 0, 10)
    assert c.count_publishers(f'{c.tracker_ns}/object_1/mask') == 1
    # reset drops every object
    res = c.reset()
    assert res.success and 'dropped 2 object(s)' in res.message
    out = conversions.image_to_labels(c.frame_and_wait(frames[7], k + 4))
    assert not out.any()
    assert c.wait_for(lambda: c.count_publishers(f'{c.tracker_ns}/object_1/mask') == 0, 10)
    for s in subs:
        c.node.destroy_subscription(s)


def test_click_starts_a_new_object_with_the_next_free_id(fresh, frames):
    c = fresh
    k = next_k(3)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 40, 10, 60)] = 4
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[8], k)
    sub = c.watch_object(5)
    c.click_pub.publish(Point(x=120.0, y=60.0))
    time.sleep(0.15)
    c.frame_and_wait(frames[9], k + 1)
    assert c.wait_for(lambda: k_ns(k + 1) in c.objects[5], 10), 'the click did not start object 5'
    c.node.destroy_subscription(sub)


def test_overlay_and_diagnostics(fresh, frames):
    c = fresh
    k = next_k(2)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(20, 70, 40, 120)] = 9
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[10], k, frame_id='cam_overlay')
    assert c.wait_for(lambda: k_ns(k) in c.overlays, 10), 'no overlay'
    ov = c.overlays[k_ns(k)]
    assert ov.encoding == 'bgr8' and (ov.width, ov.height) == (W, H) and ov.header.frame_id == 'cam_overlay'
    rgb = conversions.image_to_rgb(ov)
    inside = np.abs(rgb.astype(int) - frames[10]).sum(-1)[rect(30, 60, 50, 110)]
    assert inside.mean() > 20  # the mask is drawn over the frame
    # publish_overlay off: no more overlays
    assert c.set_params(publish_overlay=False)[0].successful
    c.frame_and_wait(frames[11], k + 1)
    time.sleep(0.3)
    assert k_ns(k + 1) not in c.overlays

    def status():
        with c.lock:
            for arr in reversed(c.diagnostics):
                for s in arr.status:
                    if 'sam2_tracker' in s.name:
                        return {kv.key: kv.value for kv in s.values}
        return None
    assert c.wait_for(lambda: status() is not None and 'latency_p50_ms' in status(), 5), 'no diagnostics'
    values = status()
    for key in ('rate_hz', 'latency_p50_ms', 'latency_p95_ms', 'latency_max_ms', 'frames_dropped',
                'objects', 'frames_tracked', 'process_rss_mib', 'device', 'state'):
        assert key in values, key
    assert values['state'] == 'active' and values['device'] == 'cpu'
    assert float(values['latency_p50_ms']) > 0


def test_unsupported_encoding_and_bad_prompts_are_logged_and_skipped(fresh, frames, node):
    c = fresh
    mark = len(node.stderr())
    k = next_k(6)
    key = c.frame(np.zeros((H, W), np.float32), k, encoding='32FC1')
    c.marker(0, points=[[10, 10]], labels=[1])  # id 0 is the background
    c.marker(3, points=[[500, 10]], labels=[1])  # outside the frame
    c.marker(4, points=[[10, 10]], labels=[2])  # bad label
    c.marker(5, points=[[10, 10], [20, 20], [30, 30]], labels=[1, 1, 1])
    bad = ImageMarker(id=6, type=ImageMarker.LINE_STRIP, points=[Point(x=1.0, y=1.0)])
    c.marker_pub.publish(bad)
    time.sleep(0.15)
    out = c.frame_and_wait(frames[12], k + 1)  # tracking goes on
    assert key not in c.masks
    ids = set(np.unique(conversions.image_to_labels(out))) - {0}
    assert ids <= {5}
    assert c.wait_for(lambda: "unsupported image encoding '32FC1'" in node.stderr()[mark:], 5)
    log = node.stderr()[mark:]
    assert 'ImageMarker.id (the object id) 0 is out of range' in log
    assert 'lies outside the 160 x 96 frame' in log
    assert 'labels (z) must be 1 (foreground) or 0 (background)' in log
    assert 'exactly 2 points' in log
    assert 'Traceback' not in log
    # a wrong-size mask prompt and a removal of an unknown object
    c.mask_prompt(np.ones((10, 10), np.uint16), k=k + 2)
    c.marker(42, action=ImageMarker.REMOVE)
    c.frame_and_wait(frames[13], k + 2)
    assert c.wait_for(lambda: 'masks must match the frame' in node.stderr()[mark:], 5)
    assert 'object 42 is not tracked' in node.stderr()[mark:]
    # repeated identical warnings are rate-limited
    for j in (3, 4):
        c.frame(np.zeros((H, W), np.float32), k + j, encoding='32FC1')
    c.frame_and_wait(frames[14], k + 5)
    assert node.stderr()[mark:].count("unsupported image encoding '32FC1'") == 1


def test_image_size_change_resets_with_a_warning(fresh, frames, node):
    c = fresh
    mark = len(node.stderr())
    k = next_k(3)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 1
    c.mask_prompt(labels, k=k)
    out = c.frame_and_wait(frames[15], k)
    assert (conversions.image_to_labels(out) == 1).any()
    small = cv2.resize(frames[16], (128, 80))
    out = c.frame_and_wait(small, k + 1)
    assert (out.width, out.height) == (128, 80)
    assert not conversions.image_to_labels(out).any()  # objects dropped
    assert c.wait_for(lambda: 'image size changed from 160x96 to 128x80' in node.stderr()[mark:], 5)
    assert '1 object(s) dropped' in node.stderr()[mark:]
    out = c.frame_and_wait(frames[17], k + 2)  # and back: works again
    assert (out.width, out.height) == (W, H)


def test_parameter_refusals_with_reasons(client):
    c = client

    def refused(**kv):
        (r,) = c.set_params(**kv)
        assert not r.successful, kv
        return r.reason
    assert 'frame_policy must be one of latest, all' in refused(frame_policy='sometimes')
    assert 'read-only once the node is configured' in refused(model='small')
    assert 'read-only once the node is configured' in refused(device='cpu')
    assert 'read-only once the node is configured' in refused(image_size=256)
    assert 'deactivate it first' in refused(qos_depth=5)
    assert refused(image_size=100)  # not a multiple of 32: refused by the range
    assert refused(mask_threshold=100.0)
    assert refused(max_objects=0)
    assert refused(image_qos='fast')
    assert refused(autostart=False)  # read-only
    assert refused(frame_policy=3)  # wrong type
    (r,) = c.set_params(mask_threshold=0.5)
    assert r.successful
    assert c.set_params(mask_threshold=0.0)[0].successful
    future = c.params.describe_parameters(['image_size', 'frame_policy'])
    assert c.wait_for(future.done, 5)
    d_size, d_policy = future.result().descriptors
    assert d_size.integer_range[0].from_value == 64 and d_size.integer_range[0].step == 32
    assert 'read-only once configured' in d_size.description
    assert 'latest' in d_policy.description


def test_latest_drops_frames_under_a_30hz_flood_with_bounded_latency(fresh, frames):
    c = fresh
    k = next_k(100)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 1
    labels[rect(50, 90, 90, 150)] = 2
    c.mask_prompt(labels, k=k)
    c.frame_and_wait(frames[0], k)
    n = 75  # 2.5 s at 30 Hz
    start = time.monotonic()
    keys = []
    for j in range(1, n + 1):
        keys.append(c.frame(frames[j % len(frames)], k + j))
        time.sleep(max(0.0, start + j / 30.0 - time.monotonic()))
    last = keys[-1]
    assert c.wait_for(lambda: last in c.masks, 10), 'the newest frame was not answered'
    with c.lock:
        answered = [s for s in c.mask_order if s in keys]
        latency = [c.masks[s][1] - c.sent[s] for s in answered]
    assert len(answered) < n * 0.9, f'{len(answered)} of {n} answered: nothing dropped?'
    assert len(answered) >= 5
    assert answered == sorted(answered) and len(set(answered)) == len(answered)  # stamps only increase
    # bounded: a frame waits for at most one frame in progress, never for a backlog
    assert np.percentile(latency, 95) < 1.5, latency
    assert latency[-1] < 1.5


def test_lifecycle_and_all_policy_answers_every_frame(fresh, frames):
    c = fresh
    assert c.state() == 'active'
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert c.state() == 'inactive'
    r = c.set_params(image_qos='reliable', qos_depth=100, frame_policy='all')
    assert all(x.successful for x in r), [x.reason for x in r]
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    c.wait_ready()
    k = next_k(40)
    labels = np.zeros((H, W), np.uint16)
    labels[rect(10, 60, 10, 90)] = 1
    c.mask_prompt(labels, k=k)
    n = 30
    keys = []
    start = time.monotonic()
    for j in range(n):
        keys.append(c.frame(frames[j % len(frames)], k + j))
        time.sleep(max(0.0, start + (j + 1) / 30.0 - time.monotonic()))
    assert c.wait_for(lambda: all(s in c.masks for s in keys), 30), \
        f'{sum(s in c.masks for s in keys)} of {n} frames answered'
    with c.lock:
        order = [s for s in c.mask_order if s in keys]
    assert order == keys  # in order, each once
    # back to the defaults, and compressed input while we are at it
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert all(x.successful for x in c.set_params(image_qos='sensor_data', qos_depth=1,
                                                  frame_policy='latest', image_transport='compressed'))
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    assert c.wait_for(lambda: c.compressed_pub.get_subscription_count() > 0, 10)
    msg = CompressedImage(format='jpeg')
    msg.header.stamp = make_stamp(k + n)
    msg.data = array.array('B', cv2.imencode('.jpg', frames[1][..., ::-1])[1].tobytes())
    c.compressed_pub.publish(msg)
    assert c.wait_for(lambda: k_ns(k + n) in c.masks, 10)
    out = c.masks[k_ns(k + n)][0]
    assert (out.width, out.height) == (W, H)
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert c.set_params(image_transport='raw')[0].successful
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    c.wait_ready()


def test_play_clip_tool_saves_what_the_node_published(fresh, tmp_path):
    """The quick start's player: the bundled clip (640x360) and its click prompt, in lockstep,
    with reliable image QoS as scripts/demo.sh runs the node (best-effort 640x360 frames can be
    lost by Fast DDS over UDP on a loaded machine)."""
    import json

    c = fresh
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert all(x.successful for x in c.set_params(image_qos='reliable', qos_depth=10))
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    c.wait_ready()

    def received():
        # frames_received of the node's newest diagnostics, with the count of messages seen
        with c.lock:
            for n, arr in zip(range(len(c.diagnostics), 0, -1), reversed(c.diagnostics)):
                for s in arr.status:
                    if 'sam2_tracker' in s.name:
                        return n, int({kv.key: kv.value for kv in s.values}['frames_received'])
        return 0, None
    seen, _ = received()
    assert c.wait_for(lambda: received()[0] > seen, 10), 'no diagnostics'
    _, before = received()
    out = tmp_path / 'play'
    r = subprocess.run(
        [sys.executable, '-m', 'sam2_ros.tools.play_clip', '--max-frames', '3', '--out', str(out),
         '--png-every', '2', '--start-stamp', '5000', '--frame-timeout', '30',
         '--random-weights', '--checkpoint', 'test.pt'],
        cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_answered'] == 3 and summary['overlays'] == 3, summary
    assert summary['random_weights'] is True and summary['checkpoint'] == 'test.pt'
    # the per-frame lines and summary.json give the same latencies
    printed = [float(line.split('answered in')[1].split('ms')[0])
               for line in r.stdout.splitlines() if 'answered in' in line]
    assert len(printed) == 3
    assert summary['latency_ms_p50'] == pytest.approx(float(np.percentile(printed, 50)), abs=0.1)
    # each frame was sent once: the node received 3 frames (a diagnostics message published
    # after the player ended counts them all)
    seen, _ = received()
    assert c.wait_for(lambda: received()[0] > seen + 1, 10), 'no diagnostics'
    assert received()[1] - before == 3
    assert (out / 'overlay.mp4').stat().st_size > 0 and (out / 'overlay_sheet.png').is_file()
    assert (out / 'overlay_00000.png').is_file() and (out / 'overlay_00002.png').is_file()
    labels = cv2.imread(str(out / 'masks_00000.png'), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and labels.shape == (360, 640)
    assert set(np.unique(labels)) <= {0, 1}  # the click started object 1
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert all(x.successful for x in c.set_params(image_qos='sensor_data', qos_depth=1))
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    c.wait_ready()


# --------------------------------------------------------------------------------------------
# start-up errors and signals (nodes of their own)

def test_bad_parameters_and_checkpoint_exit_with_a_clear_message(tmp_path, checkpoint):
    bad = NodeProcess(tmp_path, checkpoint, 'image_size:=100', 'frame_policy:=sometimes', name='badparam')
    assert bad.proc.wait(60) == 2
    err = bad.stderr()
    assert 'image_size' in err and 'frame_policy must be one of latest, all' in err
    assert 'Traceback' not in err
    missing = NodeProcess(tmp_path, str(tmp_path / 'nope.pt'), '-r', '__ns:=/missing', name='missing')
    assert missing.proc.wait(60) == 1
    err = missing.stderr()
    assert 'cannot configure' in err and 'nope.pt' in err and 'Traceback' not in err


def test_lifecycle_without_autostart(tmp_path, checkpoint, frames):
    """autostart false: the node waits unconfigured; model parameters change until configured
    and again after cleanup; a full cycle ends in finalized and the process exits 0."""
    proc = NodeProcess(tmp_path, checkpoint, '-r', '__ns:=/managed', 'autostart:=false', name='managed')
    c = Client('/managed', name='managed_client')
    try:
        assert c.state() == 'unconfigured'
        assert c.set_params(image_size=256)[0].successful  # unconfigured: allowed
        assert c.set_params(encoder_backend='onnxruntime')[0].successful  # no encoder_engine given
        assert c.transition(Transition.TRANSITION_CONFIGURE) and c.state() == 'inactive'
        assert "encoder backend 'onnxruntime' cannot be used" in proc.stderr()
        assert 'falling back to the torch encoder' in proc.stderr()
        assert 'torch encoder, torch step, compile false): loaded' in proc.stderr()
        (r,) = c.set_params(image_size=128)
        assert not r.successful and 'read-only once the node is configured' in r.reason
        assert c.transition(Transition.TRANSITION_ACTIVATE)
        c.wait_ready(proc=proc)
        assert c.frame_and_wait(frames[0], next_k()).width == W
        assert c.transition(Transition.TRANSITION_DEACTIVATE)
        assert c.transition(Transition.TRANSITION_CLEANUP) and c.state() == 'unconfigured'
        assert c.set_params(image_size=128)[0].successful
        assert c.transition(Transition.TRANSITION_CONFIGURE)
        assert 'at 128 px' in proc.stderr().split('at 256 px')[-1]
        assert c.transition(Transition.TRANSITION_ACTIVATE)
        assert c.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN) and c.state() == 'finalized'
    finally:
        c.close()
    assert proc.stop(signal.SIGTERM) == 0, proc.stderr()
    assert 'Traceback' not in proc.stderr()


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_during_inference_exits_cleanly_and_restart_works(tmp_path, checkpoint, frames, sig):
    ns = '/sigtest'  # the same node each time: the second run is a restart
    proc = NodeProcess(tmp_path, checkpoint, '-r', f'__ns:={ns}', name=f'sig{int(sig)}', image_size=256)
    c = Client(ns, name=f'sig_client_{int(sig)}')
    try:
        c.wait_ready(proc=proc)
        labels = np.zeros((H, W), np.uint16)
        labels[rect(10, 60, 10, 90)] = 1
        c.mask_prompt(labels)
        k = next_k(200)
        j = 0
        while not c.masks and j < 100:  # until frames flow
            c.frame(frames[j % len(frames)], k + j)
            j += 1
            time.sleep(0.05)
        assert c.masks, proc.stderr()
        for _ in range(4):  # keep it busy, then signal mid-stream
            c.frame(frames[j % len(frames)], k + j)
            j += 1
            time.sleep(0.05)
        t = time.monotonic()
        code = proc.stop(sig, timeout=20)
        took = time.monotonic() - t
    finally:
        c.close()
        if proc.proc.poll() is None:
            proc.proc.kill()
    err = proc.stderr()
    assert code == 0, err
    assert 'Traceback' not in err and 'signal received: shutting down' in err
    assert took < 10, took
