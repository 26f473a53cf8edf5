"""sam2_live end to end: a bag played into a real node process over DDS (loopback) with /clock.

The node (``python -m sam2_ros``, a tiny random-weight model at 128 px on the CPU) runs in its
own process, started by the tool (``--start-node``, ``use_sim_time: true``) or by the test; the
tool runs in this process. With random weights tracked masks mean nothing, but a mask prompt's
frame is exact (the prompt mask is the output): the ground truth of the prompted frames checks
that each prompt reached exactly its frame.
"""
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

pytest.importorskip('rclpy')

from sam2_ros.tools import bagio, live  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H = 160, 96
N = 10
START = 1_700_000_000_000_000_000
DT = 200_000_000  # 5 frames/s: 2 s of bag, so the node's 1 s diagnostics timer runs on /clock


@pytest.fixture(autouse=True)
def ros_env(monkeypatch):
    """A DDS domain of our own on loopback (the node process inherits it)."""
    monkeypatch.setenv('ROS_DOMAIN_ID', str(random.Random(os.getpid() ^ int(time.time())).randint(101, 200)))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')


def header(i):
    ns = START + i * DT
    return bagio.Header(ns // 10**9, ns % 10**9, 'camera')


def rect(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def bunny(n):
    cap = cv2.VideoCapture(os.path.join(ROOT, 'data', 'sample', 'bunny.mp4'))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        assert ok
        out.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (W, H), interpolation=cv2.INTER_AREA))
    cap.release()
    return out


@pytest.fixture
def clip(tmp_path):
    """A 10-frame bag of the bundled clip with a ground-truth topic on frames 0 and 5, and
    prompts: masks for object 1 on frames 0 and 5 (a correction), a box for object 2 on frame 6."""
    m0, m5 = rect(10, 50, 20, 80), rect(40, 90, 90, 150)
    with bagio.BagWriter(tmp_path / 'bag') as w:
        for i, rgb in enumerate(bunny(N)):
            w.write('/camera/image_raw', bagio.image_message(rgb, 'rgb8', header(i)), START + i * DT)
            if i in (0, 5):
                label = (m0 if i == 0 else m5).astype(np.uint16)
                w.write('/gt/labels', bagio.image_message(label, 'mono16', header(i)), START + i * DT)
    cv2.imwrite(str(tmp_path / 'm0.png'), m0.astype(np.uint8) * 255)
    cv2.imwrite(str(tmp_path / 'm5.png'), m5.astype(np.uint8) * 255)
    (tmp_path / 'prompts.yaml').write_text(
        'prompts:\n'
        '  - {frame: 0, object_id: 1, mask: m0.png}\n'
        '  - {frame: 5, object_id: 1, mask: m5.png}\n'
        '  - {frame: 6, object_id: 2, box: [100, 5, 150, 40]}\n')
    return tmp_path


