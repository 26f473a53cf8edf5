"""A constant-velocity Kalman filter on each object's box, one per object slot, as SAMURAI's.

SAMURAI (Yang et al. 2024) follows the box of each tracked mask with the filter of SORT /
DeepSORT: the state is ``(x, y, a, h, vx, vy, va, vh)``, the box centre, aspect ratio
(width / height) and height with their velocities; one frame is one time step; the box is
observed directly; process and measurement noise scale with the current height. These are
pure tensor functions over a batch of slots: mean ``(S, 8)``, covariance ``(S, 8, 8)``, in the
dtype given (float32 in the frame step). No host synchronisation, no data-dependent Python
control flow; elementwise arithmetic only (no matmul, no linear solve), so autocast leaves it
in its dtype and it exports to ONNX / TensorRT as it is.

Why no solve: the motion matrix, the observation matrix and every noise matrix act on each
coordinate k and its velocity k + 4 alone, and ``initiate`` starts from a diagonal
covariance. So the covariance only ever couples k with k + 4 (four independent 2 x 2
filters), the innovation covariance ``H P H^T + R`` is diagonal, and the gain that SAMURAI
computes with a Cholesky solve is that matrix's columns divided by its diagonal. The functions
below take any covariance of that form (every one the filter can reach) and give SAMURAI's
numbers up to rounding (``test/test_samurai_parts.py`` checks them against its own filter).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

# SAMURAI's noise weights (its kalman_filter.py, as in DeepSORT): standard deviations are
# these fractions of the box height.
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
# Standard deviations of the aspect ratio, which does not scale with the height.
STD_ASPECT_INIT, STD_ASPECT_VEL_INIT = 1e-2, 1e-5  # initiate
STD_ASPECT_MOTION, STD_ASPECT_VEL_MOTION = 1e-2, 1e-5  # predict (process noise)
STD_ASPECT_MEASURE = 1e-1  # project (measurement noise)


def _height_std(h: Tensor, weight: float, aspect: float) -> Tensor:
    """(S,) height -> (S, 4) standard deviations (w h, w h, aspect, w h)."""
    wh = weight * h
    return torch.stack((wh, wh, torch.full_like(h, aspect), wh), -1)


def box_to_xyah(box: Tensor) -> Tensor:
    """(..., 4) x0, y0, x1, y1 -> (..., 4) centre x, centre y, aspect w / h, height h.

    As SAMURAI: w = x1 - x0, h = y1 - y0 (pixel indices of the extreme mask pixels, so a
    one-pixel-wide mask has w = 0), and a zero height becomes 1 before dividing."""
    x0, y0, x1, y1 = box.unbind(-1)
    h = y1 - y0
    h = torch.where(h == 0, torch.ones_like(h), h)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / h, h), -1)


def xyah_to_box(xyah: Tensor) -> Tensor:
    """(..., 4) centre x, centre y, aspect, height -> (..., 4) x0, y0, x1, y1."""
    x, y, a, h = xyah.unbind(-1)
    half_w, half_h = a * h / 2, h / 2
    return torch.stack((x - half_w, y - half_h, x + half_w, y + half_h), -1)


def initiate(z: Tensor) -> Tuple[Tensor, Tensor]:
    """A new track from a measured box ``z`` (S, 4) xyah: mean (S, 8) (zero velocity) and
    diagonal covariance (S, 8, 8)."""
    h = z[:, 3]
    std = torch.cat((_height_std(h, 2 * STD_POSITION, STD_ASPECT_INIT),
                     _height_std(h, 10 * STD_VELOCITY, STD_ASPECT_VEL_INIT)), -1)  # (S, 8)
    mean = torch.cat((z, torch.zeros_like(z)), -1)
    return mean, torch.diag_embed(std * std)


def predict(mean: Tensor, cov: Tensor) -> Tuple[Tensor, Tensor]:
    """One time step of constant-velocity motion: x += v, P = F P F^T + Q, with the process
    noise Q set from the height before the step."""
    h = mean[:, 3]
    std = torch.cat((_height_std(h, STD_POSITION, STD_ASPECT_MOTION),
                     _height_std(h, STD_VELOCITY, STD_ASPECT_VEL_MOTION)), -1)  # (S, 8)
    pos, vel = mean[:, :4], mean[:, 4:]
    mean = torch.cat((pos + vel, vel), -1)
    # F = [[I, I], [0, I]]: F P F^T in 4 x 4 blocks.
    pp, pv, vp, vv = cov[:, :4, :4], cov[:, :4, 4:], cov[:, 4:, :4], cov[:, 4:, 4:]
    top = torch.cat((pp + pv + vp + vv, pv + vv), -1)
    bottom = torch.cat((vp + vv, vv), -1)
    cov = torch.cat((top, bottom), -2) + torch.diag_embed(std * std)
    return mean, cov


def project(mean: Tensor, cov: Tensor) -> Tuple[Tensor, Tensor]:
    """The state in measurement space: mean (S, 4) and the DIAGONAL of the innovation
    covariance H P H^T + R (S, 4) (the whole matrix is diagonal, see the module doc)."""
    std = _height_std(mean[:, 3], STD_POSITION, STD_ASPECT_MEASURE)  # (S, 4)
    return mean[:, :4], torch.diagonal(cov[:, :4, :4], dim1=-2, dim2=-1) + std * std


def update(mean: Tensor, cov: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
    """Correct the state with a measured box ``z`` (S, 4) xyah: K = P H^T S^-1,
    x += K (z - H x), P -= K S K^T (S diagonal)."""
    z_mean, s = project(mean, cov)  # (S, 4), (S, 4)
    gain = cov[:, :, :4] / s[:, None, :]  # (S, 8, 4)
    mean = mean + (gain * (z - z_mean)[:, None, :]).sum(-1)
    cov = cov - ((gain * s[:, None, :])[:, :, None, :] * gain[:, None, :, :]).sum(-1)  # (S, 8, 8)
    return mean, cov


def box_iou(box: Tensor, boxes: Tensor) -> Tensor:
    """SAMURAI's IoU between each slot's predicted box (S, 4) and its candidates' boxes
    (S, M, 4), all x0, y0, x1, y1: areas are (x1 - x0) (y1 - y0) (no +1); a candidate box
    (0, 0, 0, 0) (an empty mask, see :func:`sam2_ros.step.memory_selection.mask_boxes`)
    scores 0, and so does a zero union."""
    a = box[:, None, :]
    iw = (torch.minimum(a[..., 2], boxes[..., 2]) - torch.maximum(a[..., 0], boxes[..., 0])).clamp_min(0)
    ih = (torch.minimum(a[..., 3], boxes[..., 3]) - torch.maximum(a[..., 1], boxes[..., 1])).clamp_min(0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    union = area_a + area_b - inter
    zero = (boxes == 0).all(-1) | (union == 0)
    return torch.where(zero, torch.zeros_like(inter), inter / torch.where(zero, torch.ones_like(union), union))
