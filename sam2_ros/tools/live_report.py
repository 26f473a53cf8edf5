"""What ``sam2_live`` reports: per frame (sent, answered, latency), the figures of the whole run
(drops, latency percentiles, rates, the node's mode, clock and diagnostics), J&F of the answered
frames against a ground-truth topic, and the files: ``live_report.json``, ``per_frame.csv`` and
``latency_hist.png``."""
from __future__ import annotations

import csv
import datetime
import json
import os
import pathlib
import platform

import numpy as np

from sam2_ros.tools import bagio, metrics, plots
from sam2_ros.tools.eval_inputs import fmt_stamp
from sam2_ros.tools.eval_report import checkpoint_identity, cpu_name, percentiles
from sam2_ros.tools.live_node import LiveError


def rate_hz(count: int, span_s: float) -> float | None:
    """Frames per second of ``count`` frames whose first and last are ``span_s`` apart.

    ``count - 1`` intervals, not ``count``: 6 frames of a 25 fps bag span 0.2 s, and 6 / 0.2
    would report 30 fps. None for fewer than 2 frames or no time between them.
    """
    if count < 2 or span_s <= 0:
        return None
    return (count - 1) / span_s


def per_frame(frames, sent: dict, received: dict, start: float, index_of: dict) -> tuple[list, list]:
    """Rows of per_frame.csv and the latencies (ms) of the frames answered."""
    rows, latencies = [], []
    for f in frames:
        s = f.header.stamp_ns
        row = {'frame': f.index, 'stamp': fmt_stamp(s), 'log_time': f.log_time,
               'sent_s': f'{sent[s] - start:.6f}' if s in sent else '', 'answered': int(s in received)}
        if s in received and s in sent and row['frame'] == index_of[s]:
            lat = (received[s] - sent[s]) * 1000.0
            latencies.append(lat)
            row['latency_ms'] = f'{lat:.3f}'
        rows.append(row)
    return rows, latencies


def build(args, run: dict, playback, recorder, frames, latencies: list, finished: float) -> dict:
    """The report of a run. ``run``: what the run knew (storage, message type, node, its image
    topic and mode, the output bag, duplicate stamps, warnings)."""
    received = dict(recorder.received)
    start = playback.start
    n_sent, n_recv = len(frames), len(received)
    out_span = (max(received.values()) - min(received.values())) if received else 0.0
    diags = [d for d in recorder.diagnostics if d['arrival'] >= start]  # during the playback
    bag_first, bag_last = frames[0].log_time, frames[-1].log_time
    diag_stamps = [d['stamp_ns'] for d in diags]
    node_clock = {'diagnostics': len(diags),
                  'first_stamp': fmt_stamp(min(diag_stamps)) if diag_stamps else None,
                  'last_stamp': fmt_stamp(max(diag_stamps)) if diag_stamps else None,
                  # sim time: the node's clock follows the playback clock (bag time), not the wall
                  'sim_time': bool(diag_stamps) and all(bag_first - 1_000_000_000 <= s <= playback.playclock(finished)
                                                        + 1_000_000_000 for s in diag_stamps)}
    lat = percentiles(latencies)
    mode, clock = run['mode'], playback.clock
    report = {
        'tool': 'sam2_live',
        'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'machine': {'cpu': cpu_name(), 'cpu_count': os.cpu_count(), 'python': platform.python_version()},
        'bag': str(args.bag), 'storage': run['storage'], 'image_topic': args.image_topic,
        'message_type': run['msgtype'], 'node': run['fqn'], 'node_image_topic': run['node_topic'],
        'started_node': bool(args.start_node), 'rate': args.rate,
        'prompts': str(args.prompts) if args.prompts else None, 'prompt_topic': args.prompt_topic,
        'prompts_sent': playback.prompt_log,
        'frames_sent': n_sent, 'masks_received': n_recv, 'dropped': n_sent - n_recv,
        'drop_ratio': (n_sent - n_recv) / n_sent,
        'masks_unmatched': recorder.unmatched, 'masks_repeated': recorder.repeated,
        'duplicate_input_stamps': run['duplicates'],
        'latency_ms': {k: lat[k] for k in ('p50', 'p95', 'max', 'mean', 'min')} if lat else {},
        'input_fps': rate_hz(n_sent, (bag_last - bag_first) / 1e9 / args.rate),
        'output_fps': rate_hz(n_recv, out_span),
        'playback_s': playback.end_sent - start, 'wall_s': finished - start,
        'node_mode': mode,
        # the node's checkpoint by content, where this machine can read it (as sam2_evaluate)
        'node_checkpoint': checkpoint_identity(mode['checkpoint'])
        if mode.get('checkpoint') and os.path.isfile(mode['checkpoint']) else None,
        'node_diagnostics': diags[-1]['values'] if diags else None,
        'clock': {'published': clock['published'], 'messages': clock['messages'],
                  'first': fmt_stamp(clock['first_ns']) if clock['first_ns'] is not None else None,
                  'last': fmt_stamp(clock['last_ns']) if clock['last_ns'] is not None else None,
                  'bag_last': fmt_stamp(bag_last), 'at_last_frame': fmt_stamp(playback.clock_at_last_frame)
                  if playback.clock_at_last_frame is not None else None},
        'node_clock': node_clock,
        'outputs': {'bag': str(run['out_bag']), 'storage': args.out_storage or run['storage'],
                    'topics': dict(sorted(recorder.counts.items()))},
        'warnings': run['warnings'] + recorder.errors,
    }
    if run['duplicates']:
        report['warnings'].append(f'{run["duplicates"]} input frame(s) repeat an earlier stamp: only the first '
                                  'of each stamp is matched')
    return report


