"""``sam2_evaluate --depth-topic D --camera-info-topic C``: each tracked object's 3-D track on a
bag, as the node measures it (:class:`~sam2_ros.tracking.objects3d.Objects3D` on the frame's
masks, a depth image registered to the colour image and the colour camera's camera_info).

Per frame, the depth image with the colour frame's stamp, else the nearest within
``--depth-max-delay`` (the node's ``depth_max_delay``), and the latest camera_info recorded
before the frame (else the first). Objects get the node's states (visible / occluded / lost,
default thresholds); occluded and lost ones have no 3-D. Written under OUT: ``tracks_3d.csv``
(per frame and object: centroid, box centre and size, valid points, state, the depth's delay, or
why there is no 3-D), ``tracks_3d.png`` (each object's centroid x, y, z over the frames) and the
``objects_3d`` entry of report.json / section of report.md. Frames without depth or with depth
the 3-D step refuses are counted with the reason; they stop nothing.

No rclpy: messages come from the bag with ``rosbags`` (:mod:`~sam2_ros.tools.bagio`).
"""
from __future__ import annotations

import bisect
import collections
import csv
import pathlib
from typing import Dict, List, Optional

import numpy as np

from sam2_ros.ros.conversions import ConversionError
from sam2_ros.ros.depth_input import camera_info_to_intrinsics, depth_image_to_numpy
from sam2_ros.tools import bagio, plots
from sam2_ros.tracking.object_state import ObjectStates
from sam2_ros.tracking.objects3d import Objects3D, Objects3DError

__all__ = ['Tracks3D', 'markdown', 'CSV_NAME', 'PLOT_NAME']

CSV_NAME, PLOT_NAME = 'tracks_3d.csv', 'tracks_3d.png'
CACHE = 64  # depth images kept while reading the topic (the colour frames pair with them in order)
FIELDS = ['frame', 'stamp', 'object_id', 'state', 'points', 'x', 'y', 'z', 'box_x', 'box_y', 'box_z',
          'size_x', 'size_y', 'size_z', 'depth_delay_ms', 'reason']


def _f(v: float) -> str:
    return f'{v:.4f}'


