"""Video object segmentation metrics: J (region IoU), F (boundary F-measure), track loss.

Definitions follow the DAVIS benchmark (Perazzi et al., CVPR 2016; Pont-Tuset et al. 2017):

* J = |P & G| / |P | G|; both masks empty counts as 1.
* F: the one-pixel boundaries of P and G (a pixel of the mask whose right, lower or
  lower-right neighbour differs, with the image border continuing the last row / column) are
  matched within ``ceil(bound_th * sqrt(H^2 + W^2))`` pixels (``bound_th`` < 1 is a fraction
  of the image diagonal, 0.008 as DAVIS; >= 1 is pixels), by dilating each boundary with a
  disk of that radius. Precision = share of predicted boundary pixels near the true boundary,
  recall = share of true boundary pixels near the predicted one, F = 2PR / (P + R). With no
  predicted boundary: P = 1, R = 0 (F = 0) unless the truth is empty too (F = 1); with no true
  boundary but a predicted one: P = 0, R = 1 (F = 0).
* Track loss: an object whose ground truth is present but whose prediction is empty or has
  IoU < ``iou_th`` (0.1) for at least ``min_frames`` consecutive evaluated frames.

numpy and OpenCV only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import cv2
import numpy as np

__all__ = ['jaccard', 'boundary_map', 'boundary_radius', 'f_measure', 'f_measure_prf',
           'TrackLoss', 'track_loss_events', 'summarize']

BOUND_TH = 0.008


def _bool(mask, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'{name} must be an H x W mask, got shape {mask.shape}')
    return mask.astype(bool, copy=False)


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _bool(pred, 'pred'), _bool(gt, 'gt')
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in size')
    return pred, gt


def jaccard(pred, gt) -> float:
    """Region similarity J: intersection over union (1.0 when both are empty)."""
    pred, gt = _pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def boundary_map(mask) -> np.ndarray:
    """One-pixel boundary of a mask (DAVIS ``seg2bmap`` at the mask's own resolution)."""
    m = _bool(mask, 'mask')
    h, w = m.shape
    right = np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    down = np.zeros_like(m)
    down[:-1, :] = m[1:, :]
    diag = np.zeros_like(m)
    diag[:-1, :-1] = m[1:, 1:]
    b = (m ^ right) | (m ^ down) | (m ^ diag)
    # Along the last row and column only the neighbour inside the image counts.
    b[-1, :] = m[-1, :] ^ right[-1, :]
    b[:, -1] = m[:, -1] ^ down[:, -1]
    b[-1, -1] = False
    return b


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Matching tolerance in pixels: ``ceil(bound_th * diagonal)`` (or ``bound_th`` if >= 1)."""
    if bound_th >= 1:
        return int(math.ceil(bound_th))
    h, w = shape
    return int(math.ceil(bound_th * math.hypot(h, w)))


def _disk(radius: int) -> np.ndarray:
    """Disk structuring element: the pixels with x^2 + y^2 <= r^2."""
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def _dilate(b: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return b
    return cv2.dilate(b.astype(np.uint8), _disk(radius), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0).astype(bool)


def f_measure_prf(pred, gt, bound_th: float = BOUND_TH) -> tuple[float, float, float]:
    """(F, precision, recall) of the boundaries (see the module docstring)."""
    pred, gt = _pair(pred, gt)
    radius = boundary_radius(pred.shape, bound_th)
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_p, n_g = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_p == 0 and n_g == 0:
        return 1.0, 1.0, 1.0
    if n_p == 0:
        return 0.0, 1.0, 0.0
    if n_g == 0:
        return 0.0, 0.0, 1.0
    precision = np.count_nonzero(pb & _dilate(gb, radius)) / n_p
    recall = np.count_nonzero(gb & _dilate(pb, radius)) / n_g
    if precision + recall == 0:
        return 0.0, precision, recall
    return 2 * precision * recall / (precision + recall), precision, recall


def f_measure(pred, gt, bound_th: float = BOUND_TH) -> float:
    """Contour accuracy F (boundary F-measure)."""
    return f_measure_prf(pred, gt, bound_th)[0]


@dataclasses.dataclass
class TrackLoss:
    object_id: int
    start_frame: int      # first frame of the lost run
    end_frame: int        # last frame of the lost run
    frames: int           # evaluated frames in the run
    recovered: bool       # tracked again (IoU >= threshold) after the run

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def track_loss_events(object_id: int, frames: Sequence[int], ious: Sequence[float],
                      gt_present: Sequence[bool], pred_present: Sequence[bool],
                      min_frames: int = 5, iou_th: float = 0.1) -> list[TrackLoss]:
    """Runs of >= ``min_frames`` consecutive evaluated frames where the object is in the ground
    truth but the prediction is empty or its IoU is below ``iou_th``. Frames where the object is
    absent from the ground truth neither extend nor break a run."""
    events: list[TrackLoss] = []
    run: list[int] = []

    def close(recovered: bool) -> None:
        if len(run) >= min_frames:
            events.append(TrackLoss(int(object_id), int(run[0]), int(run[-1]), len(run), recovered))

    for frame, iou, gt_on, pred_on in zip(frames, ious, gt_present, pred_present):
        if not gt_on:
            continue
        if not pred_on or iou < iou_th:
            run.append(frame)
        else:
            close(True)
            run = []
    close(False)
    return events


def summarize(values: Iterable[float]) -> dict:
    """mean, recall (share > 0.5) and DAVIS decay (mean of the first quarter minus the last)."""
    v = np.asarray(list(values), np.float64)
    if v.size == 0:
        return {'mean': None, 'recall': None, 'decay': None}
    quarters = np.array_split(v, 4) if v.size >= 4 else [v, v]
    return {'mean': float(v.mean()), 'recall': float((v > 0.5).mean()),
            'decay': float(quarters[0].mean() - quarters[-1].mean())}
