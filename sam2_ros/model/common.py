"""Small building blocks shared by the SAM 2 modules.

Attribute names (``layers``, ``q_proj`` ...) follow Meta's checkpoints, so their state dicts
load into these modules key for key.
"""

from __future__ import annotations

from typing import Optional, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (none after the last)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        activation: Type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


def per_row(fn, x: Tensor) -> Tensor:
    """Apply ``fn`` to each row of a (B, ...) batch separately on the CPU.

    CPU BLAS rounds a one-row product (a GEMV) differently from a B-row one, and SAM 2's
    memory is later rounded to bfloat16, which turns such last-bit differences into visible
    ones. Running the decoder's tiny per-object heads row by row keeps batched objects
    bit-identical to one-object runs (and to upstream, which runs objects one by one), for
    the price of a few 256-wide matmuls. On CUDA the batch runs as one.
    """
    if x.device.type == "cuda" or x.shape[0] == 1:
        return fn(x)
    return torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])])


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width (``downsample_rate``)
    and whose keys/values may come from a narrower input (``kv_in_dim``), as in SAM's decoder
    and SAM 2's memory cross-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        internal = embedding_dim // downsample_rate
        if internal % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the attention width {internal}")
        kv_in_dim = kv_in_dim or embedding_dim
        self.num_heads = num_heads
        self.head_dim = internal // num_heads
        self.q_proj = nn.Linear(embedding_dim, internal)
        self.k_proj = nn.Linear(kv_in_dim, internal)
        self.v_proj = nn.Linear(kv_in_dim, internal)
        self.out_proj = nn.Linear(internal, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)

    def project(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project and split into heads: (B, N, C) -> (B, h, N, d)."""
        return self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """Attention of already projected heads, then the output projection.

        ``key_mask`` (B, Nk) bool, True = attend: the static frame step pads memories and
        prompt points to fixed counts, and masked keys weigh exactly zero, so each row gets
        what it would get from its valid keys alone (up to summation order).
        """
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Nk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, Nq, d)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))  # (B, Nq, C)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        return self.attend(*self.project(q, k, v), key_mask=key_mask)
