"""Small PNG charts drawn with OpenCV (no matplotlib): line plots and histograms.

Good enough for reports: axes with round-number ticks, a title, axis labels and a legend.
Nothing is drawn over the data: the legend and the labels of histogram markers sit in a strip
between the title and the plot, and tick labels share one format per axis and are thinned
where they would touch.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import cv2
import numpy as np

from sam2_ros.visualization import color_for_id

__all__ = ['line_plot', 'histogram', 'nice_ticks', 'tick_labels']

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_W, _H = 800, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 24, 44, 56
_GRID = (225, 225, 225)
_AXIS = (60, 60, 60)
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def nice_ticks(lo: float, hi: float, count: int = 6, integer: bool = False) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]; whole numbers only with
    ``integer`` (frame indices: a tick at frame 0.5 means nothing)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer and not float(step).is_integer():  # below 1, or 2.5
        step = 1.0 if step < 1 else 2.0
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels of an axis's ticks, all in one format.

    Formatting each tick alone mixes styles on one axis ("5000" beside "1e+04"); here the
    decimals follow the step between ticks, so 0, 2500, ..., 12500 or 0, 0.25, 0.5 read alike,
    and only values beyond a million or below a thousandth switch, all together, to
    scientific notation.
    """
    ticks = [float(t) for t in ticks]
    if not ticks:
        return []
    top = max(abs(t) for t in ticks)
    steps = [b - a for a, b in zip(ticks, ticks[1:]) if b > a]
    step = min(steps) if steps else (top or 1.0)
    if top >= 1e6 or (0 < top < 1e-3):
        return ['0' if t == 0 else f'{t:.2e}'.replace('e+0', 'e').replace('e-0', 'e-') for t in ticks]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    # a step like 2.5 or 0.25 needs one more digit than its magnitude says
    while decimals < 6 and any(abs(round(t, decimals) - t) > step * 1e-6 for t in ticks):
        decimals += 1
    return [f'{t:.{decimals}f}' for t in ticks]


def _fmt(v: float) -> str:
    """A single value (a marker's label): 4 significant digits, never scientific below 1e6."""
    if abs(v) >= 1e6:
        return f'{v:.3g}'
    return f'{v:.1f}' if abs(v) >= 10 else f'{v:.3g}'


def _text(img, s, org, scale=0.45, color=_AXIS, thick=1):
    cv2.putText(img, s, (int(org[0]), int(org[1])), _FONT, scale, color, thick, cv2.LINE_AA)


def _canvas(title: str, xlabel: str, ylabel: str, top: int = _TOP):
    """White image with the title, the x label and the rotated y label; the plot area starts
    at row ``top`` (more than _TOP where a legend strip needs room)."""
    img = np.full((_H, _W, 3), 255, np.uint8)
    (tw, _), _ = cv2.getTextSize(title, _FONT, 0.6, 1)
    _text(img, title, ((_W - tw) / 2, 26), 0.6, (20, 20, 20), 1)
    (xw, _), _ = cv2.getTextSize(xlabel, _FONT, 0.45, 1)
    _text(img, xlabel, (_LEFT + (_W - _LEFT - _RIGHT - xw) / 2, _H - 12))
    # y label, rotated
    (yw, yh), _ = cv2.getTextSize(ylabel, _FONT, 0.45, 1)
    strip = np.full((yh + 8, yw + 4, 3), 255, np.uint8)
    _text(strip, ylabel, (2, yh + 2))
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = max(top, int(top + (_H - top - _BOTTOM - strip.shape[0]) / 2))
    img[y0:y0 + strip.shape[0], 4:4 + strip.shape[1]] = strip[:_H - y0]
    return img


