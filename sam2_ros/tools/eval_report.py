"""What ``sam2_evaluate`` reports: the figures of a run (J&F per object and overall, track-loss
events, latency percentiles, memory, the machine and the checkpoint), ``report.json``,
``per_frame.csv``, the plots and ``report.md``."""
from __future__ import annotations

import csv
import datetime
import json
import os
import pathlib
import platform

import numpy as np

from sam2_ros.tools import eval_3d, metrics, plots

MASK_TOPIC = '/sam2_tracker/masks'
OVERLAY_TOPIC = '/sam2_tracker/overlay'


def percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {}
    v = np.asarray(values_ms)
    steady = v[1:] if v.size > 1 else v
    return {'mean': float(v.mean()), 'p50': float(np.percentile(v, 50)),
            'p90': float(np.percentile(v, 90)), 'p95': float(np.percentile(v, 95)),
            'p99': float(np.percentile(v, 99)), 'max': float(v.max()), 'min': float(v.min()),
            'first': float(v[0]), 'mean_after_first': float(steady.mean())}


def cpu_name() -> str:
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


def build(args, ran: dict, storage, out_storage, frames, shape, latencies, memory, per_obj,
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
        'machine': {'cpu': cpu_name(), 'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
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
        'latency_ms': percentiles(latencies),
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


def write(out: pathlib.Path, report, rows, per_obj, latencies, memory, has_gt) -> None:
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
        f'- model: {r["model"]} at {r["image_size"]} px on {r["device"]} ({r["dtype"]}), memory_selection '
        f'{r.get("memory_selection", "sam2")}',
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
    if r.get('objects_3d'):
        lines += eval_3d.markdown(r['objects_3d'])
    if r['warnings']:
        lines += ['## Warnings', ''] + [f'- {w}' for w in r['warnings']] + ['']
    return '\n'.join(lines)