class Tracks3D:
    """The 3-D tracks of one evaluation (see the module docstring).

    Args:
        bag: the rosbag2.
        depth_topic, info_topic: sensor_msgs/Image (16UC1, 32FC1) and sensor_msgs/CameraInfo topics.
        frames: the evaluated colour frames (their headers and log times).
        max_delay: seconds a depth stamp may differ from the frame's.
    """

    def __init__(self, bag, depth_topic: str, info_topic: str, frames: List[bagio.ImageFrame],
                 max_delay: float = 0.02) -> None:
        if not max_delay >= 0:
            raise ValueError(f'--depth-max-delay must be >= 0 seconds, got {max_delay}')
        self.depth_topic, self.info_topic, self.max_delay = depth_topic, info_topic, float(max_delay)
        depth = [(h.stamp_ns, i) for i, h, _, _ in
                 bagio.iter_messages(bag, depth_topic, (bagio.IMAGE,), 'the depth topic')]
        infos = [(t, m) for _, _, t, m in
                 bagio.iter_messages(bag, info_topic, (bagio.CAMERA_INFO,), 'the camera_info topic')]
        if not depth:
            raise bagio.BagError(f'no depth images on {depth_topic}')
        if not infos:
            raise bagio.BagError(f'no camera_info on {info_topic}')
        depth.sort()
        stamps = [s for s, _ in depth]
        bound = int(round(self.max_delay * 1e9))
        self._pair: Dict[int, tuple] = {}  # frame index -> (depth message index, delay ns)
        for f in frames:
            t = f.header.stamp_ns
            j = bisect.bisect_left(stamps, t)
            near = min((k for k in (j - 1, j) if 0 <= k < len(stamps)), key=lambda k: abs(stamps[k] - t))
            if abs(stamps[near] - t) <= bound:
                self._pair[f.index] = (depth[near][1], stamps[near] - t)
        self._infos = infos
        self._info_times = [t for t, _ in infos]
        self._bag = bag
        self._reader = None
        self._cache: collections.OrderedDict = collections.OrderedDict()  # depth index -> message
        self._estimator = Objects3D(oriented=False)  # as the node
        self._states = ObjectStates()
        self._k_cache = (None, None)
        self.rows: List[dict] = []
        self.counts = {'frames': 0, 'paired_exact': 0, 'paired_nearest': 0, 'unpaired': 0, 'refused': 0,
                       'frames_3d': 0}
        self.errors: collections.Counter = collections.Counter()
        self.tracks: Dict[int, Dict[str, list]] = {}  # id -> frame, centroid, points

    # ------------------------------------------------------------------ per frame
    def _depth_message(self, index: int):
        """Depth message ``index`` of the topic, read in bag order (the last CACHE kept)."""
        if self._reader is None:
            self._reader = bagio.iter_messages(self._bag, self.depth_topic, (bagio.IMAGE,), 'the depth topic')
        if self._cache and index < next(iter(self._cache)):
            return None  # read past and forgotten (depth stamps far out of bag order)
        while index not in self._cache:
            try:
                i, _, _, msg = next(self._reader)
            except StopIteration:
                return None
            self._cache[i] = msg
            if len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        return self._cache[index]

    def _camera_info(self, log_time: int):
        k = max(0, bisect.bisect_right(self._info_times, log_time) - 1)
        info = self._infos[k][1]
        if self._k_cache[0] is not info:
            try:
                self._k_cache = (info, camera_info_to_intrinsics(info))
            except Objects3DError as error:
                self._k_cache = (info, error)
        if isinstance(self._k_cache[1], Exception):
            raise self._k_cache[1]
        return self._k_cache[1]

    def frame(self, frame: bagio.ImageFrame, ids: List[int], masks, scores) -> None:
        """One tracked frame: its objects ``ids``, their (N, H, W) bool masks (numpy or torch)
        and presence scores."""
        self.counts['frames'] += 1
        scores = [float(s) for s in scores]
        states = self._states.update(ids, scores)
        base = {'frame': frame.index, 'stamp': f'{frame.header.sec}.{frame.header.nanosec:09d}'}
        paired = self._pair.get(frame.index)
        if paired is None:
            self.counts['unpaired'] += 1
            return self._no_3d(base, ids, states, f'no depth image within {self.max_delay} s')
        index, delay = paired
        self.counts['paired_exact' if delay == 0 else 'paired_nearest'] += 1
        try:
            msg = self._depth_message(index)
            if msg is None:
                raise Objects3DError('the depth image paired with it was read past (depth stamps far out of bag order)')
            depth = depth_image_to_numpy(msg)
            objects = self._estimator.estimate(masks, ids, depth, self._camera_info(frame.log_time), scores=scores,
                                               states=states)
        except (Objects3DError, ConversionError) as error:
            self.counts['refused'] += 1
            self.errors[str(error)] += 1
            return self._no_3d(base, ids, states, str(error))
        self.counts['frames_3d'] += 1
        for o in objects:
            row = {**base, 'object_id': o.obj_id, 'state': o.state, 'points': o.n_points,
                   'depth_delay_ms': f'{delay / 1e6:.3f}', 'reason': o.reason or ''}
            track = self.tracks.setdefault(o.obj_id, {'frame': [], 'centroid': [], 'points': [], 'without': 0})
            if o.has_3d:
                row.update(zip(('x', 'y', 'z'), map(_f, o.centroid)))
                row.update(zip(('box_x', 'box_y', 'box_z'), map(_f, o.center)))
                row.update(zip(('size_x', 'size_y', 'size_z'), map(_f, o.extent)))
                track['frame'].append(frame.index)
                track['centroid'].append(o.centroid.tolist())
                track['points'].append(o.n_points)
            elif o.state == 'visible':
                track['without'] += 1
            self.rows.append(row)

    def _no_3d(self, base: dict, ids: List[int], states: Dict[int, str], reason: str) -> None:
        for oid in ids:
            self.tracks.setdefault(oid, {'frame': [], 'centroid': [], 'points': [], 'without': 0})
            if states[oid] == 'visible':
                self.tracks[oid]['without'] += 1
            self.rows.append({**base, 'object_id': oid, 'state': states[oid], 'reason': reason})

    # ------------------------------------------------------------------ results
    def report(self) -> dict:
        """The ``objects_3d`` entry of report.json."""
        objects = {}
        for oid, t in sorted(self.tracks.items()):
            c = np.asarray(t['centroid']).reshape(-1, 3)
            objects[str(oid)] = {
                'frames_with_3d': len(t['frame']), 'frames_visible_without_3d': t['without'],
                'mean_points': float(np.mean(t['points'])) if t['points'] else None,
                'first_centroid_m': c[0].tolist() if len(c) else None, 'last_centroid_m': c[-1].tolist() if len(c) else None,
                'path_length_m': float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum()) if len(c) > 1 else 0.0,
                'centroid_min_m': c.min(axis=0).tolist() if len(c) else None,
                'centroid_max_m': c.max(axis=0).tolist() if len(c) else None,
            }
        return {'depth_topic': self.depth_topic, 'camera_info_topic': self.info_topic,
                'depth_max_delay_s': self.max_delay, **self.counts,
                'errors': [{'reason': r, 'frames': n} for r, n in self.errors.most_common()],
                'objects': objects, 'csv': CSV_NAME, 'plot': PLOT_NAME}

    def write(self, out: pathlib.Path) -> None:
        """``tracks_3d.csv`` and ``tracks_3d.png`` under ``out``."""
        with open(out / CSV_NAME, 'w', newline='', encoding='utf-8') as stream:
            writer = csv.DictWriter(stream, FIELDS, restval='')
            writer.writeheader()
            writer.writerows(self.rows)
        plot_tracks(out / PLOT_NAME, self.tracks)


