"""The node's cost: end-to-end latency over DDS and the ROS share of a frame.

    python benchmarks/bench_ros.py --checkpoint sam2.1_hiera_tiny.pt --model tiny --image-size 256 \\
        --sizes 640x480 1280x720 --objects 1 5 --frames 30 --device cpu

1. ROS share (in this process, no DDS): converting the input Image (bgr8) to RGB, building the
   mono16 label image from N objects' logits, filling the message and publishing it; and,
   separately, drawing and publishing ``~/overlay``. Realistic masks (discs), not noise.
2. End to end: the node (``python -m sam2_ros``) in a subprocess, this process publishes bgr8
   frames (reliable) one at a time and times publish -> ``~/masks`` received, with N objects
   prompted by a label image. Reported with the node's own diagnostics (convert / track /
   publish medians).

Without ``--checkpoint`` a random-weights checkpoint of ``--model`` is written to a temporary
file (the timing is the same; the masks are meaningless). Results: printed, and written as JSON
to ``--out`` (default outputs/benchmarks/bench_ros.json).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
from ros_harness import private_domain, shut_down, spin_in_background, start_node, wait_for_node


def _discs(n, h, w):
    import torch

    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    r = min(h, w) / 6
    out = []
    for i in range(n):
        cx, cy = w * (i + 1) / (n + 1), h / 2
        out.append(10.0 * (1 - ((xx - cx) ** 2 + (yy - cy) ** 2).float().sqrt() / r))
    return torch.stack(out) if out else torch.zeros(0, h, w)


def ros_share(sizes, objects, reps=30):
    import rclpy
    from sensor_msgs.msg import Image

    from sam2_ros.ros import conversions as cv
    from sam2_ros.ros.outputs import OUTPUT_QOS
    from sam2_ros.visualization import label_image, overlay

    rclpy.init()
    node = rclpy.create_node('bench_ros_share')
    pub = node.create_publisher(Image, 'bench_masks', OUTPUT_QOS)
    opub = node.create_publisher(Image, 'bench_overlay', OUTPUT_QOS)
    results = []
    for w, h in sizes:
        rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        msg = cv.numpy_to_image(np.ascontiguousarray(rgb[..., ::-1]), 'bgr8')
        for n in objects:
            logits, ids = _discs(n, h, w), list(range(1, n + 1))
            reuse, share, draw = None, [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                frame = cv.image_to_rgb(msg)
                label = label_image(logits, ids, 0.0)
                reuse = cv.label_to_image(label, msg.header, reuse=reuse)
                pub.publish(reuse)
                t1 = time.perf_counter()
                image = overlay(frame, (logits > 0).numpy(), ids)
                opub.publish(cv.rgb_to_bgr8_image(image, msg.header))
                draw.append(time.perf_counter() - t1)
                share.append(t1 - t0)
            row = {'size': f'{w}x{h}', 'objects': n, 'ros_share_ms_p50': 1000 * float(np.median(share)),
                   'ros_share_ms_p95': 1000 * float(np.percentile(share, 95)),
                   'overlay_ms_p50': 1000 * float(np.median(draw))}
            print(f"[ros share] {row['size']:>9} {n} object(s): convert + label + publish "
                  f"{row['ros_share_ms_p50']:.2f} ms (p95 {row['ros_share_ms_p95']:.2f}); overlay "
                  f"{row['overlay_ms_p50']:.1f} ms", flush=True)
            results.append(row)
    node.destroy_node()
    rclpy.try_shutdown()
    return results


def end_to_end(args, checkpoint, sizes, objects):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from sam2_ros.ros import conversions as cv

    private_domain()
    log_path = pathlib.Path(args.out).with_suffix('.node.log')
    node_proc = start_node({'checkpoint': checkpoint, 'model': args.model, 'image_size': args.image_size,
                            'device': args.device, 'image_qos': 'reliable', 'qos_depth': 5,
                            'publish_overlay': 'false', 'max_objects': max(objects + [1])}, log_path)
    rclpy.init()
    n = rclpy.create_node('bench_ros_client')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = n.create_publisher(Image, 'image', qos)
    mask_pub = n.create_publisher(Image, '/sam2_tracker/prompt_mask', 10)
    got, diag = {}, [None]
    n.create_subscription(Image, '/sam2_tracker/masks', lambda m: got.__setitem__(m.header.stamp.sec, time.monotonic()), qos)
    n.create_subscription(DiagnosticArray, '/diagnostics', lambda m: diag.__setitem__(0, m), 10)
    stop_spin = spin_in_background(n)
    results = []
    try:
        wait_for_node(node_proc, pub, n, log_path)
        sec = 100
        for w, h in sizes:
            rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
            for k in objects:
                labels = np.zeros((h, w), np.uint16)
                for i in range(k):
                    x0 = int(w * i / k)
                    labels[h // 4: 3 * h // 4, x0 + 2: int(w * (i + 1) / k) - 2] = i + 1
                lat = []
                for j in range(args.frames + 3):
                    if j == 0 and k:
                        m = cv.numpy_to_image(labels, 'mono16')
                        m.header.stamp.sec = sec
                        mask_pub.publish(m)
                        time.sleep(0.3)
                    msg = cv.numpy_to_image(rgb[..., ::-1], 'bgr8')
                    msg.header.stamp.sec = sec
                    t = time.monotonic()
                    pub.publish(msg)
                    while sec not in got and time.monotonic() - t < 60:
                        time.sleep(0.0005)
                    if sec in got and j >= 3:  # the first frames: prompt + warm-up at this size
                        lat.append(1000 * (got[sec] - t))
                    sec += 1
                time.sleep(1.2)
                values = {kv.key: kv.value for kv in diag[0].status[0].values} if diag[0] else {}
                row = {'size': f'{w}x{h}', 'objects': k, 'frames': len(lat),
                       'e2e_ms_p50': float(np.percentile(lat, 50)), 'e2e_ms_p95': float(np.percentile(lat, 95)),
                       **{key: float(values[key]) for key in ('convert_p50_ms', 'track_p50_ms', 'publish_p50_ms')
                          if key in values}}
                print(f"[end to end] {row['size']:>9} {k} object(s): p50 {row['e2e_ms_p50']:.1f} ms, "
                      f"p95 {row['e2e_ms_p95']:.1f} ms (node: track {row.get('track_p50_ms', float('nan')):.1f} ms, "
                      f"ros {row.get('convert_p50_ms', 0) + row.get('publish_p50_ms', 0):.1f} ms)", flush=True)
                results.append(row)
                # a fresh start for the next row
                from std_srvs.srv import Trigger
                cli = n.create_client(Trigger, '/sam2_tracker/reset')
                cli.wait_for_service(timeout_sec=10)
                fut = cli.call_async(Trigger.Request())
                while not fut.done():
                    time.sleep(0.01)
    finally:
        shut_down(node_proc, n, stop_spin)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--model', default='tiny')
    p.add_argument('--image-size', type=int, default=256)
    p.add_argument('--device', default='cpu')
    p.add_argument('--sizes', nargs='+', default=['640x480', '1280x720'])
    p.add_argument('--objects', nargs='+', type=int, default=[1])
    p.add_argument('--frames', type=int, default=30)
    p.add_argument('--skip-e2e', action='store_true')
    p.add_argument('--out', default='outputs/benchmarks/bench_ros.json')
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.sizes]
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report = {'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count(),
              'omp_threads': os.environ.get('OMP_NUM_THREADS'), 'model': args.model,
              'image_size': args.image_size, 'device': args.device}
    report['ros_share'] = ros_share(sizes, args.objects)
    if not args.skip_e2e:
        checkpoint = args.checkpoint
        tmp = None
        if checkpoint is None:
            import torch

            from sam2_ros.model.build import build_random_model

            tmp = tempfile.NamedTemporaryFile(suffix='.pt', delete=False)
            torch.save({'model': build_random_model(args.model, 1024, 'cpu').state_dict()}, tmp.name)
            checkpoint = tmp.name
            report['weights'] = 'random'
        try:
            report['end_to_end'] = end_to_end(args, checkpoint, sizes, args.objects)
        finally:
            if tmp is not None:
                os.unlink(tmp.name)
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + '\n')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
