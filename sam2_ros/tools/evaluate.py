"""Evaluate the tracker on a rosbag2: masks, J&F against ground truth, latency, memory, plots.

::

    python -m sam2_ros.tools.evaluate --bag BAG --image-topic /camera/image_raw \\
        --prompts prompts.yaml [--gt-topic /gt/labels | --gt-dir DIR] \\
        --checkpoint sam2.1_hiera_tiny.pt --model tiny --image-size 512 --device cpu --out OUT

Runs the tracker on every frame of the image topic, in bag order, deterministically (no frame
is dropped; the ROS node's ``frame_policy: all``). Prompts come from a prompts YAML
(README.md, "Prompts files"; ``frame`` index or ``stamp``) or from ``~/prompt`` ImageMarkers recorded in the
bag (``--prompt-topic``). Writes under OUT:

* ``bag/``: a rosbag2 with ``/sam2_tracker/masks`` (mono16 label images, pixel = object id),
  optionally ``/sam2_tracker/overlay`` (bgr8) and a copy of the input images, every message
  stamped with its source image's header and logged at its receive time, so that
  ``ros2 bag play OUT/bag`` (beside the input bag) shows results and camera together;
* ``report.json``, ``report.md``, ``per_frame.csv`` and PNG plots (J&F over time per object,
  latency histogram, tracker memory over time).

J and F follow DAVIS (``sam2_ros.tools.metrics``); an object is evaluated on the frames with
ground truth from its first prompt on. Exit code 2 on bad input.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import shutil
import sys
import time

import cv2
import numpy as np

from sam2_ros.tools import bagio, metrics, plots
from sam2_ros.tools.labelpng import LabelPngError, read_label_png
from sam2_ros.tools.prompts_file import PromptsFileError, PromptSpec, load_prompts
from sam2_ros.tools.cli import HelpFormatter

__all__ = ['EvaluationError', 'build_parser', 'evaluate', 'main']

MASK_TOPIC = '/sam2_tracker/masks'
OVERLAY_TOPIC = '/sam2_tracker/overlay'
MODELS = ('tiny', 'small', 'base_plus', 'large')


class EvaluationError(ValueError):
    """Bad input: the message says what and why (exit code 2)."""


# --- progress -----------------------------------------------------------------------------------

class Progress:
    """A progress bar with rate and ETA on stderr (a line every 10 % when not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, stream=None, width: int = 28):
        self.total = max(int(total), 1)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.start = time.perf_counter()
        self._last = 0.0
        self._last_decile = -1

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(round(seconds))
        return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'

    def line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float('nan')
        filled = int(self.width * min(done, self.total) / self.total)
        bar = '#' * filled + '.' * (self.width - filled)
        eta_s = self._clock(eta) if math.isfinite(eta) else '?'
        return (f'[{bar}] {done}/{self.total} frames  {rate:.2f} frames/s  '
                f'elapsed {self._clock(elapsed)}  ETA {eta_s}')

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last >= 0.2 or done >= self.total:
                self.stream.write('\r' + self.line(done))
                self.stream.flush()
                self._last = now
        else:
            decile = 10 * done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self.line(done) + '\n')
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write('\n')
            self.stream.flush()


# --- prompts --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Action:
    kind: str              # 'prompt' or 'remove'
    object_id: int
    spec: PromptSpec | None = None
    source: str = ''


def _stamp_ns(stamp: tuple[int, int]) -> int:
    return int(stamp[0]) * 1_000_000_000 + int(stamp[1])


def _fmt_stamp(ns: int) -> str:
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


