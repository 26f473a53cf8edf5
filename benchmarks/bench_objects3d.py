"""Cost of the 3-D step per frame (issue 22): objects in 3-D from masks and an aligned depth
image, and their messages.

    .venv/bin/python benchmarks/bench_objects3d.py --frames 200 --json benchmarks/results/objects3d.json

Scenes are rendered from known geometry (test/helpers/rgbd_scene.py: boxes and spheres on a grid at
1.2 to 1.8 m before a wall, depth noise, flying pixels and holes), 16UC1 depth at the colour
image's size (``--depth-scale 2``: half), masks the objects' projections dilated by one pixel.
Per size and object count, three measures over ``--frames`` frames (after 5 warm-up frames),
all in this one process, interleaved frame by frame so that the machine's load falls on all
alike:

* ``3d``: what every frame with depth costs the node's worker: the node's own step
  (:class:`sam2_ros.ros.objects3d_step.Objects3DStep`: the depth image put by its callback and
  taken by the frame's stamp, decoded (a view), the camera_info's intrinsics (kept), the
  objects' masks thresholded from (N, H, W) float logits, :meth:`Objects3D.estimate` without
  oriented boxes) and the MarkerArray;
* ``3d+points``: the same with each object's points (at most ``--max-points``) and the
  PointCloud2 message (``publish_points: true``);
* ``3d+obb``: :meth:`Objects3D.estimate` with the oriented boxes (the Python API's default).

``--accuracy``: instead, the worst errors against the truth over ``--seeds`` renderings of the
tests' scene (test/helpers/rgbd_scene.three_objects: two turned boxes and a sphere) at 1, 2 and 3 m,
depth at the colour size and at half, masks eroded, exact and dilated by one pixel.

Reported: wall-clock median, p90 and minimum milliseconds per frame, the median and minimum of
the process's CPU time per frame (``time.process_time``: what the step costs on a machine shared
with other jobs, which the wall clock does not show), and the mean points per object.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from helpers.rgbd_scene import K640, Box, Sphere, masks_of, rotation_y, scene, three_objects, to_16uc1  # noqa: E402

from sam2_ros.ros import objects3d_msgs as om  # noqa: E402
from sam2_ros.ros.depth_input import camera_info_to_intrinsics, depth_image_to_numpy  # noqa: E402
from sam2_ros.tracking.objects3d import Intrinsics, Objects3D  # noqa: E402

K1280 = Intrinsics(fx=910.0, fy=910.0, cx=640.0, cy=360.0, width=1280, height=720)


def layout(n: int):
    """``n`` objects (boxes and spheres in turn) on a grid, about 0.15 m each, 1.2 to 1.8 m away."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    shapes = []
    for i in range(n):
        r, c = divmod(i, cols)
        z = 1.2 + 0.6 * (i % 3) / 2
        x = (c - (cols - 1) / 2) * 0.22 * z / 1.2 * (3 / max(cols, 3))
        y = (r - (rows - 1) / 2) * 0.2 * z / 1.2 * (3 / max(rows, 3))
        shapes.append(Box([x, y, z], [0.14, 0.11, 0.08], rotation_y(25 * (-1) ** i)) if i % 2 == 0
                      else Sphere([x, y, z], 0.065))
    return shapes


def _camera_info(k: Intrinsics):
    from sensor_msgs.msg import CameraInfo
    return CameraInfo(width=k.width, height=k.height, k=[float(v) for v in k.matrix.reshape(-1)])


def _depth_image(depth: np.ndarray):
    from sam2_ros.ros.conversions import numpy_to_image
    return numpy_to_image(depth, '16UC1')


def run(k: Intrinsics, n: int, frames: int, depth_scale: int, max_points: int) -> dict:
    import torch
    from std_msgs.msg import Header

    from sam2_ros.ros import params
    from sam2_ros.ros.objects3d_step import Objects3DStep, masks_from_logits

    sc = scene(layout(n), 2.0, k=k, depth_scale=depth_scale, seed=n)
    masks = masks_of(sc.colour_ids, n, 1)
    logits = torch.from_numpy(np.where(masks, 5.0, -5.0).astype(np.float32))  # (N, H, W) as the tracker gives
    ids = list(range(1, n + 1))
    depth_msg, info_msg = _depth_image(to_16uc1(sc.depth)), _camera_info(k)
    header = Header(frame_id='camera_color_optical_frame')
    p = {**{s.name: s.default for s in params.SPECS}, 'max_points_per_object': max_points}
    step = Objects3DStep(p, lambda *a: None)
    step.on_camera_info(info_msg)
    est_obb = Objects3D(max_points_per_object=max_points)
    times = {'3d': [], '3d+obb': [], '3d+points': []}
    cpu = {'3d': [], '3d+obb': [], '3d+points': []}
    shown = set()
    points = []
    scores, states, labels = np.ones(n), {}, {}

    def masks_of_(indices):  # as the node's Outputs3D: the visible objects' logits thresholded
        return masks_from_logits(logits, indices, 0.0, masks.shape[1:])

    for i in range(frames + 5):
        t1, c1 = time.perf_counter(), time.process_time()
        step.on_depth(depth_msg)  # the callback's share: a buffer insert
        _, objs = step.run(0, ids, masks_of_, scores, labels, states, with_points=False)
        _, shown = om.markers(header, objs, shown)
        t2, c2 = time.perf_counter(), time.process_time()
        step.on_depth(depth_msg)
        _, objs = step.run(0, ids, masks_of_, scores, labels, states, with_points=True)
        _, shown = om.markers(header, objs, shown)
        cloud = om.point_cloud(header, objs)
        t3, c3 = time.perf_counter(), time.process_time()
        objs_obb = est_obb.estimate(masks_of_(list(range(n))), ids, depth_image_to_numpy(depth_msg),
                                    camera_info_to_intrinsics(info_msg))
        _, shown = om.markers(header, objs_obb, shown)
        t4, c4 = time.perf_counter(), time.process_time()
        if i >= 5:
            times['3d'].append(t2 - t1)
            times['3d+points'].append(t3 - t2)
            cpu['3d'].append(c2 - c1)
            cpu['3d+points'].append(c3 - c2)
            times['3d+obb'].append(t4 - t3)
            cpu['3d+obb'].append(c4 - c3)
            points.append(cloud.width / n)
        assert all(o.has_3d for o in objs), [o.reason for o in objs if not o.has_3d]
    depth = depth_image_to_numpy(depth_msg)
    out = {'size': f'{k.width}x{k.height}', 'depth': f'{depth.shape[1]}x{depth.shape[0]}', 'objects': n,
           'mask_px_mean': float(masks.sum((1, 2)).mean()), 'points_per_object': float(np.mean(points))}
    for name, t in times.items():
        ms = np.asarray(t) * 1e3
        out[name] = {'p50_ms': float(np.median(ms)), 'p90_ms': float(np.percentile(ms, 90)), 'min_ms': float(ms.min()),
                     'cpu_p50_ms': float(np.median(cpu[name]) * 1e3), 'cpu_min_ms': float(np.min(cpu[name]) * 1e3)}
    return out


