"""Mask post-processing that SAM 2's official video predictor applies on GPU builds."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

# Logit given to filled hole pixels: just above the 0 threshold, as upstream does.
HOLE_FILL_LOGIT = 0.1


def fill_small_holes(logits: Tensor, max_area: int) -> Tensor:
    """Turn background regions of at most ``max_area`` pixels (8-connected) into foreground.

    ``logits``: (B, 1, h, w) low-res mask logits. Meta's predictor does this with a CUDA
    extension (``fill_hole_area=8``) and silently skips it where the extension is missing,
    e.g. on every CPU install; here it runs everywhere, on the CPU with OpenCV, so it costs
    one device-to-host copy of the low-res masks when enabled.
    """
    if max_area <= 0:
        return logits
    background = (logits <= 0).squeeze(1).cpu().numpy().astype(np.uint8)  # (B, h, w)
    holes = np.zeros_like(background, dtype=bool)
    for i, bg in enumerate(background):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=8)
        small = np.zeros(n, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        holes[i] = small[labels]
    holes_t = torch.from_numpy(holes).to(logits.device)[:, None]
    return torch.where(holes_t, torch.full_like(logits, HOLE_FILL_LOGIT), logits)