def schedule_prompts(specs: list[PromptSpec], markers: list[bagio.MarkerPrompt],
                     frames: list[bagio.ImageFrame], truncated: bool) -> tuple[dict, list[str]]:
    """Map prompts to frame indices: ``({frame: [Action]}, warnings)``.

    YAML ``frame`` is the index in the topic, ``stamp`` must equal a frame's header stamp.
    Markers refer to the frame with their header stamp; a zero stamp means the latest frame
    received before the marker. Prompts past the last frame are an error unless
    ``--max-frames`` cut the topic short (then they are skipped with a warning)."""
    by_stamp = {f.header.stamp_ns: f.index for f in frames}
    last = frames[-1]
    out: dict[int, list[Action]] = {}
    warnings: list[str] = []

    def place(index: int | None, action: Action, what: str, beyond: bool) -> None:
        if index is None:
            if beyond and truncated:
                warnings.append(f'{what} is after the last evaluated frame: skipped')
                return
            raise EvaluationError(f'{what} matches no frame of the image topic')
        out.setdefault(index, []).append(action)

    for n, spec in enumerate(specs):
        what = f'prompt {n} (object {spec.object_id})'
        if spec.frame is not None:
            index = spec.frame if spec.frame <= last.index else None
            beyond = True
            what += f' on frame {spec.frame}'
        else:
            ns = _stamp_ns(spec.stamp)
            index = by_stamp.get(ns)
            beyond = ns > last.header.stamp_ns
            what += f' at stamp {_fmt_stamp(ns)}'
            if index is None:
                near = min(frames, key=lambda f: abs(f.header.stamp_ns - ns))
                what += f' (nearest image stamp {_fmt_stamp(near.header.stamp_ns)}, frame {near.index})'
        place(index, Action('prompt', spec.object_id, spec, 'yaml'), what, beyond)

    log_times = np.array([f.log_time for f in frames], np.int64)
    for marker in markers:
        ns = marker.header.stamp_ns
        what = f'ImageMarker prompt for object {marker.object_id} (stamp {_fmt_stamp(ns)})'
        if ns == 0:
            k = int(np.searchsorted(log_times, marker.log_time, side='right')) - 1
            index, beyond = max(k, 0), False
            if truncated and marker.log_time > log_times[-1]:
                index, beyond = None, True
        else:
            index = by_stamp.get(ns)
            beyond = ns > last.header.stamp_ns
        if marker.action == bagio.MARKER_REMOVE:
            action = Action('remove', marker.object_id, None, 'marker')
        else:
            spec = PromptSpec(object_id=marker.object_id, frame=index, points=marker.points,
                              labels=marker.labels, box=marker.box)
            action = Action('prompt', marker.object_id, spec, 'marker')
        place(index, action, what, beyond)
    for index, actions in out.items():
        seen = set()
        for a in actions:
            if a.kind == 'prompt':
                if a.object_id in seen:
                    raise EvaluationError(f'frame {index}: two prompts for object {a.object_id}; '
                                          'put all its points in one prompt')
                seen.add(a.object_id)
    return out, warnings


# --- ground truth -------------------------------------------------------------------------------

class GroundTruth:
    """Label images by frame index, kept PNG-compressed in memory."""

    def __init__(self, source: str):
        self.source = source
        self._png: dict[int, bytes] = {}
        self._paths: dict[int, pathlib.Path] = {}

    def __len__(self) -> int:
        return len(self._png) + len(self._paths)

    def frames(self) -> list[int]:
        return sorted(set(self._png) | set(self._paths))

    def put(self, index: int, label: np.ndarray) -> None:
        ok, buf = cv2.imencode('.png', label.astype(np.uint16))
        self._png[index] = buf.tobytes()

    def get(self, index: int) -> np.ndarray | None:
        if index in self._png:
            return cv2.imdecode(np.frombuffer(self._png[index], np.uint8), cv2.IMREAD_UNCHANGED)
        if index in self._paths:
            try:
                return read_label_png(self._paths[index])
            except LabelPngError as error:
                raise EvaluationError(str(error)) from None
        return None

    @classmethod
    def from_topic(cls, bag, topic: str, frames: list[bagio.ImageFrame]) -> 'GroundTruth':
        gt = cls(f'topic {topic}')
        by_stamp = {f.header.stamp_ns: f.index for f in frames}
        unmatched = 0
        for msg in bagio.iter_labels(bag, topic):
            index = by_stamp.get(msg.header.stamp_ns)
            if index is None:
                unmatched += 1
                continue
            gt.put(index, msg.image)
        if not len(gt):
            raise EvaluationError(f'no ground-truth label image on {topic} has the header stamp '
                                  f'of an image on the image topic ({unmatched} unmatched)')
        gt.unmatched = unmatched
        return gt

    @classmethod
    def from_dir(cls, directory, frames: list[bagio.ImageFrame]) -> 'GroundTruth':
        directory = pathlib.Path(directory)
        if not directory.is_dir():
            raise EvaluationError(f'--gt-dir {directory} is not a folder')
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() == '.png')
        if not files:
            raise EvaluationError(f'no PNG label images in {directory}')
        gt = cls(f'folder {directory}')
        numeric = all(p.stem.isdigit() for p in files)
        for pos, path in enumerate(files):
            index = int(path.stem) if numeric else pos
            if index <= frames[-1].index:
                gt._paths[index] = path
        gt.unmatched = len(files) - len(gt._paths)
        if not len(gt):
            raise EvaluationError(f'no label image in {directory} belongs to an evaluated frame')
        return gt