def accuracy(seeds: int) -> list:
    """Worst centroid and extent errors (cm) per distance and depth size (see the module doc)."""
    est = Objects3D()
    rows = []
    for dist in (1.0, 2.0, 3.0):
        for scale in (1, 2):
            worst = np.zeros(4)
            for seed in range(seeds):
                sc = scene(three_objects(dist), dist + 0.2, depth_scale=scale, seed=100 + seed)
                depth = to_16uc1(sc.depth)
                for grow in (-1, 0, 1):
                    objs = est.estimate(masks_of(sc.colour_ids, 3, grow), [1, 2, 3], depth, K640)
                    for o, (c, e) in zip(objs, sc.truths):
                        err = np.abs(np.r_[o.centroid - c, o.extent - e]) * 100
                        worst = np.maximum(worst, [err[:3].max(), err[3], err[4], err[5]])
            rows.append({'distance_m': dist, 'depth': f'{640 // scale}x{480 // scale}', 'centroid_cm': worst[0],
                         'extent_x_cm': worst[1], 'extent_y_cm': worst[2], 'extent_z_cm': worst[3]})
            print(f"| {dist:.0f} m | {rows[-1]['depth']} | {worst[0]:.2f} | {worst[1]:.2f} | {worst[2]:.2f} | "
                  f"{worst[3]:.2f} |", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=200)
    p.add_argument('--objects', type=int, nargs='+', default=[1, 4, 16])
    p.add_argument('--sizes', nargs='+', default=['640x480', '1280x720'])
    p.add_argument('--depth-scale', type=int, default=1, help='1: depth at the colour size; 2: half')
    p.add_argument('--max-points', type=int, default=1000, help='max_points_per_object')
    p.add_argument('--cv-threads', type=int, default=0,
                   help="OpenCV's threads (0: its default, as in the node, which does not set them)")
    p.add_argument('--accuracy', action='store_true', help='measure the errors against the truth instead')
    p.add_argument('--seeds', type=int, default=10, help='renderings per case for --accuracy')
    p.add_argument('--json', default='benchmarks/results/objects3d.json')
    args = p.parse_args(argv)
    import cv2

    if args.accuracy:
        print('| distance | depth | centroid (cm) | extent x (cm) | extent y (cm) | extent z (cm) |')
        print('|---|---|---|---|---|---|')
        rows = accuracy(args.seeds)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps({'command': ' '.join(sys.argv), 'worst': rows}, indent=1))
        return 0

    if args.cv_threads:
        cv2.setNumThreads(args.cv_threads)

    cams = {'640x480': K640, '1280x720': K1280}
    results = []
    print('| size | depth | objects | mask px | 3-D + markers: wall p50 / p90 / min, CPU p50 / min (ms) | '
          'with points + PointCloud2: wall p50 / p90 / min, CPU p50 / min (ms) | with oriented boxes: wall min, '
          'CPU p50 (ms) | points / object |')
    print('|---|---|---|---|---|---|---|---|')
    for size in args.sizes:
        for n in args.objects:
            r = run(cams[size], n, args.frames, args.depth_scale, args.max_points)
            results.append(r)
            a, b, c = r['3d'], r['3d+points'], r['3d+obb']
            print(f"| {r['size']} | {r['depth']} | {n} | {r['mask_px_mean']:.0f} | "
                  f"{a['p50_ms']:.2f} / {a['p90_ms']:.2f} / {a['min_ms']:.2f}, {a['cpu_p50_ms']:.2f} / {a['cpu_min_ms']:.2f} | "
                  f"{b['p50_ms']:.2f} / {b['p90_ms']:.2f} / {b['min_ms']:.2f}, {b['cpu_p50_ms']:.2f} / {b['cpu_min_ms']:.2f} | "
                  f"{c['min_ms']:.2f}, {c['cpu_p50_ms']:.2f} | {r['points_per_object']:.0f} |", flush=True)
    meta = {'date': datetime.date.today().isoformat(), 'machine': platform.processor() or platform.machine(),
            'cpus': os.cpu_count(), 'load_avg': os.getloadavg(), 'opencv_threads': cv2.getNumThreads(),
            'numpy': np.__version__, 'opencv': cv2.__version__, 'command': ' '.join(sys.argv)}
    print(json.dumps(meta))
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({'meta': meta, 'results': results}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
