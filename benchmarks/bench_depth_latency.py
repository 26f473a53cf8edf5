"""The node's tracking latency with objects in 3-D on and off, side by side on the same frames
(issue 22: "no change in tracking latency p95 with depth on").

    python benchmarks/bench_depth_latency.py --frames 120 --rate 2 --objects 4 --size 640x480 \\
        --image-size 256 --json benchmarks/results/depth_latency.json

Two node processes (``python -m sam2_ros``, a tiny model with random weights, one torch thread
each: the machine's two cores, one each), ``/off`` with ``depth: false`` and ``/on`` with
``depth: true``, get the same stream: a synthetic RGB-D scene (test/helpers/rgbd_scene.py:
``--objects`` boxes and spheres at 1.2 to 1.8 m, ``--size`` colour and 16UC1 depth) at
``--rate`` frames a second, each frame with a mask prompt of every object stamped with it (with
random weights a tracked mask means nothing; a prompted frame's masks are the objects', so the
3-D step measures real objects), ``/on`` also the depth image and camera_info of the frame. The
client watches ``~/masks`` of both and ``~/markers`` of ``/on`` (the 3-D step runs only while
watched). Reported per node: latency publish -> ``~/masks`` received (p50, p95, max) on the
frames both answered, frames dropped (``frame_policy: latest``), the node's own latency
(received -> masks published) and, for ``/on``, masks -> markers received and the 3-D step's
time from its diagnostics. ``--control``: ``/on`` has ``depth: false`` too (an A/A run: how far two
like nodes differ on this machine). The nodes' logs: outputs/benchmarks/depth_latency.{off,on}.log.
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
from ros_harness import ROOT, private_domain, spin_in_background, start_node, wait_for_node

sys.path.insert(0, str(ROOT / 'test'))
sys.path.insert(0, str(ROOT))


def scene_messages(size: str, n: int):
    """The colour image (bgr8 message), 16UC1 depth message, camera_info and prompt label image."""
    from bench_objects3d import K1280, layout
    from helpers.rgbd_msgs import camera_info_of, depth_msg
    from helpers.rgbd_scene import K640, scene, to_16uc1
    from sam2_ros.ros import conversions as cv

    k = {'640x480': K640, '1280x720': K1280}[size]
    sc = scene(layout(n), 2.0, k=k, seed=n)
    rgb = np.full((k.height, k.width, 3), 90, np.uint8)
    for i in range(1, n + 1):
        rgb[sc.colour_ids == i] = (40 * i % 256, 200, 255 - 30 * i % 256)
    return (cv.numpy_to_image(rgb[..., ::-1], 'bgr8'), depth_msg(to_16uc1(sc.depth), frame_id='camera_depth'),
            camera_info_of(k), sc.colour_ids.astype(np.uint16))


def percentiles(values) -> dict:
    v = np.asarray(values, float)
    if not v.size:
        return {}
    return {'p50_ms': float(np.percentile(v, 50)), 'p95_ms': float(np.percentile(v, 95)), 'max_ms': float(v.max()),
            'frames': int(v.size)}


def run(args, checkpoint: str) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from visualization_msgs.msg import MarkerArray

    from sam2_ros.ros import conversions as cv

    private_domain()
    if args.cv_threads:  # OpenCV reads it when loaded: the nodes' thread pool (both nodes alike)
        os.environ['OPENCV_FOR_THREADS_NUM'] = str(args.cv_threads)
    colour, depth, info, labels = scene_messages(args.size, args.objects)
    params = {'checkpoint': checkpoint, 'model': 'tiny', 'image_size': args.image_size, 'device': 'cpu',
              'image_qos': 'reliable', 'qos_depth': 1, 'frame_policy': 'latest', 'publish_overlay': 'false',
              'max_objects': args.objects, 'state_present_threshold': 0.0, 'state_absent_threshold': 0.0}
    logs = {name: ROOT / 'outputs' / 'benchmarks' / f'depth_latency.{name}.log' for name in ('off', 'on')}
    procs = {name: start_node({**params, 'depth': name == 'on' and not args.control}, logs[name], threads=1,
                              ros_args=['-r', f'__ns:=/{name}'])
             for name in ('off', 'on')}
    rclpy.init()
    n = rclpy.create_node('bench_depth_latency')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {name: n.create_publisher(Image, f'/{name}/image', qos) for name in procs}
    prompt_pubs = {name: n.create_publisher(Image, f'/{name}/sam2_tracker/prompt_mask', qos) for name in procs}
    depth_pub = n.create_publisher(Image, '/on/depth', qos)
    info_pub = n.create_publisher(CameraInfo, '/on/camera_info', qos)
    got = {name: {} for name in procs}
    markers, diag = {}, {}

    def on_masks(name):
        return lambda m: got[name].setdefault(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, time.monotonic())

    for name in procs:
        n.create_subscription(Image, f'/{name}/sam2_tracker/masks', on_masks(name), qos)
    n.create_subscription(MarkerArray, '/on/sam2_tracker/markers', lambda m: markers.setdefault(
        m.markers[0].header.stamp.sec * 10**9 + m.markers[0].header.stamp.nanosec, time.monotonic())
        if m.markers else None, qos)
    n.create_subscription(DiagnosticArray, '/diagnostics', lambda m: [
        diag.__setitem__(s.name.split('/')[1], {kv.key: kv.value for kv in s.values}) for s in m.status], 10)
    stop_spin = spin_in_background(n, period=0.005)
    sent = {}
    try:
        for name, proc in procs.items():
            wait_for_node(proc, pubs[name], n, logs[name], masks_topic=f'/{name}/sam2_tracker/masks')
        period = 1.0 / args.rate
        start = time.monotonic()
        for j in range(args.frames + args.warmup):
            stamp_ns = 100 * 10**9 + j * int(period * 1e9)
            sec, nsec = divmod(stamp_ns, 10**9)
            prompt = cv.numpy_to_image(labels, 'mono16')
            prompt.header.stamp.sec, prompt.header.stamp.nanosec = sec, nsec
            depth.header.stamp.sec, depth.header.stamp.nanosec = sec, nsec
            info.header.stamp = depth.header.stamp
            colour.header.stamp.sec, colour.header.stamp.nanosec = sec, nsec
            for name in procs:  # the prompt first: it applies to its frame
                prompt_pubs[name].publish(prompt)
            info_pub.publish(info)
            depth_pub.publish(depth)
            time.sleep(0.02)
            t = time.monotonic()
            order = ('off', 'on') if j % 2 else ('on', 'off')  # neither always first
            for name in order:
                pubs[name].publish(colour)
            if j >= args.warmup:
                sent[stamp_ns] = t
            next_at = start + (j + 1) * period
            time.sleep(max(0.0, next_at - time.monotonic()))
        time.sleep(3.0)  # the last answers and diagnostics
    finally:
        stop_spin()
        n.destroy_node()
        rclpy.try_shutdown()
        for proc in procs.values():
            proc.send_signal(2)
        for proc in procs.values():
            proc.wait(60)
    both = [s for s in sent if all(s in got[name] for name in procs)]
    result = {}
    for name in procs:
        lat = [1000 * (got[name][s] - sent[s]) for s in both]
        node = diag.get(name, {})
        result[name] = {'latency': percentiles(lat), 'answered': sum(s in got[name] for s in sent), 'sent': len(sent),
                        'node_latency_p50_ms': float(node.get('latency_p50_ms', 'nan')),
                        'node_latency_p95_ms': float(node.get('latency_p95_ms', 'nan')),
                        'track_p50_ms': float(node.get('track_p50_ms', 'nan'))}
    on = diag.get('on', {})
    if args.control:
        return result
    result['on']['masks_to_markers'] = percentiles([1000 * (markers[s] - got['on'][s]) for s in both if s in markers])
    result['on']['objects_3d_p50_ms'] = float(on.get('objects_3d_p50_ms', 'nan'))
    result['on']['objects_3d_p95_ms'] = float(on.get('objects_3d_p95_ms', 'nan'))
    result['on']['frames_3d'] = int(on.get('frames_3d', 0))
    result['on']['depth_paired_exact'] = int(on.get('depth_paired_exact', 0))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=120)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--rate', type=float, default=2.0, help='frames a second')
    p.add_argument('--objects', type=int, default=4)
    p.add_argument('--size', default='640x480', choices=('640x480', '1280x720'))
    p.add_argument('--image-size', type=int, default=256)
    p.add_argument('--cv-threads', type=int, default=0,
                   help="the nodes' OpenCV threads (OPENCV_FOR_THREADS_NUM; 0: OpenCV's default, the cores)")
    p.add_argument('--control', action='store_true',
                   help='an A/A run: /on gets depth: false too (same stream): the spread between two like nodes')
    p.add_argument('--json', default='benchmarks/results/depth_latency.json')
    args = p.parse_args(argv)
    import torch

    from sam2_ros.model.build import build_random_model

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = os.path.join(tmp, 'sam2.1_hiera_tiny_random.pt')
        torch.save({'model': build_random_model('tiny', args.image_size, 'cpu').state_dict()}, checkpoint)
        load = os.getloadavg()
        result = run(args, checkpoint)
    meta = {'date': datetime.date.today().isoformat(), 'machine': platform.processor() or platform.machine(),
            'cpus': os.cpu_count(), 'load_avg_before': load, 'load_avg_after': os.getloadavg(),
            'command': ' '.join(sys.argv)}
    print('| node | latency p50 / p95 / max (ms) | frames answered of sent | node latency p50 / p95 (ms) | '
          'track p50 (ms) | masks -> markers p50 / p95 (ms) | 3-D step p50 / p95 (ms) |')
    print('|---|---|---|---|---|---|---|')
    for name in ('off', 'on'):
        r = result[name]
        lat, mm = r['latency'], r.get('masks_to_markers', {})
        print(f"| depth {name} | {lat.get('p50_ms', float('nan')):.1f} / {lat.get('p95_ms', float('nan')):.1f} / "
              f"{lat.get('max_ms', float('nan')):.1f} | {r['answered']} of {r['sent']} | "
              f"{r['node_latency_p50_ms']:.1f} / {r['node_latency_p95_ms']:.1f} | {r['track_p50_ms']:.1f} | "
              + (f"{mm.get('p50_ms', float('nan')):.1f} / {mm.get('p95_ms', float('nan')):.1f} | "
                 f"{r['objects_3d_p50_ms']:.2f} / {r['objects_3d_p95_ms']:.2f} |" if 'masks_to_markers' in r else
                 '- | - |'))
    print(json.dumps(meta))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({'meta': meta, 'args': vars(args), 'results': result}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