def jf(args, out_bag, mask_topic, frames, schedule, gt) -> dict:
    """J&F of the masks the node answered (evaluate.py's metrics), per object and overall."""
    first_frame = {}
    for index in sorted(schedule):
        for a in schedule[index]:
            if a.kind == 'prompt' and a.object_id is not None:  # (text prompts: the node numbers the objects)
                first_frame.setdefault(a.object_id, index)
    by_stamp = {f.header.stamp_ns: f.index for f in frames}
    per_obj = {oid: {'frames': [], 'J': [], 'F': []} for oid in sorted(first_frame)}
    for msg in bagio.iter_labels(out_bag, mask_topic):
        t = by_stamp.get(msg.header.stamp_ns)
        truth = gt.get(t) if t is not None else None
        if truth is None:
            continue
        if truth.shape != msg.image.shape:
            raise LiveError(f'ground truth of frame {t} is {truth.shape[1]}x{truth.shape[0]}, the '
                            f'masks are {msg.image.shape[1]}x{msg.image.shape[0]}')
        for oid, d in per_obj.items():
            if first_frame[oid] <= t:
                pred, g = msg.image == oid, truth == oid
                d['frames'].append(t)
                d['J'].append(metrics.jaccard(pred, g))
                d['F'].append(metrics.f_measure(pred, g, args.bound_th))
    objects = {}
    for oid, d in per_obj.items():
        j, f = metrics.summarize(d['J']), metrics.summarize(d['F'])
        objects[str(oid)] = {'first_prompt_frame': first_frame[oid], 'frames_evaluated': len(d['frames']),
                             'J_mean': j['mean'], 'F_mean': f['mean'],
                             'JF_mean': None if j['mean'] is None else (j['mean'] + f['mean']) / 2}
    scored = [o for o in objects.values() if o['J_mean'] is not None]
    j_mean = float(np.mean([o['J_mean'] for o in scored])) if scored else None
    f_mean = float(np.mean([o['F_mean'] for o in scored])) if scored else None
    return {'JF_mean': None if j_mean is None else (j_mean + f_mean) / 2, 'J_mean': j_mean,
            'F_mean': f_mean, 'objects': objects, 'bound_th': args.bound_th,
            'ground_truth': {'source': gt.source, 'frames': len(gt)},
            'note': 'on the frames the node answered (dropped frames are not scored)'}


def write(out: pathlib.Path, report: dict, rows: list, latencies: list) -> None:
    """per_frame.csv, latency_hist.png and live_report.json under ``out``."""
    with open(out / 'per_frame.csv', 'w', newline='', encoding='utf-8') as stream:
        w = csv.DictWriter(stream, ['frame', 'stamp', 'log_time', 'sent_s', 'answered', 'latency_ms'], restval='')
        w.writeheader()
        w.writerows(rows)
    if latencies:
        lat = report['latency_ms']
        plots.histogram(out / 'latency_hist.png', latencies, 'End-to-end latency (image sent -> masks back)',
                        'ms', markers={'p50': lat['p50'], 'p95': lat['p95']})
    (out / 'live_report.json').write_text(json.dumps(report, indent=2) + '\n')
