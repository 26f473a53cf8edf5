"""EdgeTAM's 2-D spatial perceiver: a memory map (B, C_mem, h, w) -> 512 memory tokens.

SAM 2 keeps every memory frame as h*w tokens (4096 at 1024 px); memory attention then costs
in proportion. EdgeTAM (arXiv:2501.07256, Sec. 3.2) compresses each frame with learned
queries instead:

* 256 global latents cross-attend to the whole map (whose keys and values carry its sine
  position encoding); their own position is zero.
* 256 2-D latents, one per cell of a 16 x 16 grid, each cross-attend only to the tokens of
  its cell (a (h/16) x (w/16) window), so the result is still a 16 x 16 map; its position is
  the sine encoding of that grid, and the memory attention rotates these latents by their
  cell (2-D RoPE on a 16 x 16 table).

Both groups share the layers: cross-attention, FFN, self-attention among the latents, FFN,
all pre-norm and residual; then one final LayerNorm. Parameter names follow ``edgetam.pt``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PerceiverConfig
from .position_encoding import SineEncoding2d


def _ffn(dim: int, mult: int) -> nn.Sequential:
    """Pre-norm feed-forward; indices 0, 1, 3 are the checkpoint's ``ff.{0,1,3}``."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class CrossAttention(nn.Module):
    """Latents attend to (normed) inputs, one head; ``pos`` is added to keys and values."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, latents: Tensor, x: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        """latents (N, L, C), x (N, T, C), pos (N, T, C) -> (N, L, C)."""
        q = self.to_q(self.norm_latents(latents))
        k, v = self.to_kv(self.norm_x(x)).chunk(2, dim=-1)  # (N, T, C) each
        if pos is not None:
            k, v = k + pos, v + pos
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (N, L, C)
        return self.to_out(out)


class SelfAttention(nn.Module):
    """Latents attend to each other, one head."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (N, L, C)
        x = self.norm(x)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        if x.shape[1] == 1:
            # One token attends only to itself: its softmax weight is exactly 1.
            return self.to_out(v)
        q = self.to_q(x)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return self.to_out(out)


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int, ff_mult: int) -> None:
        super().__init__()
        self.attn = CrossAttention(dim)
        self.ff = _ffn(dim, ff_mult)
        self.self_attn = SelfAttention(dim)
        self.self_ff = _ffn(dim, ff_mult)

    def forward(self, latents: Tensor, x: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        latents = latents + self.self_attn(latents)
        return latents + self.self_ff(latents)


class SpatialPerceiver(nn.Module):
    """Memory map (B, C, h, w) and its position encoding -> tokens and positions (B, L + G*G, C)."""

    def __init__(self, dim: int, cfg: PerceiverConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latents = nn.Parameter(torch.zeros(cfg.num_latents, dim))
        self.latents_2d = nn.Parameter(torch.zeros(cfg.grid * cfg.grid, dim))
        self.layers = nn.ModuleList(PerceiverLayer(dim, cfg.ff_mult) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim)
        self.position_encoding = SineEncoding2d(dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tuple[Tensor, Tensor]:
        """x, pos (B, C, h, w) -> tokens (B, L + G*G, C) and their positions (B, L + G*G, C)."""
        b, c, h, w = x.shape
        g = self.cfg.grid
        tokens = x.flatten(2).transpose(1, 2)  # (B, hw, C)
        glob = self.latents.expand(b, -1, -1)  # (B, L, C)
        pos_tokens = pos.flatten(2).transpose(1, 2)  # (B, hw, C)
        for layer in self.layers:
            glob = layer(glob, tokens, pos_tokens)
        # One window of (h/G) x (w/G) tokens per 2-D latent, windows in row-major grid order.
        wh, ww = h // g, w // g
        windows = x.permute(0, 2, 3, 1).reshape(b, g, wh, g, ww, c).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(b * g * g, wh * ww, c)  # (B*G*G, wh*ww, C)
        local = self.latents_2d.repeat(b, 1)[:, None]  # (B*G*G, 1, C)
        for layer in self.layers:
            local = layer(local, windows)
        local = local.view(b, g * g, c)  # (B, G*G, C)
        out = self.norm(torch.cat((glob, local), dim=1))  # (B, L + G*G, C)
        return out, self.positions(x.device).to(x.dtype).expand(b, -1, -1)

    def positions(self, device: torch.device) -> Tensor:
        """(L + G*G, C) the tokens' constant positions: zero for the global latents, the
        grid's sine encoding for the 2-D ones."""
        g, c = self.cfg.grid, self.latents.shape[1]
        grid_pos = self.position_encoding.grid(g, g, device).flatten(2).transpose(1, 2)[0]  # (G*G, C)
        return torch.cat((grid_pos.new_zeros(self.cfg.num_latents, c), grid_pos))
