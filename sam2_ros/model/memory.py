"""SAM 2's memory: the encoder that turns (frame features, predicted mask) into a memory,
and the attention that conditions the current frame on the memory bank."""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Attention, LayerNorm2d
from .position_encoding import SineEncoding2d, apply_rope, axial_rope_tables


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary position embedding on queries and keys.

    Keys may hold several frames' worth of spatial tokens (the same rotation tables tiled)
    followed by ``num_k_exclude_rope`` object-pointer tokens that have no position. The keys
    use the queries' table unless ``key_tables`` (cos, sin), each (T, d/2), give them their
    own, tiled every T keys (EdgeTAM: a memory frame's 512 perceiver latents).
    """

    def __init__(self, dim: int, num_heads: int, feat_size: int, kv_in_dim: int | None = None, theta: float = 10000.0,
                 key_tables: Tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__(dim, num_heads, kv_in_dim=kv_in_dim)
        cos, sin = axial_rope_tables(self.head_dim, feat_size, feat_size, theta)
        # Non-persistent: the tables follow the image size, not the checkpoint.
        self.register_buffer("rope_cos", cos, persistent=False)  # (hw, d/2)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.own_key_tables = key_tables is not None
        if self.own_key_tables:
            self.register_buffer("rope_k_cos", key_tables[0], persistent=False)  # (T, d/2)
            self.register_buffer("rope_k_sin", key_tables[1], persistent=False)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0, key_mask: Tensor | None = None,
                key_rope: Tensor | None = None) -> Tensor:
        """``key_rope`` (B, Nk) bool, instead of ``num_k_exclude_rope``: which keys are spatial
        (rotated, the first of them by table row 0); the static step's rows differ."""
        q, k, v = self.project(q, k, v)  # (B, h, N, d)
        q = apply_rope(q, self.rope_cos, self.rope_sin)
        k_cos, k_sin = (self.rope_k_cos, self.rope_k_sin) if self.own_key_tables else (self.rope_cos, self.rope_sin)
        n_rope = k.shape[-2] - num_k_exclude_rope
        if key_rope is not None:
            n, rows = k.shape[-2], k_cos.shape[0]
            reps = -(-n // rows)
            cos, sin = k_cos.repeat(reps, 1)[:n], k_sin.repeat(reps, 1)[:n]  # (Nk, d/2)
            k = torch.where(key_rope[:, None, :, None], apply_rope(k, cos, sin), k)
        elif num_k_exclude_rope:
            k = torch.cat((apply_rope(k[:, :, :n_rope], k_cos, k_sin), k[:, :, n_rope:]), dim=2)
        else:
            k = apply_rope(k, k_cos, k_sin)
        return self.attend(q, k, v, key_mask)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: RoPE self-attention, RoPE cross-attention to the memory, ReLU FFN."""

    def __init__(self, d_model: int, mem_dim: int, ffn_dim: int, feat_size: int, theta: float,
                 key_tables: Tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, 1, feat_size, theta=theta)
        self.cross_attn_image = RoPEAttention(d_model, 1, feat_size, kv_in_dim=mem_dim, theta=theta, key_tables=key_tables)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def self_block(self, x: Tensor) -> Tensor:
        """The self-attention half-block (B, hw, C) -> (B, hw, C): the frame's tokens alone."""
        y = self.norm1(x)
        return x + self.self_attn(y, y, y)

    def forward(self, x: Tensor, memory: Tensor, memory_pos: Tensor, num_ptr_tokens: int,
                memory_mask: Tensor | None = None, memory_rope: Tensor | None = None, self_done: bool = False) -> Tensor:
        """``self_done``: ``x`` is already :meth:`self_block`'s output."""
        if not self_done:
            x = self.self_block(x)
        # Queries carry no additive position here (RoPE gives it); keys do.
        x = x + self.cross_attn_image(self.norm2(x), memory + memory_pos, memory, num_k_exclude_rope=num_ptr_tokens,
                                      key_mask=memory_mask, key_rope=memory_rope)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """``key_tables``: the memory keys' own RoPE tables (see :class:`RoPEAttention`)."""

    def __init__(self, d_model: int, mem_dim: int, num_layers: int, ffn_dim: int, feat_size: int, theta: float,
                 key_tables: Tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, mem_dim, ffn_dim, feat_size, theta, key_tables) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def frame_prefix(self, x: Tensor, x_pos: Tensor) -> Tensor:
        """What every object computes alike from the frame, before any memory: the first
        layer's self-attention, (B, hw, C) -> (B, hw, C). Objects run one at a time share it
        (the same inputs give the same bits); :meth:`forward` takes it as ``prefix``."""
        return self.layers[0].self_block(x + 0.1 * x_pos)

    def forward(self, x: Tensor, x_pos: Tensor, memory: Tensor, memory_pos: Tensor, num_ptr_tokens: int = 0,
                memory_mask: Tensor | None = None, memory_rope: Tensor | None = None,
                prefix: Tensor | None = None) -> Tensor:
        """x, x_pos (B, hw, C) current frame; memory, memory_pos (B, M, C_mem) -> (B, hw, C).
        ``memory_mask`` (B, M) bool marks the valid memory tokens (None: all); ``memory_rope``
        (B, M) bool the spatial ones, per row (None: all but the last ``num_ptr_tokens``);
        ``prefix``: :meth:`frame_prefix` of x, x_pos, computed once for several calls."""
        x = self.frame_prefix(x, x_pos) if prefix is None else prefix
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_ptr_tokens, memory_mask, memory_rope, self_done=layer is self.layers[0])
        return self.norm(x)


class MaskDownSampler(nn.Module):
    """Mask (B, 1, S, S) -> (B, C, S/16, S/16) by four stride-2 convs (channels x4 each)."""

    def __init__(self, embed_dim: int = 256, total_stride: int = 16) -> None:
        super().__init__()
        layers, c_in = [], 1
        for _ in range(int(math.log2(total_stride))):
            c_out = c_in * 4
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), LayerNorm2d(c_out), nn.GELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Fuse frame features with the (already squashed) mask into a compact memory map."""

    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.position_encoding = SineEncoding2d(out_dim)

    def forward(self, pix_feat: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        """pix_feat (B|1, C, h, w), mask (B, 1, 16h, 16w) -> memory (B, C_mem, h, w) and its position encoding.

        Objects on one frame share its features: pass them once (batch 1) and the projection
        runs once, broadcast over the objects' masks.
        """
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)  # (B, C, h, w)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