# --- the run ------------------------------------------------------------------------------------

def _percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {}
    v = np.asarray(values_ms)
    steady = v[1:] if v.size > 1 else v
    return {'mean': float(v.mean()), 'p50': float(np.percentile(v, 50)),
            'p90': float(np.percentile(v, 90)), 'p95': float(np.percentile(v, 95)),
            'p99': float(np.percentile(v, 99)), 'max': float(v.max()), 'min': float(v.min()),
            'first': float(v[0]), 'mean_after_first': float(steady.mean())}


def _cpu_name() -> str:
    try:
        for line in open('/proc/cpuinfo', encoding='utf-8'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def checkpoint_identity(path: str | os.PathLike) -> dict:
    """What a report needs to tell one checkpoint file from another: its SHA-256 prefix and,
    when it is one of Meta's published files, that file's name.

    The demo's random weights are written in the official format under an official-looking
    name; only the content tells them apart, so the digest is computed, not the name trusted.
    """
    import hashlib

    from sam2_ros.model.checkpoint import OFFICIAL_CHECKPOINTS, SAM2_0_CHECKPOINTS

    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    sha = digest.hexdigest()
    official = next((info.filename for info in (*OFFICIAL_CHECKPOINTS.values(),
                                                 *SAM2_0_CHECKPOINTS.values())
                     if info.sha256 == sha), None)
    return {'checkpoint_sha256': sha[:16], 'checkpoint_official': official}


def _build_tracker(args):
    from sam2_ros import Tracker
    from sam2_ros.model.checkpoint import CheckpointError, resolve_checkpoint

    try:
        checkpoint = str(resolve_checkpoint(args.checkpoint, args.model))
        tracker = Tracker.from_pretrained(checkpoint, model=args.model, image_size=args.image_size,
                                          device=args.device, max_objects=args.max_objects)
    except (CheckpointError, FileNotFoundError) as error:
        raise EvaluationError(f'checkpoint: {error}') from None
    return tracker, checkpoint


def _to_prompt(spec: PromptSpec, shape) -> object:
    try:
        return spec.to_prompt(shape)
    except PromptsFileError as error:
        raise EvaluationError(str(error)) from None


def evaluate(args) -> dict:
    """Run an evaluation (``args`` as parsed by :func:`build_parser`); returns the report."""
    import torch

    from sam2_ros.tracking.tracker import PromptError
    from sam2_ros.visualization import label_image, overlay

    if args.image_size < 64 or args.image_size % 32:
        raise EvaluationError('--image-size must be a multiple of 32, at least 64')
    if args.max_frames is not None and args.max_frames < 1:
        raise EvaluationError('--max-frames must be >= 1')
    if args.gt_topic and args.gt_dir:
        raise EvaluationError('give --gt-topic or --gt-dir, not both')
    if args.prompts is None and args.prompt_topic is None:
        raise EvaluationError('no prompts: give --prompts FILE.yaml and/or --prompt-topic TOPIC')
    try:
        topics = bagio.bag_topics(args.bag)
        storage = bagio.storage_of(args.bag)
        frames = list(bagio.iter_images(args.bag, args.image_topic, args.max_frames, decode=False))
    except bagio.BagError as error:
        raise EvaluationError(str(error)) from None
    if not frames:
        raise EvaluationError(f'no images on {args.image_topic}')
    truncated = args.max_frames is not None and topics[args.image_topic][1] > len(frames)
    try:
        specs = load_prompts(args.prompts) if args.prompts is not None else []
        markers = bagio.read_prompt_markers(args.bag, args.prompt_topic) if args.prompt_topic else []
    except (PromptsFileError, bagio.BagError) as error:
        raise EvaluationError(str(error)) from None
    schedule, warnings = schedule_prompts(specs, markers, frames, truncated)
    if not schedule:
        raise EvaluationError('none of the prompts falls on an evaluated frame')
    for w in warnings:
        print(f'sam2_evaluate: warning: {w}', file=sys.stderr)
    try:
        if args.gt_topic:
            gt = GroundTruth.from_topic(args.bag, args.gt_topic, frames)
        elif args.gt_dir:
            gt = GroundTruth.from_dir(args.gt_dir, frames)
        else:
            gt = None
    except bagio.BagError as error:
        raise EvaluationError(str(error)) from None

    # Check every prompt against the frame size (and load mask PNGs) before anything runs.
    first = next(bagio.iter_images(args.bag, args.image_topic, 1))
    prompt_of = {}
    for index in sorted(schedule):
        for a in schedule[index]:
            if a.kind == 'prompt':
                prompt_of[id(a)] = _to_prompt(a.spec, first.image.shape)

    out = pathlib.Path(args.out)
    out_bag = out / 'bag'
    if out_bag.exists():
        if not args.overwrite:
            raise EvaluationError(f'{out_bag} exists; remove it or pass --overwrite')
        shutil.rmtree(out_bag)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    tracker, checkpoint = _build_tracker(args)
    first_frame = {}
    for index in sorted(schedule):
        for a in schedule[index]:
            if a.kind == 'prompt':
                first_frame.setdefault(a.object_id, index)
    eval_ids = sorted(first_frame)

    rows, latencies, memory = [], [], []
    per_obj = {oid: {'frames': [], 'J': [], 'F': [], 'gt_on': [], 'pred_on': [], 'scores': []}
               for oid in eval_ids}
    shape = None
    progress = Progress(len(frames), enabled=not args.quiet)
    wall_start = time.perf_counter()
    out_storage = args.out_storage or storage
    with bagio.BagWriter(out_bag, storage=out_storage) as writer:
        try:
            for frame in bagio.iter_images(args.bag, args.image_topic, args.max_frames):
                t = frame.index
                rgb = frame.image
                if shape is None:
                    shape = rgb.shape[:2]
                elif rgb.shape[:2] != shape:
                    raise EvaluationError(f'frame {t} is {rgb.shape[1]}x{rgb.shape[0]}, the topic '
                                          f'started at {shape[1]}x{shape[0]}')
                prompts = []
                for a in schedule.get(t, []):
                    if a.kind == 'remove':
                        tracker.remove_object(a.object_id)
                    else:
                        prompts.append(prompt_of[id(a)])
                start = time.perf_counter()
                try:
                    result = tracker.track(rgb, prompts=prompts)
                except PromptError as error:
                    raise EvaluationError(f'frame {t}: {error}') from None
                if result.logits.is_cuda:
                    torch.cuda.synchronize()
                latency = (time.perf_counter() - start) * 1000.0
                ids = [int(i) for i in result.object_ids]
                label = label_image(result.logits, ids, result.mask_threshold)
                scores = dict(zip(ids, result.scores.detach().float().cpu().numpy().tolist()))
                latencies.append(latency)
                held = int(tracker.state_bytes())
                memory.append(held)
                writer.write(MASK_TOPIC, bagio.image_message(label, 'mono16', frame.header),
                             frame.log_time)
                if args.overlay:
                    masks = np.stack([label == i for i in ids]) if ids else np.zeros((0,) + shape, bool)
                    image = overlay(rgb, masks, ids, scores=[scores[i] for i in ids])
                    writer.write(OVERLAY_TOPIC, bagio.image_message(image[..., ::-1], 'bgr8', frame.header),
                                 frame.log_time)
                truth = gt.get(t) if gt is not None else None
                if truth is not None and truth.shape != shape:
                    raise EvaluationError(f'ground truth of frame {t} is {truth.shape[1]}x{truth.shape[0]}, '
                                          f'the images are {shape[1]}x{shape[0]}')
                base = {'frame': t, 'stamp': _fmt_stamp(frame.header.stamp_ns),
                        'latency_ms': f'{latency:.3f}', 'state_bytes': held, 'objects': len(ids)}
                listed = sorted(set(ids) | {o for o in eval_ids if first_frame[o] <= t})
                if not listed:
                    rows.append({**base, 'object_id': ''})
                for oid in listed:
                    pred = label == oid
                    row = {**base, 'object_id': oid, 'score': f'{scores[oid]:.4f}' if oid in scores else '',
                           'pred_area': int(pred.sum())}
                    if truth is not None and oid in per_obj and first_frame[oid] <= t:
                        g = truth == oid
                        j = metrics.jaccard(pred, g)
                        f = metrics.f_measure(pred, g, args.bound_th)
                        d = per_obj[oid]
                        d['frames'].append(t)
                        d['J'].append(j)
                        d['F'].append(f)
                        d['gt_on'].append(bool(g.any()))
                        d['pred_on'].append(bool(pred.any()))
                        row.update(gt_area=int(g.sum()), J=f'{j:.6f}', F=f'{f:.6f}')
                    if oid in per_obj and oid in scores:
                        per_obj[oid]['scores'].append(scores[oid])
                    rows.append(row)
                progress.update(t + 1)
            if args.copy_images:
                bagio.copy_topic(args.bag, args.image_topic, writer, len(frames))
        finally:
            progress.close()
    wall = time.perf_counter() - wall_start

    ran = {'checkpoint': checkpoint, **checkpoint_identity(checkpoint), 'model': args.model,
           'image_size': args.image_size, 'device': str(tracker.device),
           'device_requested': args.device, 'dtype': str(tracker.dtype).replace('torch.', '')}
    if ran['checkpoint_official'] is None:
        warnings.append(f'the checkpoint {checkpoint} (SHA-256 {ran["checkpoint_sha256"]}...) is '
                        "none of Meta's published files: fine-tuned, converted, or random weights")
    report = _report(args, ran, storage, out_storage, frames, shape, latencies, memory,
                     per_obj, first_frame, gt, wall, warnings)
    _write_outputs(out, report, rows, per_obj, latencies, memory, gt is not None)
    return report


def _report(args, ran: dict, storage, out_storage, frames, shape, latencies, memory, per_obj,
            first_frame, gt, wall, warnings) -> dict:
    import torch

    n = len(latencies)
    objects, events = {}, []
    for oid, d in per_obj.items():
        j, f = metrics.summarize(d['J']), metrics.summarize(d['F'])
        loss = metrics.track_loss_events(oid, d['frames'], d['J'], d['gt_on'], d['pred_on'],
                                         args.loss_frames, args.loss_iou)
        events += [e.as_dict() for e in loss]
        objects[str(oid)] = {
            'first_prompt_frame': first_frame[oid], 'frames_evaluated': len(d['frames']),
            'J_mean': j['mean'], 'F_mean': f['mean'],
            'JF_mean': None if j['mean'] is None else (j['mean'] + f['mean']) / 2,
            'J_recall': j['recall'], 'F_recall': f['recall'], 'J_decay': j['decay'],
            'F_decay': f['decay'],
            'mean_score': float(np.mean(d['scores'])) if d['scores'] else None,
            'track_loss_events': len(loss),
        }
    scored = [o for o in objects.values() if o['J_mean'] is not None]

    def mean_of(key):
        return float(np.mean([o[key] for o in scored])) if scored else None

    j_mean, f_mean = mean_of('J_mean'), mean_of('F_mean')
    total_s = sum(latencies) / 1000.0
    return {
        'tool': 'sam2_evaluate',
        'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'machine': {'cpu': _cpu_name(), 'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
                    'torch': torch.__version__, 'python': platform.python_version(),
                    'cuda_device': torch.cuda.get_device_name(0) if torch.cuda.is_available() and
                    str(args.device).startswith(('cuda', 'auto')) else None},
        'bag': str(args.bag), 'storage': storage, 'image_topic': args.image_topic,
        'prompts': str(args.prompts) if args.prompts else None, 'prompt_topic': args.prompt_topic,
        **ran,  # what ran: checkpoint (path, SHA-256 prefix, official name), model, size, device, dtype
        'frames': n, 'frame_size': [int(shape[1]), int(shape[0])] if shape else None,
        'fps': n / total_s if total_s > 0 else None,
        'wall_fps': n / wall if wall > 0 else None,
        'wall_s': wall,
        'latency_ms': _percentiles(latencies),
        'JF_mean': None if j_mean is None else (j_mean + f_mean) / 2,
        'J_mean': j_mean, 'F_mean': f_mean,
        'J_recall': mean_of('J_recall'), 'F_recall': mean_of('F_recall'),
        'J_decay': mean_of('J_decay'), 'F_decay': mean_of('F_decay'),
        'bound_th': args.bound_th,
        'ground_truth': None if gt is None else {'source': gt.source, 'frames': len(gt),
                                                 'unmatched': getattr(gt, 'unmatched', 0)},
        'objects': objects,
        'track_loss': {'min_frames': args.loss_frames, 'iou_below': args.loss_iou, 'events': events},
        'memory': {'state_bytes_peak': max(memory, default=0), 'state_bytes_final': memory[-1] if memory else 0,
                   'state_bytes': memory},
        'outputs': {'bag': str(pathlib.Path(args.out) / 'bag'), 'storage': out_storage,
                    'topics': [MASK_TOPIC] + ([OVERLAY_TOPIC] if args.overlay else [])
                    + ([args.image_topic] if args.copy_images else [])},
        'warnings': warnings,
    }


