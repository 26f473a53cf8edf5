"""Frames in, model input out, and logits back to the frame: all in torch on the model's device."""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# ImageNet statistics, which SAM 2's encoder was trained with.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)

ImageLike = Union[np.ndarray, Tensor]


def check_image(image: ImageLike, what: str = "image") -> Tuple[int, int]:
    """Validate an H x W x 3 uint8 RGB image and return (H, W); raise ValueError saying what is wrong."""
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{what} must be an H x W x 3 RGB array, got shape {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {shape}")
    dtype = image.dtype
    if dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"{what} must be uint8 (0-255), got {dtype}; convert with .astype(np.uint8)")
    return shape[0], shape[1]


def to_model_input(images: Sequence[ImageLike], image_size: int, device: torch.device | str) -> Tensor:
    """Resize (bilinear, antialiased) and normalize uint8 RGB frames to (B, 3, S, S) float32.

    The uint8 frame is moved to the device first, so on a GPU the resize runs there and only
    a quarter of the float bytes cross the bus.
    """
    batch = []
    for image in images:
        check_image(image)
        t = torch.as_tensor(image).to(device, non_blocking=True)
        t = t.permute(2, 0, 1)[None].float().div_(255.0)  # (1, 3, H, W)
        if t.shape[-2:] != (image_size, image_size):
            t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        batch.append(t)
    x = torch.cat(batch)  # (B, 3, S, S)
    mean = torch.tensor(PIXEL_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def to_frame_resolution(logits: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinearly resize (B, M, h, w) logits to the frame's (H, W)."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def frame_to_model_coords(points: Tensor, frame_hw: Tuple[int, int], image_size: int) -> Tensor:
    """(..., 2) x, y pixels of a frame -> pixels of the model's S x S input."""
    h, w = frame_hw
    size = torch.tensor([w, h], dtype=torch.float32, device=points.device)
    return points.float() / size * image_size


def mask_to_model(mask: np.ndarray, image_size: int, device: torch.device | str) -> Tensor:
    """An (H, W) bool mask prompt -> a (1, 1, S, S) float binary mask, resized (bilinear,
    antialiased, then thresholded at 0.5) as upstream resizes mask prompts."""
    m = torch.from_numpy(mask).to(device, torch.float32)[None, None]  # (1, 1, H, W)
    if m.shape[-2:] != (image_size, image_size):
        m = F.interpolate(m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        m = (m >= 0.5).float()
    return m
