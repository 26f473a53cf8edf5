"""Service bursts while the node tracks many objects: every call answered at once.

    .venv/bin/python benchmarks/bench_services.py --objects 16 --calls 50 --image-size 256 \\
        --json benchmarks/results/services.json

The node (``python -m sam2_ros``, tiny with random weights, CPU) tracks ``--objects`` objects
from a label-image prompt while this process streams frames at ``--rate`` Hz, so that a frame
is being tracked (seconds on a small CPU) almost all the time. Then, for each service in turn,
``--calls`` requests are sent at once (none waits for an answer before the next is sent):
``~/get_state`` (lifecycle), ``set_parameters`` (``mask_threshold``, a live parameter),
``~/track_everything`` and ``~/reset`` (last: it drops the objects). Reported per service:
calls answered, latency from sending to the answer received p50 / p99 / worst, and frames
answered within ``--window`` s of the burst's start; the objects tracked and the node's own
frame time (``track_p50_ms`` on /diagnostics) just before it.
The clients' queues are 1000 deep: a burst's answers must fit on the client's side too.
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
import threading
import time

import numpy as np
from ros_harness import private_domain, shut_down, spin_in_background, start_node, wait_for_node

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--objects', type=int, default=16)
    p.add_argument('--calls', type=int, default=50, help='calls per service, sent at once')
    p.add_argument('--image-size', type=int, default=256)
    p.add_argument('--size', default='320x240', help='frame WxH')
    p.add_argument('--rate', type=float, default=10.0, help='frames per second streamed meanwhile')
    p.add_argument('--threads', type=int, default=2, help="the node's OpenMP / torch threads")
    p.add_argument('--window', type=float, default=3.0, help='s from a burst\'s start to count frames answered')
    p.add_argument('--json', default='benchmarks/results/services.json')
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split('x'))

    import cv2
    import rclpy
    import torch
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.srv import GetState
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from sam2_ros.model.build import build_random_model
    from sam2_ros.ros import conversions as cv
    from helpers.clips import clip_frames

    private_domain()
    with tempfile.NamedTemporaryFile(suffix='.pt', delete=False) as tmp:
        torch.save({'model': build_random_model('tiny', args.image_size, 'cpu').state_dict()}, tmp.name)
    log_path = ROOT / 'outputs' / 'benchmarks' / 'services.node.log'
    node = start_node({'checkpoint': tmp.name, 'image_size': args.image_size, 'device': 'cpu',
                       'frame_policy': 'latest', 'publish_overlay': 'false', 'max_objects': 2 * args.objects,
                       'everything_points_per_side': 4}, log_path, threads=args.threads)
    rclpy.init()
    n = rclpy.create_node('bench_services_client')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    pub = n.create_publisher(Image, 'image', reliable)
    mask_pub = n.create_publisher(Image, '/sam2_tracker/prompt_mask', 10)
    got, diags = {}, []

    def on_masks(m):
        got[m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec] = time.monotonic()

    def on_diag(m):
        for s in m.status:
            if 'sam2_tracker' in s.name:
                diags.append({kv.key: kv.value for kv in s.values})

    n.create_subscription(Image, '/sam2_tracker/masks', on_masks, reliable)
    n.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    reset = n.create_client(Trigger, '/sam2_tracker/reset', qos_profile=deep)
    everything = n.create_client(Trigger, '/sam2_tracker/track_everything', qos_profile=deep)
    get_state = n.create_client(GetState, '/sam2_tracker/get_state', qos_profile=deep)
    params = AsyncParameterClient(n, '/sam2_tracker', qos_profile=deep)
    stop_spin = spin_in_background(n, period=0.005)
    frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in clip_frames()]
    msgs = [cv.numpy_to_image(f, 'rgb8') for f in frames]
    labels = np.zeros((h, w), np.uint16)
    cols = 4
    rows = -(-args.objects // cols)
    for i in range(args.objects):
        r, c = divmod(i, cols)
        labels[int(h * r / rows) + 3:int(h * (r + 1) / rows) - 3, int(w * c / cols) + 3:int(w * (c + 1) / cols) - 3] = i + 1
    streaming = threading.Event()
    counter = [0]

    def stream():
        while streaming.is_set():
            msg = msgs[counter[0] % len(msgs)]
            msg.header.stamp.sec = 100 + counter[0] // 1000
            msg.header.stamp.nanosec = (counter[0] % 1000) * 1_000_000
            pub.publish(msg)
            counter[0] += 1
            time.sleep(1.0 / args.rate)

    def burst(name, send):
        """``args.calls`` calls at once; per-call latency to the answer, in ms."""
        mask_pub.publish(cv.numpy_to_image(labels, 'mono16'))  # the objects again (after a reset too)
        time.sleep(3.0)  # a few frames with them (and a diagnostics period)
        state = diags[-1] if diags else {}
        t0 = time.monotonic()
        sent_at, done_at = [], [None] * args.calls
        futures = []
        for i in range(args.calls):
            sent_at.append(time.monotonic())
            f = send(i)
            f.add_done_callback(lambda _f, i=i: done_at.__setitem__(i, time.monotonic()))
            futures.append(f)
        deadline = time.monotonic() + 120
        while any(d is None for d in done_at) and time.monotonic() < deadline:
            time.sleep(0.005)
        took = time.monotonic() - t0
        time.sleep(max(0.0, t0 + args.window - time.monotonic()))
        flowing = sum(1 for t in list(got.values()) if t0 <= t <= t0 + args.window)
        lat = np.array([(d - s) * 1000.0 for s, d in zip(sent_at, done_at) if d is not None])
        ok = sum(1 for f in futures if f.done() and _success(f.result()))
        return {'service': name, 'calls': args.calls, 'answered': int(lat.size), 'successful': ok,
                'latency_ms_p50': float(np.percentile(lat, 50)) if lat.size else None,
                'latency_ms_p99': float(np.percentile(lat, 99)) if lat.size else None,
                'latency_ms_worst': float(lat.max()) if lat.size else None,
                'burst_s': round(took, 3), f'frames_answered_within_{args.window:g}s': flowing,
                'objects_before': int(float(state.get('objects', 0))),
                'node_track_p50_ms_before': float(state.get('track_p50_ms', 'nan'))}

    results = []
    try:
        wait_for_node(node, pub, n, log_path)
        assert reset.wait_for_service(timeout_sec=10) and params.wait_for_services(timeout_sec=10)
        streaming.set()
        threading.Thread(target=stream, daemon=True).start()
        t = time.monotonic()
        while not got and time.monotonic() - t < 120:
            time.sleep(0.05)
        results.append(burst('get_state (lifecycle)', lambda i: get_state.call_async(GetState.Request())))
        results.append(burst('set_parameters (mask_threshold)', lambda i: params.set_parameters(
            [Parameter('mask_threshold', value=0.001 * i)])))
        results.append(burst('track_everything', lambda i: everything.call_async(Trigger.Request())))
        results.append(burst('reset', lambda i: reset.call_async(Trigger.Request())))
        time.sleep(2.5)
        streaming.clear()
        last = diags[-1] if diags else {}
    finally:
        streaming.clear()
        code = shut_down(node, n, stop_spin)
        os.unlink(tmp.name)
    report = {
        'date': datetime.date.today().isoformat(), 'machine': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(), 'note': 'shared machine: other jobs loaded the cores',
        'command': 'python benchmarks/bench_services.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
        'model': 'tiny (random weights)', 'image_size': args.image_size, 'frame': f'{w}x{h}',
        'objects': args.objects, 'node_threads': args.threads, 'frames_sent': counter[0],
        'frames_answered': len(got), 'node_track_p50_ms': float(last.get('track_p50_ms', 'nan')),
        'node_latency_p95_ms': float(last.get('latency_p95_ms', 'nan')), 'node_exit_code': code,
        'bursts': results,
    }
    pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps(report, indent=1))
    print(f'wrote {args.json} (node log {log_path})')
    return 0 if code == 0 else 1


def _success(result) -> bool:
    """A service answer's verdict: Trigger.success, every SetParametersResult, or any GetState."""
    if hasattr(result, 'success'):
        return bool(result.success)
    if hasattr(result, 'results'):
        return all(r.successful for r in result.results)
    return True


if __name__ == '__main__':
    sys.exit(main())
