"""Endurance: a long stream through the tracker (and, optionally, through the node over DDS),
with resident memory, held tracker state, threads and open file descriptors sampled over time.

    .venv/bin/python benchmarks/bench_endurance.py --frames 20000 --image-size 64 \\
        [--node-frames 3000] --json benchmarks/results/endurance.json --plot docs/endurance_rss.png

1. Tracker (this process): ``--frames`` frames of the bundled clip (160x96, looped) through
   ``Tracker.track`` on the CPU, tiny model with random weights (the cost and the memory depend
   on shapes, not values), the prompt schedule of test/test_reliability_endurance.py: two
   objects, object 1 corrected every 50 frames, object 2 removed and started again every 200
   frames. Sampled every ``--sample-every`` frames: RSS (/proc/self/statm), the tracker's held
   state (``state_bytes()``), OS threads (/proc/self/task), open fds (/proc/self/fd).
2. Node (``--node-frames`` > 0): ``python -m sam2_ros`` in a subprocess, fed frames in lockstep
   (one frame, wait for its ~/masks) with two objects from a label-image prompt; the node's RSS,
   threads and fds are read from /proc/<pid>/ every ``--sample-every`` frames.

The RSS slope is a least-squares line over the samples after ``--warmup`` frames, in MB per
1000 frames. The plot shows RSS (MiB) over frames for both runs.
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


def proc_figures(pid='self'):
    """(RSS MiB, threads, open fds) of a process from /proc."""
    with open(f'/proc/{pid}/statm') as f:
        rss = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    return rss, len(os.listdir(f'/proc/{pid}/task')), len(os.listdir(f'/proc/{pid}/fd'))


def slope_per_1000(frames, values, warmup):
    x = np.asarray(frames, float)
    y = np.asarray(values, float)
    keep = x >= warmup
    if keep.sum() < 2:
        return float('nan')
    return float(np.polyfit(x[keep], y[keep], 1)[0] * 1000.0)


def run_tracker(args):
    import torch

    from sam2_ros import Prompt, Tracker
    from sam2_ros.model.build import build_random_model
    from helpers.clips import clip_frames, prompts_for

    torch.set_num_threads(args.threads)
    frames = clip_frames()
    tracker = Tracker(build_random_model('tiny', args.image_size, 'cpu'))
    samples = []
    start = time.perf_counter()
    for i in range(args.frames):
        if i % 200 == 99:
            tracker.remove_object(2)
        tracker.track(frames[i % len(frames)], prompts_for(i, Prompt))
        if i % args.sample_every == 0 or i == args.frames - 1:
            rss, threads, fds = proc_figures()
            samples.append({'frame': i, 'rss_mib': rss, 'state_bytes': tracker.state_bytes(),
                            'objects': len(tracker.object_ids), 'threads': threads, 'fds': fds,
                            'seconds': time.perf_counter() - start})
            if i % (args.sample_every * 20) == 0:
                print(f'[tracker] frame {i}: RSS {rss:.1f} MiB, state {samples[-1]["state_bytes"]} B, '
                      f'{threads} threads, {fds} fds, {samples[-1]["seconds"]:.0f} s', flush=True)
    return samples


def summarize(samples, warmup):
    after = [s for s in samples if s['frame'] >= warmup]
    frames = [s['frame'] for s in samples]
    out = {
        'frames': samples[-1]['frame'] + 1,
        'rss_mib_first': samples[0]['rss_mib'],
        'rss_mib_at_warmup': after[0]['rss_mib'],
        'rss_mib_last': samples[-1]['rss_mib'],
        'rss_mib_max_after_warmup': max(s['rss_mib'] for s in after),
        'rss_slope_mb_per_1000_frames': slope_per_1000(frames, [s['rss_mib'] * 2 ** 20 / 1e6 for s in samples],
                                                       warmup),
        'threads': sorted({s['threads'] for s in after}),
        'fds': sorted({s['fds'] for s in after}),
        'seconds': samples[-1].get('seconds'),
    }
    if 'state_bytes' in samples[0]:
        by_objects = {}
        for s in after:
            by_objects.setdefault(s['objects'], set()).add(s['state_bytes'])
        out['state_bytes_by_object_count'] = {str(k): sorted(v) for k, v in sorted(by_objects.items())}
    return out


def run_node(args, checkpoint):
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from sam2_ros.ros import conversions as cv
    from helpers.clips import clip_frames

    private_domain()
    log_path = ROOT / 'outputs' / 'benchmarks' / 'endurance.node.log'
    node = start_node({'checkpoint': checkpoint, 'image_size': args.image_size, 'device': 'cpu',
                       'image_qos': 'reliable', 'qos_depth': 5, 'publish_overlay': 'false'},
                      log_path, threads=args.threads)
    rclpy.init()
    n = rclpy.create_node('bench_endurance_client')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = n.create_publisher(Image, 'image', qos)
    mask_pub = n.create_publisher(Image, '/sam2_tracker/prompt_mask', 10)
    got = {}
    n.create_subscription(Image, '/sam2_tracker/masks', lambda m: got.__setitem__(
        m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec, time.monotonic()), qos)
    stop_spin = spin_in_background(n)
    frames = clip_frames()
    samples = []
    lost = 0
    try:
        wait_for_node(node, pub, n, log_path)
        labels = np.zeros((96, 160), np.uint16)
        labels[20:70, 10:70] = 1
        labels[20:80, 90:150] = 2
        m = cv.numpy_to_image(labels, 'mono16')
        mask_pub.publish(m)
        time.sleep(0.5)
        start = time.perf_counter()
        for i in range(args.node_frames):
            msg = cv.numpy_to_image(frames[i % len(frames)], 'rgb8')
            msg.header.stamp.sec = 1000 + i // 1000
            msg.header.stamp.nanosec = (i % 1000) * 1000
            key = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
            t = time.monotonic()
            pub.publish(msg)
            while key not in got and time.monotonic() - t < 30:
                time.sleep(0.0005)
            if key not in got:
                lost += 1
            got.pop(key, None)
            if i % args.sample_every == 0 or i == args.node_frames - 1:
                rss, threads, fds = proc_figures(node.pid)
                samples.append({'frame': i, 'rss_mib': rss, 'threads': threads, 'fds': fds,
                                'seconds': time.perf_counter() - start})
                if i % (args.sample_every * 20) == 0:
                    print(f'[node] frame {i}: RSS {rss:.1f} MiB, {threads} threads, {fds} fds, '
                          f'{samples[-1]["seconds"]:.0f} s', flush=True)
    finally:
        code = shut_down(node, n, stop_spin)
    return samples, lost, code


def plot(path, tracker, node, title, warmup):
    """Two panels: RSS on a scale from 0 (the size of any growth against the whole), and the
    change of RSS since the warm-up frame in MiB (a leak would show as a rising line)."""
    import cv2

    from sam2_ros.tools.plots import line_plot

    series = {'tracker (this process)': ([s['frame'] for s in tracker], [s['rss_mib'] for s in tracker])}
    if node:
        series['node process (over DDS)'] = ([s['frame'] for s in node], [s['rss_mib'] for s in node])
    hi = max(max(v) for _, v in series.values())
    top = line_plot(None, series, title, 'frames', 'resident memory (MiB)', ylim=(0.0, hi * 1.15))
    zoom = {}
    for name, samples, start in (('tracker (this process)', tracker, warmup),
                                 ('node process (over DDS)', node, min(warmup, len(node) and node[-1]['frame'] // 3))):
        if not samples:
            continue
        base = next(s['rss_mib'] for s in samples if s['frame'] >= start)
        zoom[name] = ([s['frame'] for s in samples], [s['rss_mib'] - base for s in samples])
    span = max(2.0, max(abs(v) for _, ys in zoom.values() for v in ys) * 1.2)
    bottom = line_plot(None, zoom, 'RSS change since the warm-up frame (a leak would rise)', 'frames',
                       'RSS change (MiB)', ylim=(-span, span))
    cv2.imwrite(str(path), cv2.vconcat([top, bottom]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=20000)
    p.add_argument('--node-frames', type=int, default=0)
    p.add_argument('--image-size', type=int, default=64)
    p.add_argument('--threads', type=int, default=1, help='torch / OpenMP threads')
    p.add_argument('--sample-every', type=int, default=100)
    p.add_argument('--warmup', type=int, default=1000, help='frames before the slope is fitted')
    p.add_argument('--json', default='benchmarks/results/endurance.json')
    p.add_argument('--plot', default='docs/endurance_rss.png')
    p.add_argument('--replot', action='store_true', help='only draw --plot again from --json')
    args = p.parse_args(argv)
    if args.replot:
        report = json.loads(pathlib.Path(args.json).read_text())
        plot(args.plot, report['tracker_samples'], report.get('node_samples', []),
             f"RSS over {report['tracker']['frames']} frames (tiny, {report['image_size']} px, CPU)",
             report['warmup_frames'])
        print(f'wrote {args.plot}')
        return 0
    report = {'date': datetime.date.today().isoformat(), 'machine': platform.processor() or platform.machine(),
              'cpus': os.cpu_count(), 'model': 'tiny (random weights)', 'image_size': args.image_size,
              'frame': '160x96', 'threads': args.threads, 'warmup_frames': args.warmup,
              'command': 'python benchmarks/bench_endurance.py ' + ' '.join(argv if argv is not None else sys.argv[1:])}
    tracker = run_tracker(args)
    report['tracker'] = summarize(tracker, args.warmup)
    report['tracker_samples'] = tracker
    print('[tracker]', json.dumps(report['tracker']), flush=True)
    node = []
    if args.node_frames:
        import torch

        from sam2_ros.model.build import build_random_model

        with tempfile.NamedTemporaryFile(suffix='.pt', delete=False) as tmp:
            torch.save({'model': build_random_model('tiny', args.image_size, 'cpu').state_dict()}, tmp.name)
        try:
            node, lost, code = run_node(args, tmp.name)
        finally:
            os.unlink(tmp.name)
        report['node'] = dict(summarize(node, min(args.warmup, args.node_frames // 3)), frames_unanswered=lost,
                              exit_code=code)
        report['node_samples'] = node
        print('[node]', json.dumps(report['node']), flush=True)
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    plot(args.plot, tracker, node, f'RSS over {args.frames} frames (tiny, {args.image_size} px, CPU)', args.warmup)
    print(f'wrote {args.json} and {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