def test_start_node_plays_the_bag_with_clock_and_records_one_mask_per_frame(clip, official_checkpoint):
    ckpt = official_checkpoint('tiny', 128)
    out = clip / 'out'
    rc = live.main(['--bag', str(clip / 'bag'), '--image-topic', '/camera/image_raw',
                    '--prompts', str(clip / 'prompts.yaml'), '--gt-topic', '/gt/labels',
                    '--out', str(out), '--start-node', '--checkpoint', str(ckpt), '--model', 'tiny',
                    '--image-size', '128', '--device', 'cpu', '--frame-policy', 'all', '--overlay',
                    '--quiet', '--wait-node', '120'])
    log = (out / 'node.log').read_text(errors='replace') if (out / 'node.log').exists() else ''
    assert rc == 0, log
    report = json.loads((out / 'live_report.json').read_text())

    # one mask per input frame, carrying the input's header; overlays too
    inputs = list(bagio.iter_images(clip / 'bag', '/camera/image_raw', decode=False))
    masks = list(bagio.iter_labels(out / 'bag', '/sam2_tracker/masks'))
    assert [m.header for m in masks] == [f.header for f in inputs]
    overlays = list(bagio.iter_images(out / 'bag', '/sam2_tracker/overlay', decode=False))
    assert sorted(o.header.stamp_ns for o in overlays) == [f.header.stamp_ns for f in inputs]
    # logged at the playback clock of their arrival: on the bag's timeline, after their input
    for m, f in zip(masks, inputs):
        assert f.log_time <= m.log_time < f.log_time + 60 * 10**9
    # the prompted frames' masks are the prompt masks (each prompt reached exactly its frame)
    assert masks[0].image.max() == 1 and set(np.unique(masks[-1].image)) <= {0, 1, 2}
    assert report['objects']['1']['frames_evaluated'] == 2
    assert report['objects']['1']['J_mean'] > 0.95
    assert report['objects']['2']['frames_evaluated'] == 0  # no ground truth after frame 6
    assert report['JF_mean'] == pytest.approx(report['objects']['1']['JF_mean'])
    assert [(p['frame'], p['late']) for p in report['prompts_sent']] == [(0, False), (5, False), (6, False)]

    # the numbers agree with each other and with the bags
    assert report['frames_sent'] == N and report['masks_received'] == N and report['dropped'] == 0
    assert report['masks_unmatched'] == 0 and report['masks_repeated'] == 0
    lat = report['latency_ms']
    assert 0 < lat['min'] <= lat['p50'] <= lat['p95'] <= lat['max'] < 60_000
    rows = list(csv.DictReader(open(out / 'per_frame.csv')))
    assert len(rows) == N and all(r['answered'] == '1' for r in rows)
    assert max(float(r['latency_ms']) for r in rows) == pytest.approx(lat['max'], abs=1e-3)
    assert report['outputs']['topics']['/sam2_tracker/masks'] == N
    assert report['playback_s'] == pytest.approx((N - 1) * DT / 1e9, abs=0.5)
    # N frames DT apart: N - 1 intervals (N / span would overstate it, 30 fps for a 25 fps bag)
    assert report['input_fps'] == pytest.approx(1e9 / DT, rel=1e-6)
    assert (out / 'latency_hist.png').is_file()

    # the node ran in sim time on the tool's /clock: the bag's log times, first to last
    assert report['node_mode']['frame_policy'] == 'all' and report['node_mode']['use_sim_time'] is True
    assert report['node_checkpoint']['checkpoint_official'] is None  # random weights, told by content
    clock = report['clock']
    assert clock['published'] and clock['messages'] >= N
    assert clock['first'] == f'{header(0).sec}.{header(0).nanosec:09d}'
    last = f'{header(N - 1).sec}.{header(N - 1).nanosec:09d}'
    assert clock['at_last_frame'] == clock['bag_last'] == last
    assert clock['last'] >= last  # the clock goes on while the last answers come
    assert report['node_clock']['sim_time'] and report['node_clock']['diagnostics'] >= 1
    diag = bagio.typestore()
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
              for _, m in _messages(out / 'bag', '/diagnostics', diag)]
    assert stamps and all(START <= s < START + 60 * 10**9 for s in stamps)  # not the wall clock
    # the node's last diagnostics came after the last frame: its own counts agree
    assert report['node_diagnostics']['frames_tracked'] == str(N)
    assert report['node_diagnostics']['frames_dropped'] == '0'
    assert report['node_exit_code'] == 0 and report['warnings'] == []


def _messages(bag, topic, store):
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, t, raw in reader.messages(connections=conns):
            yield t, store.deserialize_cdr(raw, conn.msgtype)