def _write_outputs(out: pathlib.Path, report, rows, per_obj, latencies, memory, has_gt) -> None:
    (out / 'report.json').write_text(json.dumps(report, indent=2) + '\n')
    fields = ['frame', 'stamp', 'object_id', 'score', 'pred_area', 'gt_area', 'J', 'F',
              'latency_ms', 'state_bytes', 'objects']
    with open(out / 'per_frame.csv', 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, fields, restval='')
        writer.writeheader()
        writer.writerows(rows)
    pngs = []
    if has_gt:
        series = {}
        for oid, d in per_obj.items():
            if d['frames']:
                series[f'object {oid}'] = (d['frames'], [(a + b) / 2 for a, b in zip(d['J'], d['F'])])
        if series:
            plots.line_plot(out / 'jf_over_time.png', series, 'J&F per frame', 'frame', '(J + F) / 2',
                            ylim=(0.0, 1.0))
            pngs.append(('J&F over time', 'jf_over_time.png'))
    lat = report['latency_ms']
    plots.histogram(out / 'latency_hist.png', latencies, 'Tracker latency per frame', 'ms',
                    markers={'p50': lat['p50'], 'p95': lat['p95']})
    pngs.append(('Latency', 'latency_hist.png'))
    unit, scale = ('MiB', 2 ** 20) if max(memory, default=0) >= 2 ** 20 else ('KiB', 2 ** 10)
    plots.line_plot(out / 'memory_over_time.png',
                    {'held state': (list(range(len(memory))), [m / scale for m in memory])},
                    'Tracker state held between frames (Tracker.state_bytes)', 'frame', unit)
    pngs.append(('Held memory', 'memory_over_time.png'))
    (out / 'report.md').write_text(_markdown(report, pngs))


