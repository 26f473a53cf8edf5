"""Small PNG charts drawn with OpenCV (no matplotlib): line plots and histograms.

Good enough for reports: axes with round-number ticks, a title, axis labels and a legend.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import cv2
import numpy as np

from sam2_ros.visualization import color_for_id

__all__ = ['line_plot', 'histogram', 'nice_ticks']

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_W, _H = 800, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 24, 44, 56
_GRID = (225, 225, 225)
_AXIS = (60, 60, 60)
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return '0'
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f'{v:.2g}'
    return f'{v:g}' if float(v).is_integer() else f'{v:.3g}'


def _text(img, s, org, scale=0.45, color=_AXIS, thick=1):
    cv2.putText(img, s, (int(org[0]), int(org[1])), _FONT, scale, color, thick, cv2.LINE_AA)


def _canvas(title: str, xlabel: str, ylabel: str):
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
    y0 = max(_TOP, int(_TOP + (_H - _TOP - _BOTTOM - strip.shape[0]) / 2))
    img[y0:y0 + strip.shape[0], 4:4 + strip.shape[1]] = strip[:_H - y0]
    return img


class _Axes:
    def __init__(self, img, xlim, ylim, xticks, yticks):
        self.img = img
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim
        self.px0, self.px1 = _LEFT, _W - _RIGHT
        self.py0, self.py1 = _H - _BOTTOM, _TOP
        for t in yticks:
            y = self.py(t)
            cv2.line(img, (self.px0, y), (self.px1, y), _GRID, 1)
            (w, h), _ = cv2.getTextSize(_fmt(t), _FONT, 0.4, 1)
            _text(img, _fmt(t), (self.px0 - 6 - w, y + h / 2), 0.4)
        for t in xticks:
            x = self.px(t)
            cv2.line(img, (x, self.py0), (x, self.py0 + 4), _AXIS, 1)
            (w, h), _ = cv2.getTextSize(_fmt(t), _FONT, 0.4, 1)
            _text(img, _fmt(t), (x - w / 2, self.py0 + 8 + h), 0.4)
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


def line_plot(path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
              xlabel: str, ylabel: str, ylim: tuple[float, float] | None = None,
              colors: Mapping[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Lines (x, y) per series name, with a legend; NaN values break a line. Writes ``path``
    (PNG) unless it is None; returns the BGR image."""
    img = _canvas(title, xlabel, ylabel)
    xs = [float(v) for x, _ in series.values() for v in x]
    ys = [float(v) for _, y in series.values() for v in y if v is not None and math.isfinite(v)]
    xticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0), 8)
    if ylim is None:
        lo, hi = min(ys, default=0.0), max(ys, default=1.0)
        lo = min(lo, 0.0)
        yticks = nice_ticks(lo, hi if hi > lo else lo + 1.0, 6)
    else:
        yticks = nice_ticks(*ylim, 6)
    ax = _Axes(img, (xticks[0], xticks[-1]), (yticks[0], yticks[-1]), xticks, yticks)
    for i, (name, (x, y)) in enumerate(series.items()):
        color = (colors or {}).get(name) or _color(name.split()[-1] if name else name, i)
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
        # legend entry
        ly = _TOP + 16 + 18 * i
        lx = _W - _RIGHT - 150
        cv2.line(img, (lx, ly - 4), (lx + 22, ly - 4), color, 3, cv2.LINE_AA)
        _text(img, str(name), (lx + 28, ly), 0.42, (30, 30, 30))
    if path is not None:
        cv2.imwrite(str(path), img)
    return img


def histogram(path, values: Sequence[float], title: str, xlabel: str, bins: int = 30,
              markers: Mapping[str, float] | None = None) -> np.ndarray:
    """Histogram of ``values`` with optional labelled vertical markers (e.g. p50, p95)."""
    img = _canvas(title, xlabel, 'frames')
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
    ax = _Axes(img, (xticks[0], xticks[-1]), (0, yticks[-1]), xticks, yticks)
    fill = (180, 119, 31)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            cv2.rectangle(img, (ax.px(a), ax.py(c)), (max(ax.px(b) - 1, ax.px(a)), ax.py(0)), fill, -1)
    for i, (name, x) in enumerate((markers or {}).items()):
        color = (40, 39, 214) if i % 2 else (14, 127, 255)
        xp = ax.px(x)
        cv2.line(img, (xp, ax.py1), (xp, ax.py0), color, 1, cv2.LINE_AA)
        _text(img, f'{name} {x:.1f}' if abs(x) >= 10 else f'{name} {x:.3g}', (xp + 4, ax.py1 + 14 + 16 * i), 0.42, color)
    if path is not None:
        cv2.imwrite(str(path), img)
    return img