def test_running_node_found_from_the_graph(clip, official_checkpoint, tmp_path):
    """Without --start-node: a node already running (namespaced, image remapped elsewhere, wall
    clock, started with frame_policy all) is found from the ROS graph; --frame-policy latest is
    set on it; no /clock by default. With latest, prompts go out without holding back and the
    last frame is always tracked."""
    ckpt = official_checkpoint('tiny', 128)
    log = open(tmp_path / 'node.log', 'wb')
    env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
    proc = subprocess.Popen([sys.executable, '-m', 'sam2_ros', '--ros-args', '-r', '__ns:=/cam1',
                             '-r', 'image:=/cam1/color', '-p', f'checkpoint:={ckpt}', '-p', 'image_size:=128',
                             '-p', 'device:=cpu', '-p', 'image_qos:=reliable', '-p', 'frame_policy:=all'],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        out = tmp_path / 'out'
        rc = live.main(['--bag', str(clip / 'bag'), '--image-topic', '/camera/image_raw',
                        '--prompts', str(clip / 'prompts.yaml'), '--node-ns', '/cam1/sam2_tracker',
                        '--out', str(out), '--rate', '2', '--max-frames', '6', '--frame-policy', 'latest',
                        '--quiet', '--wait-node', '120'])
        assert rc == 0, (tmp_path / 'node.log').read_text(errors='replace')
        report = json.loads((out / 'live_report.json').read_text())
        assert report['node_image_topic'] == '/cam1/color' and report['node'] == '/cam1/sam2_tracker'
        assert report['node_mode']['frame_policy'] == 'latest' and report['node_mode']['use_sim_time'] is False
        assert not report['clock']['published'] and report['clock']['messages'] == 0
        assert report['playback_s'] == pytest.approx(5 * DT / 1e9 / 2, abs=0.4)
        # the prompt of frame 6 is past --max-frames: skipped with a warning
        assert [p['frame'] for p in report['prompts_sent']] == [0, 5]
        assert any('after the last evaluated frame' in w for w in report['warnings'])
        masks = list(bagio.iter_labels(out / 'bag', '/cam1/sam2_tracker/masks'))
        stamps = [m.header.stamp_ns for m in masks]
        assert stamps == sorted(stamps) and set(stamps) <= {START + i * DT for i in range(6)}
        assert stamps[0] == START and stamps[-1] == START + 5 * DT  # first and last: tracked
        assert report['frames_sent'] == 6 and report['masks_received'] == len(masks)
        assert report['dropped'] == 6 - len(masks)
        # the mask prompts reached exactly their frames
        assert masks[0].image.max() == 1
        m5 = rect(40, 90, 90, 150)
        assert ((masks[-1].image == 1) & m5).sum() > 0.95 * m5.sum()
        assert not report['node_clock']['sim_time']  # its diagnostics, if any, carry wall time
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0


def test_bad_input_exits_2_before_anything_starts(clip, capsys):
    bag = str(clip / 'bag')
    far = clip / 'far.yaml'
    far.write_text('prompts:\n  - {frame: 0, object_id: 1, points: [[500, 5]]}\n')
    late = clip / 'late.yaml'
    late.write_text('prompts:\n  - {frame: 99, object_id: 1, points: [[5, 5]]}\n')
    (clip / 'used' / 'bag').mkdir(parents=True)
    cases = {
        'no such bag': ['--bag', str(clip / 'nope'), '--image-topic', '/camera/image_raw'],
        "no topic '/x'": ['--bag', bag, '--image-topic', '/x'],
        'outside the 160x96 frame': ['--bag', bag, '--image-topic', '/camera/image_raw', '--prompts', str(far)],
        'matches no frame': ['--bag', bag, '--image-topic', '/camera/image_raw', '--prompts', str(late)],
        '--rate must be > 0': ['--bag', bag, '--image-topic', '/camera/image_raw', '--rate', '0'],
        'exists; remove it': ['--bag', bag, '--image-topic', '/camera/image_raw', '--out', str(clip / 'used')],
    }
    for message, args in cases.items():
        if '--out' not in args:
            args = args + ['--out', str(clip / 'o')]
        assert live.main(args + ['--start-node', '--quiet']) == 2, message
        err = capsys.readouterr().err
        assert 'sam2_live: error:' in err and message in err, (message, err)
    assert not (clip / 'o').exists()