def _num(v, fmt='.3f') -> str:
    return '-' if v is None else format(v, fmt)


def _markdown(r: dict, pngs) -> str:
    lat = r['latency_ms']
    lines = [
        '# sam2_evaluate report', '',
        f'- bag: `{r["bag"]}` ({r["storage"]}), topic `{r["image_topic"]}`, {r["frames"]} frames '
        f'{r["frame_size"][0]}x{r["frame_size"][1]}',
        f'- model: {r["model"]} at {r["image_size"]} px on {r["device"]} ({r["dtype"]})',
        f'- checkpoint: `{r["checkpoint"]}`, SHA-256 {r["checkpoint_sha256"]}..., '
        + (f'Meta\'s {r["checkpoint_official"]}' if r['checkpoint_official'] else
           "**not one of Meta's published files** (fine-tuned, converted, or random weights)"),
        f'- prompts: {r["prompts"] or ""}{" + markers on " + r["prompt_topic"] if r["prompt_topic"] else ""}',
        f'- machine: {r["machine"]["cpu"]} ({r["machine"]["cpu_count"]} cores), torch {r["machine"]["torch"]}',
        f'- date: {r["date"]}', '',
        '## Summary', '',
        '| J&F | J | F | J recall | F recall | frames/s (tracker) | frames/s (wall) | latency p50 / p95 ms | peak held state |',
        '|---|---|---|---|---|---|---|---|---|',
        f'| {_num(r["JF_mean"])} | {_num(r["J_mean"])} | {_num(r["F_mean"])} | {_num(r["J_recall"])} '
        f'| {_num(r["F_recall"])} | {_num(r["fps"], ".2f")} | {_num(r["wall_fps"], ".2f")} '
        f'| {_num(lat.get("p50"), ".1f")} / {_num(lat.get("p95"), ".1f")} '
        f'| {r["memory"]["state_bytes_peak"] / 2 ** 20:.2f} MiB |', '',
    ]
    if r['ground_truth'] is None:
        lines += ['No ground truth given: J and F are not computed.', '']
    else:
        gt = r['ground_truth']
        lines += [f'Ground truth: {gt["source"]}, {gt["frames"]} frames. J and F as in DAVIS '
                  f'(boundary tolerance {r["bound_th"]} of the image diagonal).', '']
    lines += ['## Objects', '', '| object | first prompt | frames evaluated | J&F | J | F | mean score | track losses |',
              '|---|---|---|---|---|---|---|---|']
    for oid, o in r['objects'].items():
        lines.append(f'| {oid} | {o["first_prompt_frame"]} | {o["frames_evaluated"]} | {_num(o["JF_mean"])} '
                     f'| {_num(o["J_mean"])} | {_num(o["F_mean"])} | {_num(o["mean_score"])} '
                     f'| {o["track_loss_events"]} |')
    events = r['track_loss']['events']
    lines += ['', f'## Track loss (IoU < {r["track_loss"]["iou_below"]} or empty for >= '
              f'{r["track_loss"]["min_frames"]} frames)', '']
    if events:
        lines += [f'- object {e["object_id"]}: frames {e["start_frame"]}-{e["end_frame"]} '
                  f'({e["frames"]} frames), {"recovered" if e["recovered"] else "not recovered"}'
                  for e in events]
    else:
        lines.append('None.' if r['ground_truth'] else 'Needs ground truth.')
    lines += ['', '## Latency (tracker.track per frame, ms)', '',
              ' | '.join(f'{k} {v:.1f}' for k, v in lat.items()), '']
    for title, name in pngs:
        lines += [f'## {title}', '', f'![{title}]({name})', '']
    if r['warnings']:
        lines += ['## Warnings', ''] + [f'- {w}' for w in r['warnings']] + ['']
    return '\n'.join(lines)


