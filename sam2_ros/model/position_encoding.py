"""Position encodings used by SAM 2.

* 2-D sine encoding of feature maps (DETR style, normalized to [0, 2*pi]) for the neck and
  the memory encoder.
* Random Fourier features of pixel coordinates for prompts (SAM's prompt encoder).
* 1-D sine encoding of temporal offsets for object pointers.
* Axial rotary embeddings (RoPE) for memory attention, written with real cos/sin tables
  instead of complex numbers so the graph exports to ONNX and TensorRT.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
from torch import Tensor, nn


def _sine_freqs(num_feats: int, temperature: float, device: torch.device) -> Tensor:
    # Channel pairs (2i, 2i+1) share one frequency: one gets sin, the other cos.
    idx = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)  # (F,)


def _interleave_sin_cos(angles: Tensor) -> Tensor:
    # (..., F) angles -> (..., F) as [sin a0, cos a1, sin a2, cos a3, ...]
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


class SineEncoding2d(nn.Module):
    """Fixed 2-D sine encoding of an (H, W) grid, ``dim`` channels (half for y, half for x).

    It has no weights; results are cached per (H, W, device) because every frame asks for
    the same grids.
    """

    def __init__(self, dim: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"sine encoding needs an even width, got {dim}")
        self.half = dim // 2
        self.temperature = temperature
        self._cache: Dict[Tuple[int, int, str], Tensor] = {}

    @torch.no_grad()
    def grid(self, h: int, w: int, device: torch.device) -> Tensor:
        """(1, dim, h, w) float32 encoding of an h x w grid."""
        key = (h, w, str(device))
        if key not in self._cache:
            eps, scale = 1e-6, 2 * math.pi
            # Positions 1..n normalized so the last row/column sits at 2*pi.
            y = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + eps) * scale  # (h,)
            x = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + eps) * scale  # (w,)
            freqs = _sine_freqs(self.half, self.temperature, device)
            pos_y = _interleave_sin_cos(y[:, None] / freqs)[:, None, :].expand(h, w, self.half)  # (h, w, F)
            pos_x = _interleave_sin_cos(x[:, None] / freqs)[None, :, :].expand(h, w, self.half)  # (h, w, F)
            self._cache[key] = torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1)[None].contiguous()
        return self._cache[key]

    def forward(self, x: Tensor) -> Tensor:
        """Encoding for a (B, C, H, W) map: (B, dim, H, W) in the map's dtype."""
        return self.grid(x.shape[-2], x.shape[-1], x.device).to(x.dtype).expand(x.shape[0], -1, -1, -1)


class RandomFourierEncoding(nn.Module):
    """Encode 2-D coordinates in [0, 1] with fixed random Gaussian frequencies (SAM's ``pe_layer``)."""

    def __init__(self, num_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords01: Tensor) -> Tensor:
        """(..., 2) normalized x, y -> (..., 2 * num_feats)."""
        proj = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix  # (..., F)
        proj = 2 * math.pi * proj
        return torch.cat((proj.sin(), proj.cos()), dim=-1)

    def dense(self, h: int, w: int) -> Tensor:
        """(1, C, h, w) encoding of the centres of an h x w grid."""
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        x = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        return self.encode(grid).permute(2, 0, 1)[None]  # (1, C, h, w)

    def points(self, coords: Tensor, image_size: int) -> Tensor:
        """(B, N, 2) pixel x, y in the model's input frame -> (B, N, C)."""
        return self.encode(coords.float() / image_size)


def sine_encoding_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """(N,) positions -> (N, dim) as [sin(p / f_i) ..., cos(p / f_i) ...] (not interleaved)."""
    freqs = _sine_freqs(dim // 2, temperature, positions.device)
    angles = positions.float()[:, None] / freqs  # (N, dim/2)
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


def axial_rope_tables(head_dim: int, h: int, w: int, theta: float = 10000.0, device=None) -> Tuple[Tensor, Tensor]:
    """cos and sin tables (h*w, head_dim/2) of 2-D axial RoPE.

    The first half of the rotation pairs turn with the token's column, the second half with
    its row, each with head_dim/4 frequencies theta^(-4k/head_dim).
    """
    if head_dim % 4:
        raise ValueError(f"axial RoPE needs a head width divisible by 4, got {head_dim}")
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 4, device=device)[: head_dim // 4].float() / head_dim)
    t = torch.arange(h * w, device=device)
    col = (t % w).float()
    row = torch.div(t, w, rounding_mode="floor").float()
    angles = torch.cat((torch.outer(col, freqs), torch.outer(row, freqs)), dim=-1)  # (h*w, d/2)
    # torch.polar's cos/sin kernels round differently from Tensor.cos/sin in the last bit;
    # using them keeps the tables bit-identical to upstream's complex ones. Built once, so
    # the exported graph only sees constant real tables.
    rot = torch.view_as_real(torch.polar(torch.ones_like(angles), angles))  # (h*w, d/2, 2)
    return rot[..., 0].contiguous(), rot[..., 1].contiguous()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of x (B, h, N, d) by the angles of (N', d/2) tables.

    N may be a multiple of N': memories of several frames share the same spatial tables,
    so the tables are tiled along the token axis.
    """
    n = x.shape[-2]
    if n != cos.shape[0]:
        reps = n // cos.shape[0]
        cos, sin = cos.repeat(reps, 1), sin.repeat(reps, 1)  # (N, d/2)
    xf = x.float()
    x0, x1 = xf[..., 0::2], xf[..., 1::2]  # (B, h, N, d/2) each
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)  # (B, h, N, d)
    return out.to(x.dtype)
