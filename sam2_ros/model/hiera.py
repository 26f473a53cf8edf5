"""Hiera image trunk (Ryali et al., arXiv:2306.00989) as SAM 2 uses it (its FPN neck: image_encoder.py).

Tokens stay in (B, H, W, C) layout through the trunk. Most blocks attend inside
non-overlapping windows; a few "global" blocks attend over the whole map. The first block of
stages 2-4 max-pools its queries by 2x2, halving the resolution and doubling the width.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP
from .config import HieraConfig


def _pool(x: Tensor, stride: Tuple[int, int]) -> Tensor:
    """2x2 max-pool of a (B, H, W, C) map."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


def window_partition(x: Tensor, ws: int, fill: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[int, int]]:
    """(B, H, W, C) -> (B * nWin, ws, ws, C), padding H and W up to multiples of ws with
    ``fill`` (C,) (zeros by default)."""
    b, h, w, c = x.shape
    ph, pw = (-h) % ws, (-w) % ws
    if ph or pw:
        fill = x.new_zeros(c) if fill is None else fill.to(x.dtype)
        if pw:
            x = torch.cat([x, fill.expand(b, h, pw, c)], dim=2)
        if ph:
            x = torch.cat([x, fill.expand(b, ph, w + pw, c)], dim=1)
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(x: Tensor, grid: Tuple[int, int], size: Tuple[int, int]) -> Tensor:
    """(B * nWin, ws, ws, C) windows in a row-major ``grid`` (rows, columns) -> (B, H, W, C),
    the padding cropped to ``size``. Contiguous, because a linear layer reads a strided view
    with another kernel, which rounds differently from SAM 2's."""
    (gh, gw), (_, ws, _, c) = grid, x.shape
    x = x.view(-1, gh, gw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, gh * ws, gw * ws, c)
    return x[:, : size[0], : size[1]].contiguous()


class MultiScaleAttention(nn.Module):
    """Self-attention, inside windows or global, whose queries may be pooled (so the output
    is coarser than the input)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: Optional[Tuple[int, int]]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor, ws: int) -> Tensor:  # x: (B, H, W, C), ws: window (0: global)
        h, w = x.shape[1:3]
        # Only real tokens are projected. SAM 2 zero-pads the normed input up to whole windows
        # and projects the padding too, whose q, k and v are then exactly the bias: so the
        # windows are padded with the bias after the projection instead (at 256 px this skips
        # 2/3 of the qkv projection of the windowed stride-16 blocks; a linear layer's rows do
        # not depend on how many there are). Attention, though, runs on whole windows as in
        # SAM 2: the CPU kernel's result for a query depends on how many queries share its
        # call (differently on AVX2 and AVX-512), so only SAM 2's shapes give SAM 2's bits.
        qkv = self.qkv(x)  # (B, H, W, 3 * C_out)
        if ws > 0:
            qkv, (hp, wp) = window_partition(qkv, ws, fill=self.qkv.bias)  # (B*nWin, ws, ws, 3*C_out)
        n, qh, qw = qkv.shape[:3]
        q, k, v = qkv.view(n, qh * qw, 3, self.num_heads, -1).unbind(2)  # (n, L, heads, d) each
        if self.q_stride:
            sh, sw = self.q_stride
            q = _pool(q.reshape(n, qh, qw, -1), self.q_stride)  # (n, qh/2, qw/2, heads*d)
            qh, qw, h, w = qh // sh, qw // sw, h // sh, w // sw
        q = q.reshape(n, qh * qw, self.num_heads, -1)  # (n, L_q, heads, d)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(n, qh, qw, -1)  # (n, qh, qw, C_out)
        if ws > 0:
            # Pooling shrinks each window, not the grid of windows.
            out = window_unpartition(out, (hp // ws, wp // ws), (h, w))  # (B, H', W', C_out)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block; with ``q_stride`` it also downsamples (pooled shortcut)."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        window_size: int,
        q_stride: Optional[Tuple[int, int]],
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C)
        shortcut = x
        x = self.norm1(x)
        if hasattr(self, "proj"):
            # The width changes here: the residual is projected from the normed input.
            shortcut = self.proj(x)
            if self.q_stride:
                shortcut = _pool(shortcut, self.q_stride)
        x = shortcut + self.attn(x, self.window_size)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution from pixels to tokens."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, S/4, S/4, C)


class Hiera(nn.Module):
    """The trunk: returns the last block of each stage, finest first, as (B, C, H, W) maps."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        # A coarse background embedding, resized to the grid, plus one window-sized pattern
        # tiled over it ("absolute-win" position embedding of Hiera / SAM 2).
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, cfg.window_spec[0], cfg.window_spec[0]))
        ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        self.stage_ends = ends
        pool_blocks = [e + 1 for e in ends[:-1]][: cfg.q_pool]
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        self.blocks = nn.ModuleList()
        for i in range(sum(cfg.stages)):
            # A downsampling block still uses the previous stage's window on its input.
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in ends:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            self.blocks.append(
                MultiScaleBlock(dim, dim_out, heads, window, cfg.q_stride if i in pool_blocks else None, cfg.mlp_ratio)
            )
            dim = dim_out

    def _pos_embed(self, h: int, w: int) -> Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")  # (1, C, h, w)
        win = self.pos_embed_window
        pos = pos + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        return pos.permute(0, 2, 3, 1)  # (1, h, w, C)

    def forward(self, x: Tensor) -> List[Tensor]:  # x: (B, 3, S, S)
        x = self.patch_embed(x)  # (B, S/4, S/4, C)
        x = x + self._pos_embed(x.shape[1], x.shape[2])
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.stage_ends:
                outs.append(x.permute(0, 3, 1, 2))  # (B, C_i, S/4/2^i, ...)
        return outs
