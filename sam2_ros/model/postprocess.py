"""Mask post-processing that SAM 2's official predictors apply on GPU builds (small holes
and islands), done with OpenCV so that it runs everywhere."""

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
    holes = torch.from_numpy(small_regions((logits <= 0).squeeze(1).cpu().numpy(), max_area))  # (B, h, w)
    return torch.where(holes.to(logits.device)[:, None], torch.full_like(logits, HOLE_FILL_LOGIT), logits)


def small_regions(binary: np.ndarray, max_area: int) -> np.ndarray:
    """(N, h, w) bool -> (N, h, w) bool: the pixels of 8-connected regions of at most
    ``max_area`` pixels (the semantics of SAM 2's CUDA connected-components kernel)."""
    out = np.zeros_like(binary, dtype=bool)
    for i, image in enumerate(binary.astype(np.uint8)):
        _, labels, stats, _ = cv2.connectedComponentsWithStats(image, connectivity=8)
        small = stats[:, cv2.CC_STAT_AREA] <= max_area  # per label; label 0 is the other side
        small[0] = False
        out[i] = small[labels]
    return out
