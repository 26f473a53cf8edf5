"""Flood: frames at 100 Hz and prompts at 50 Hz into the node for 60 s, eight objects,
``frame_policy: latest``. Latency must stay bounded (about one inference), at most one frame may
wait, stale frames are dropped and counted, waiting prompts stay bounded, memory flat.

    .venv/bin/python benchmarks/bench_flood.py --seconds 60 --rate 100 --prompt-rate 50 --objects 8 \\
        --image-size 128 --size 320x240 --json benchmarks/results/flood.json

The node (``python -m sam2_ros``, tiny with random weights, CPU) runs in a subprocess with its
default image QoS (sensor_data: best effort, depth 1, as camera drivers publish); this process
publishes rgb8 frames at ``--rate`` and ImageMarker clicks for the objects in turn at
``--prompt-rate``, and records each ~/masks it gets back. Reported: frames sent / answered,
latency (publish -> ~/masks received) p50 / p95 / worst, whether answered stamps only increase,
the node's own counters from /diagnostics (frames dropped, most frames waiting, prompts pending
and dropped), and the node's RSS (/proc/<pid>) over the run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
from ros_harness import private_domain, shut_down, spin_in_background, start_node, wait_for_node

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))


def rss_mib(pid):
    with open(f'/proc/{pid}/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seconds', type=float, default=60.0)
    p.add_argument('--rate', type=float, default=100.0, help='frames per second')
    p.add_argument('--prompt-rate', type=float, default=50.0, help='prompts per second')
    p.add_argument('--objects', type=int, default=8)
    p.add_argument('--image-size', type=int, default=128)
    p.add_argument('--size', default='320x240', help='frame WxH')
    p.add_argument('--threads', type=int, default=1, help="the node's OpenMP / torch threads")
    p.add_argument('--json', default='benchmarks/results/flood.json')
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split('x'))

    import cv2
    import rclpy
    import torch
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import Point
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import ImageMarker

    from sam2_ros.model.build import build_random_model
    from sam2_ros.ros import conversions as cv
    from helpers.clips import clip_frames

    private_domain()
    with tempfile.NamedTemporaryFile(suffix='.pt', delete=False) as tmp:
        torch.save({'model': build_random_model('tiny', args.image_size, 'cpu').state_dict()}, tmp.name)
    log_path = ROOT / 'outputs' / 'benchmarks' / 'flood.node.log'
    node = start_node({'checkpoint': tmp.name, 'image_size': args.image_size, 'device': 'cpu',
                       'frame_policy': 'latest', 'publish_overlay': 'false',
                       'max_objects': max(args.objects, 1)}, log_path, threads=args.threads)
    rclpy.init()
    n = rclpy.create_node('bench_flood_client')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = n.create_publisher(Image, 'image', reliable)  # reaches the best-effort subscription too
    mask_pub = n.create_publisher(Image, '/sam2_tracker/prompt_mask', 10)
    marker_pub = n.create_publisher(ImageMarker, '/sam2_tracker/prompt', 10)
    got, order, diags = {}, [], []

    def on_masks(m):
        key = m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec
        got[key] = time.monotonic()
        order.append(key)

    def on_diag(m):
        for s in m.status:
            if 'sam2_tracker' in s.name:
                diags.append((time.monotonic(), {kv.key: kv.value for kv in s.values}))

    n.create_subscription(Image, '/sam2_tracker/masks', on_masks, reliable)
    n.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    stop_spin = spin_in_background(n, period=0.01)
    frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in clip_frames()]
    msgs = [cv.numpy_to_image(f, 'rgb8') for f in frames]
    sent = {}
    rss = []
    try:
        wait_for_node(node, pub, n, log_path)
        labels = np.zeros((h, w), np.uint16)
        cols = (args.objects + 1) // 2
        cells = []
        for i in range(args.objects):
            r, c = divmod(i, cols)
            y0, y1 = int(h * r / 2) + 4, int(h * (r + 1) / 2) - 4
            x0, x1 = int(w * c / cols) + 4, int(w * (c + 1) / cols) - 4
            labels[y0:y1, x0:x1] = i + 1
            cells.append(((x0 + x1) / 2, (y0 + y1) / 2))
        m = cv.numpy_to_image(labels, 'mono16')
        mask_pub.publish(m)
        time.sleep(0.5)
        warm = cv.numpy_to_image(frames[0], 'rgb8')
        warm.header.stamp.sec = 1
        pub.publish(warm)
        t = time.monotonic()
        while 10 ** 9 not in got and time.monotonic() - t < 60:
            time.sleep(0.01)
        before = diags[-1][1] if diags else {}
        start = time.monotonic()
        j = 0
        prompts_sent = 0
        next_rss = start
        while time.monotonic() - start < args.seconds:
            msg = msgs[j % len(msgs)]
            msg.header.stamp.sec = 100 + j // 1000
            msg.header.stamp.nanosec = (j % 1000) * 1_000_000
            sent[msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec] = time.monotonic()
            pub.publish(msg)
            while prompts_sent < (time.monotonic() - start) * args.prompt_rate:
                obj = 1 + prompts_sent % args.objects
                x, y = cells[obj - 1]
                mk = ImageMarker(id=obj, type=ImageMarker.POINTS, action=ImageMarker.ADD)
                mk.points = [Point(x=float(x + prompts_sent % 5), y=float(y), z=1.0)]
                marker_pub.publish(mk)
                prompts_sent += 1
            if time.monotonic() >= next_rss:
                rss.append((time.monotonic() - start, rss_mib(node.pid)))
                next_rss += 1.0
            j += 1
            time.sleep(max(0.0, start + j / args.rate - time.monotonic()))
        elapsed = time.monotonic() - start
        last = max(sent)
        t = time.monotonic()
        while last not in got and time.monotonic() - t < 30:
            time.sleep(0.005)
        time.sleep(2.5)  # one more diagnostics period
        after = diags[-1][1] if diags else {}
        rss.append((time.monotonic() - start, rss_mib(node.pid)))
    finally:
        code = shut_down(node, n, stop_spin)
        os.unlink(tmp.name)
    answered = [k for k in order if k in sent]
    lat = np.array([got[k] - sent[k] for k in answered]) * 1000.0
    pending = [int(d['prompts_pending']) for t, d in diags if 'prompts_pending' in d]
    num = (lambda d, k: int(float(d.get(k, 0))))
    report = {
        'date': datetime.date.today().isoformat(), 'machine': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(), 'note': 'shared machine: other jobs loaded the cores',
        'command': 'python benchmarks/bench_flood.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
        'model': 'tiny (random weights)', 'image_size': args.image_size, 'frame': f'{w}x{h}',
        'objects': args.objects, 'seconds': round(elapsed, 2), 'frames_sent': len(sent),
        'send_rate_hz': round(len(sent) / elapsed, 1), 'prompts_sent': prompts_sent,
        'frames_answered': len(answered),
        'answered_rate_hz': round(len(answered) / elapsed, 2),
        'stamps_increasing': answered == sorted(answered) and len(set(answered)) == len(answered),
        'newest_answered': last in got,
        'latency_ms_p50': float(np.percentile(lat, 50)) if lat.size else None,
        'latency_ms_p95': float(np.percentile(lat, 95)) if lat.size else None,
        'latency_ms_worst': float(lat.max()) if lat.size else None,
        'frames_dropped_by_node': num(after, 'frames_dropped') - num(before, 'frames_dropped'),
        'frames_lost_before_node': len(sent) - (num(after, 'frames_received') - num(before, 'frames_received')),
        'frames_waiting_max': num(after, 'frames_waiting_max'),
        'prompts_pending_max': max(pending) if pending else None,
        'prompts_dropped': num(after, 'prompts_dropped') - num(before, 'prompts_dropped'),
        'prompt_errors': num(after, 'prompt_errors') - num(before, 'prompt_errors'),
        'objects_at_end': num(after, 'objects'),
        'node_latency_ms_p95_diag': float(after['latency_p95_ms']) if 'latency_p95_ms' in after else None,
        'node_rss_mib_first': rss[0][1], 'node_rss_mib_last': rss[-1][1],
        'node_rss_mib_max': max(r for _, r in rss), 'node_exit_code': code,
        'node_rss_over_time': [(round(t, 1), round(r, 1)) for t, r in rss],
    }
    pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps({k: v for k, v in report.items() if k != 'node_rss_over_time'}, indent=1))
    print(f'wrote {args.json} (node log {log_path})')
    return 0 if code == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