def plot_tracks(path, tracks: Dict[int, Dict[str, list]]) -> np.ndarray:
    """Three panels, x, y and z of each object's centroid over the frames (a gap where it had
    no 3-D), in the objects' colours; writes ``path`` (PNG)."""
    panels = []
    for axis, name in enumerate(('x (right)', 'y (down)', 'z (forward)')):
        series = {}
        for oid, t in sorted(tracks.items()):
            if not t['frame']:
                continue
            frames, values = [], []
            for k, (f, c) in enumerate(zip(t['frame'], t['centroid'])):
                if k and f != t['frame'][k - 1] + 1:  # frames without 3-D: a gap in the line
                    frames.append(f - 1)
                    values.append(float('nan'))
                frames.append(f)
                values.append(c[axis])
            series[f'object {oid}'] = (frames, values)
        if not series:
            series = {'no object had 3-D': ([0], [float('nan')])}
        ys = [v for _, vs in series.values() for v in vs if np.isfinite(v)]
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = max(0.02, 0.1 * (hi - lo))
        panels.append(plots.line_plot(None, series, f'centroid {name}, optical frame of the depth image', 'frame',
                                      'metres', ylim=(lo - pad, hi + pad)))
    import cv2

    image = np.vstack(panels)
    cv2.imwrite(str(path), image)
    return image


def markdown(r: dict) -> List[str]:
    """The report.md section of the ``objects_3d`` entry."""
    lines = ['## Objects in 3-D', '',
             f'Depth `{r["depth_topic"]}`, camera_info `{r["camera_info_topic"]}`: of {r["frames"]} frames, '
             f'{r["paired_exact"]} paired with a depth image of the same stamp, {r["paired_nearest"]} with the nearest '
             f'within {r["depth_max_delay_s"]} s, {r["unpaired"]} with none; {r["refused"]} refused by the 3-D step; '
             f'{r["frames_3d"]} measured. Per frame and object: `{r["csv"]}`.', '',
             '| object | frames with 3-D | visible, no 3-D | mean points | first centroid (m) | last centroid (m) '
             '| path (m) |', '|---|---|---|---|---|---|---|']

    def xyz(v: Optional[list]) -> str:
        return '-' if v is None else '(' + ', '.join(f'{c:.3f}' for c in v) + ')'
    for oid, o in r['objects'].items():
        mean = '-' if o['mean_points'] is None else f'{o["mean_points"]:.0f}'
        lines.append(f'| {oid} | {o["frames_with_3d"]} | {o["frames_visible_without_3d"]} | {mean} '
                     f'| {xyz(o["first_centroid_m"])} | {xyz(o["last_centroid_m"])} | {o["path_length_m"]:.3f} |')
    if r['errors']:
        lines += ['', 'Refused:'] + [f'- {e["frames"]} frame(s): {e["reason"]}' for e in r['errors']]
    lines += ['', f'![Objects in 3-D]({r["plot"]})', '']
    return lines