# --- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='sam2_evaluate', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--bag', required=True, type=pathlib.Path, help='rosbag2 folder (sqlite3 or mcap)')
    p.add_argument('--image-topic', required=True, help='sensor_msgs/Image or CompressedImage topic')
    p.add_argument('--prompts', type=pathlib.Path, default=None, help='prompts YAML (format: README.md, "Prompts files")')
    p.add_argument('--prompt-topic', default=None,
                   help='topic of recorded visualization_msgs/ImageMarker prompts (e.g. /sam2_tracker/prompt)')
    p.add_argument('--gt-topic', default=None, help='ground-truth label-image topic (mono8/mono16, '
                   'pixel = object id), matched to images by header stamp')
    p.add_argument('--gt-dir', type=pathlib.Path, default=None,
                   help='folder of ground-truth PNGs (DAVIS indexed or grayscale), one per frame, '
                        'named by frame index (00000.png) or in frame order')
    p.add_argument('--checkpoint', default=None, help="Meta's SAM 2 / 2.1 checkpoint (default: download once)")
    p.add_argument('--model', default='tiny', choices=MODELS)
    p.add_argument('--image-size', type=int, default=1024, help='model input size')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    p.add_argument('--max-objects', type=int, default=16)
    p.add_argument('--out', required=True, type=pathlib.Path, help='output folder')
    p.add_argument('--out-storage', choices=('sqlite3', 'mcap'), default=None,
                   help='storage of the output bag (default: that of the input)')
    p.add_argument('--overlay', action='store_true', help='also write /sam2_tracker/overlay (bgr8)')
    p.add_argument('--copy-images', action='store_true', help='copy the input images into the output bag')
    p.add_argument('--max-frames', type=int, default=None, help='evaluate the first N frames only')
    p.add_argument('--bound-th', type=float, default=metrics.BOUND_TH,
                   help='F boundary tolerance: fraction of the image diagonal (< 1) or pixels')
    p.add_argument('--loss-frames', type=int, default=5, help='track loss: at least this many frames')
    p.add_argument('--loss-iou', type=float, default=0.1, help='track loss: IoU below this')
    p.add_argument('--overwrite', action='store_true', help='replace an existing OUT/bag')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(args)
    except (EvaluationError, bagio.BagError, PromptsFileError, LabelPngError) as error:
        print(f'sam2_evaluate: error: {error}', file=sys.stderr)
        return 2
    jf = report['JF_mean']
    print(f'sam2_evaluate: {report["frames"]} frames, {report["fps"]:.2f} frames/s (tracker), '
          f'J&F {"-" if jf is None else f"{jf:.4f}"}; wrote {args.out}/report.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
