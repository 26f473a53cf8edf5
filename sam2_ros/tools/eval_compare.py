"""``sam2_evaluate --memory-selection sam2 samurai``: one evaluation per memory selection on the
same bag, frames and prompts, side by side in one report.

Each selection's run is a whole evaluation of its own in ``OUT/<selection>/`` (its bag,
``report.json``, ``report.md``, ``per_frame.csv``, plots); ``comparison.json`` and the
``report.md`` in OUT put their figures side by side (J&F, J, F, recalls, track losses per
object and overall, speed, latency, held memory), with J&F over time of every selection in one
plot per object.
"""
from __future__ import annotations

import copy
import json
import pathlib
from typing import Callable, Dict, List

from sam2_ros.tools import plots

# (key in report.json, column title, format)
SUMMARY = (('JF_mean', 'J&F', '.4f'), ('J_mean', 'J', '.4f'), ('F_mean', 'F', '.4f'), ('J_recall', 'J recall', '.3f'),
           ('F_recall', 'F recall', '.3f'), ('fps', 'frames/s', '.2f'))


def compare(args, evaluate: Callable[[object], dict]) -> Dict[str, dict]:
    """Run ``evaluate`` once per selection in ``args.memory_selection`` (each into
    ``args.out / selection``), then write the comparison; returns {selection: its report}."""
    out = pathlib.Path(args.out)
    reports = {}
    for selection in dict.fromkeys(args.memory_selection):
        sub = copy.copy(args)
        sub.memory_selection, sub.out = [selection], out / selection
        reports[selection] = evaluate(sub)
    write(out, reports)
    return reports


def _num(v, fmt: str) -> str:
    return '-' if v is None else format(v, fmt)


def comparison(reports: Dict[str, dict]) -> dict:
    """The figures of each selection's report that the comparison shows."""
    def losses(r):
        return len(r['track_loss']['events'])

    return {
        'selections': list(reports),
        'summary': {s: {**{k: r[k] for k, _, _ in SUMMARY}, 'track_losses': losses(r),
                        'latency_p50_ms': r['latency_ms'].get('p50'), 'latency_p95_ms': r['latency_ms'].get('p95'),
                        'state_bytes_peak': r['memory']['state_bytes_peak'], 'report': f'{s}/report.md'}
                    for s, r in reports.items()},
        'objects': {oid: {s: {'JF_mean': r['objects'][oid]['JF_mean'], 'J_mean': r['objects'][oid]['J_mean'],
                              'F_mean': r['objects'][oid]['F_mean'],
                              'track_loss_events': r['objects'][oid]['track_loss_events']}
                          for s, r in reports.items()}
                    for oid in next(iter(reports.values()))['objects']},
    }


def write(out: pathlib.Path, reports: Dict[str, dict]) -> None:
    data = comparison(reports)
    first = next(iter(reports.values()))
    data.update({k: first[k] for k in ('tool', 'date', 'bag', 'image_topic', 'model', 'image_size', 'device', 'dtype',
                                       'checkpoint', 'checkpoint_sha256', 'frames')})
    (out / 'comparison.json').write_text(json.dumps(data, indent=2) + '\n')
    pngs = []
    for oid in data['objects']:
        series = {}
        for s in reports:
            rows = _per_frame(out / s / 'per_frame.csv', oid)
            if rows:
                series[s] = rows
        if series:
            name = f'jf_object_{oid}.png'
            plots.line_plot(out / name, series, f'object {oid}: J&F per frame', 'frame', '(J + F) / 2', ylim=(0.0, 1.0))
            pngs.append((f'object {oid}', name))
    (out / 'report.md').write_text(_markdown(data, pngs))


def _per_frame(csv_path: pathlib.Path, oid: str):
    """(frames, J&F) of one object from a run's per_frame.csv."""
    import csv

    frames, jf = [], []
    with open(csv_path, newline='', encoding='utf-8') as stream:
        for row in csv.DictReader(stream):
            if row['object_id'] == oid and row['J']:
                frames.append(int(row['frame']))
                jf.append((float(row['J']) + float(row['F'])) / 2)
    return (frames, jf) if frames else None


def _markdown(d: dict, pngs: List) -> str:
    sels = d['selections']
    lines = ['# sam2_evaluate: memory selections compared', '',
             f'- bag: `{d["bag"]}`, topic `{d["image_topic"]}`, {d["frames"]} frames, the same prompts for each',
             f'- model: {d["model"]} at {d["image_size"]} px on {d["device"]} ({d["dtype"]}), checkpoint '
             f'`{d["checkpoint"]}` (SHA-256 {d["checkpoint_sha256"]}...)',
             f'- date: {d["date"]}', '',
             '## Summary', '',
             '| memory_selection | ' + ' | '.join(t for _, t, _ in SUMMARY)
             + ' | track losses | latency p50 / p95 ms | peak held state | run |',
             '|---' * (len(SUMMARY) + 5) + '|']
    for s in sels:
        r = d['summary'][s]
        lines.append(f'| {s} | ' + ' | '.join(_num(r[k], f) for k, _, f in SUMMARY)
                     + f' | {r["track_losses"]} | {_num(r["latency_p50_ms"], ".1f")} / {_num(r["latency_p95_ms"], ".1f")}'
                     + f' | {r["state_bytes_peak"] / 2 ** 20:.2f} MiB | [{r["report"]}]({r["report"]}) |')
    lines += ['', '## Objects (J&F; track losses)', '', '| object | ' + ' | '.join(sels) + ' |',
              '|---' * (len(sels) + 1) + '|']
    for oid, per in d['objects'].items():
        lines.append(f'| {oid} | ' + ' | '.join(f'{_num(per[s]["JF_mean"], ".4f")}; {per[s]["track_loss_events"]}'
                                               for s in sels) + ' |')
    if all(d['summary'][s]['JF_mean'] is None for s in sels):
        lines += ['', 'No ground truth given: J and F are not computed.']
    for title, name in pngs:
        lines += ['', f'## J&F over time, {title}', '', f'![{title}]({name})']
    return '\n'.join(lines) + '\n'