class _Axes:
    def __init__(self, img, xlim, ylim, xticks, yticks, top: int = _TOP):
        self.img = img
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim
        self.px0, self.px1 = _LEFT, _W - _RIGHT
        self.py0, self.py1 = _H - _BOTTOM, top
        for t, label in zip(yticks, tick_labels(yticks)):
            y = self.py(t)
            cv2.line(img, (self.px0, y), (self.px1, y), _GRID, 1)
            (w, h), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
            _text(img, label, (self.px0 - 6 - w, y + h / 2), 0.4)
        labels = tick_labels(xticks)
        widths = [cv2.getTextSize(label, _FONT, 0.4, 1)[0][0] for label in labels]
        spacing = abs(self.px(xticks[1]) - self.px(xticks[0])) if len(xticks) > 1 else _W
        # every k-th label, so that neighbours keep a gap of at least 12 px
        every = 1
        while every < len(labels) and spacing * every < max(widths, default=0) + 12:
            every += 1
        for k, (t, label, w) in enumerate(zip(xticks, labels, widths)):
            x = self.px(t)
            cv2.line(img, (x, self.py0), (x, self.py0 + (4 if k % every == 0 else 2)), _AXIS, 1)
            if k % every == 0:
                h = cv2.getTextSize(label, _FONT, 0.4, 1)[0][1]
                _text(img, label, (x - w / 2, self.py0 + 8 + h), 0.4)
        cv2.rectangle(img, (self.px0, self.py1), (self.px1, self.py0), _AXIS, 1)

    def px(self, v):
        span = (self.x1 - self.x0) or 1.0
        return int(round(self.px0 + (v - self.x0) / span * (self.px1 - self.px0)))

    def py(self, v):
        span = (self.y1 - self.y0) or 1.0
        return int(round(self.py0 - (v - self.y0) / span * (self.py0 - self.py1)))


def _color(key, index: int) -> tuple[int, int, int]:
    """BGR color of a series: an object id's color where the key is one, else a palette color."""
    try:
        r, g, b = color_for_id(int(key))
        return b, g, r
    except (TypeError, ValueError):
        r, g, b = _PALETTE[index % len(_PALETTE)]
        return b, g, r


_LEGEND_SCALE = 0.42
_LEGEND_ROW = 18
_SWATCH = 22


def _legend_rows(names: Sequence[str]) -> list[list[int]]:
    """Indices of the legend entries on each row of the strip above the plot (right-aligned
    rows of at most the plot's width)."""
    rows: list[list[int]] = [[]]
    used = 0
    for i, name in enumerate(names):
        width = _SWATCH + 6 + cv2.getTextSize(str(name), _FONT, _LEGEND_SCALE, 1)[0][0] + 18
        if rows[-1] and used + width > _W - _LEFT - _RIGHT:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += width
    return rows if rows[0] else []


def _draw_legend(img, names: Sequence[str], colors: Sequence[tuple[int, int, int]],
                 rows: list[list[int]], top: int) -> None:
    """The legend in the strip that ends at row ``top`` (the plot's top edge)."""
    for r, row in enumerate(rows):
        y = top - 8 - _LEGEND_ROW * (len(rows) - 1 - r)
        widths = [_SWATCH + 6 + cv2.getTextSize(str(names[i]), _FONT, _LEGEND_SCALE, 1)[0][0]
                  for i in row]
        x = _W - _RIGHT - sum(widths) - 18 * (len(row) - 1)
        for i, width in zip(row, widths):
            cv2.line(img, (x, y - 4), (x + _SWATCH, y - 4), colors[i], 3, cv2.LINE_AA)
            _text(img, str(names[i]), (x + _SWATCH + 6, y), _LEGEND_SCALE, (30, 30, 30))
            x += width + 18


def line_plot(path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
              xlabel: str, ylabel: str, ylim: tuple[float, float] | None = None,
              colors: Mapping[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Lines (x, y) per series name, with a legend above the plot (never over a line); NaN
    values break a line. Writes ``path`` (PNG) unless it is None; returns the BGR image."""
    names = list(series)
    rows = _legend_rows(names)
    top = _TOP + _LEGEND_ROW * len(rows)
    img = _canvas(title, xlabel, ylabel, top)
    xs = [float(v) for x, _ in series.values() for v in x]
    ys = [float(v) for _, y in series.values() for v in y if v is not None and math.isfinite(v)]
    whole = bool(xs) and all(float(v).is_integer() for v in xs)  # frame indices, counts
    xticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0), 8, integer=whole)
    if ylim is None:
        lo, hi = min(ys, default=0.0), max(ys, default=1.0)
        lo = min(lo, 0.0)
        yticks = nice_ticks(lo, hi if hi > lo else lo + 1.0, 6)
    else:
        yticks = nice_ticks(*ylim, 6)
    ax = _Axes(img, (xticks[0], xticks[-1]), (yticks[0], yticks[-1]), xticks, yticks, top)
    line_colors = []
    for i, (name, (x, y)) in enumerate(series.items()):
        color = (colors or {}).get(name) or _color(name.split()[-1] if name else name, i)
        line_colors.append(color)
        pts = []
        for xv, yv in zip(x, y):
            if yv is None or not math.isfinite(yv):
                if len(pts) > 1:
                    cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
                elif pts:
                    cv2.circle(img, pts[0], 2, color, -1, cv2.LINE_AA)
                pts = []
                continue
            pts.append((ax.px(xv), ax.py(yv)))
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
        elif pts:
            cv2.circle(img, pts[0], 3, color, -1, cv2.LINE_AA)
    _draw_legend(img, names, line_colors, rows, top)
    if path is not None:
        cv2.imwrite(str(path), img)
    return img


def histogram(path, values: Sequence[float], title: str, xlabel: str, bins: int = 30,
              markers: Mapping[str, float] | None = None) -> np.ndarray:
    """Histogram of ``values`` with optional labelled vertical markers (e.g. p50, p95); the
    markers' labels sit above the plot, side by side, not over the bars."""
    plot_top = _TOP + (_LEGEND_ROW if markers else 0)
    img = _canvas(title, xlabel, 'frames', plot_top)
    v = np.asarray([x for x in values if math.isfinite(x)], np.float64)
    if v.size == 0:
        v = np.zeros(1)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    xticks = nice_ticks(lo, hi, 8)
    top = max(int(counts.max()), 1)
    yticks = list(range(top + 1)) if top <= 5 else nice_ticks(0, top, 6)
    ax = _Axes(img, (xticks[0], xticks[-1]), (0, yticks[-1]), xticks, yticks, plot_top)
    fill = (180, 119, 31)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            cv2.rectangle(img, (ax.px(a), ax.py(c)), (max(ax.px(b) - 1, ax.px(a)), ax.py(0)), fill, -1)
    # labels start just right of their line, pushed right of the previous one
    # where they would touch, and kept inside the image (pushed back left from the edge)
    placed = []
    for i, (name, x) in enumerate(sorted((markers or {}).items(), key=lambda kv: kv[1])):
        color = (40, 39, 214) if i % 2 else (14, 127, 255)
        xp = ax.px(x)
        cv2.line(img, (xp, ax.py1), (xp, ax.py0), color, 1, cv2.LINE_AA)  # not into the label strip
        label = f'{name} {_fmt(x)}'
        width = cv2.getTextSize(label, _FONT, _LEGEND_SCALE, 1)[0][0]
        left = xp + 4
        if placed:
            left = max(left, placed[-1][1] + placed[-1][2] + 10)
        placed.append([label, left, width, color])
    overflow = (placed[-1][1] + placed[-1][2]) - (_W - 4) if placed else 0
    if overflow > 0:
        for entry in placed:
            entry[1] -= overflow
    for label, left, _, color in placed:
        _text(img, label, (max(4, left), plot_top - 8), _LEGEND_SCALE, color)
    if path is not None:
        cv2.imwrite(str(path), img)
    return img
