"""RepViT-M1 (Wang et al., arXiv:2307.09283), the image trunk of EdgeTAM.

A mobile CNN laid out like a ViT: every block mixes tokens with a 3x3 depthwise conv (plus
a parallel 1x1 depthwise branch and the identity, "RepVGG" style), optionally reweights
channels (squeeze-excite, every other block), then mixes channels with a 2-layer pointwise
MLP. A stem of two stride-2 convs reaches stride 4; stages 2-4 each start by halving the
resolution. Every conv is followed by BatchNorm (inference: a fixed affine map).

Module names follow timm's ``repvit_m1`` as EdgeTAM builds it (``features_only``, which names
the stages ``stages_0`` .. ``stages_3``), so the trunk keys of ``edgetam.pt`` load as they are.
:meth:`RepViT.fuse` folds each BatchNorm (and each block's three token-mixing branches) into
one conv after loading: the same function, fewer passes over memory.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RepViTConfig


class ConvNorm(nn.Module):
    """Conv (no bias) + BatchNorm, 'same' padding."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.c(x))

    @torch.no_grad()
    def fused(self) -> nn.Conv2d:
        """One conv computing ``bn(c(x))`` with the running statistics."""
        c, bn = self.c, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        conv = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups,
                         device=c.weight.device)
        conv.weight.copy_(c.weight * scale[:, None, None, None])
        conv.bias.copy_(bn.bias - bn.running_mean * scale)
        return conv


class TokenMixer(nn.Module):
    """3x3 depthwise conv + 1x1 depthwise conv + identity, summed (timm's legacy RepVggDw)."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, dim, kernel, groups=dim)
        self.conv1 = ConvNorm(dim, dim, 1, groups=dim)
        self.fused_conv: nn.Conv2d | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.fused_conv is not None:
            return self.fused_conv(x)
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the three branches into one depthwise conv: the 1x1 and the identity are
        3x3 kernels that are zero except at the centre."""
        conv, conv1 = self.conv.fused(), self.conv1.fused()
        k = conv.kernel_size[0]
        centre = F.pad(conv1.weight + 1.0, [(k - 1) // 2] * 4)  # (C, 1, k, k)
        conv.weight.add_(centre)
        conv.bias.add_(conv1.bias)
        self.fused_conv = conv
        del self.conv, self.conv1


class SqueezeExcite(nn.Module):
    """Channel gates from the global mean: sigmoid(fc2(relu(fc1(mean))))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class ConvMlp(nn.Module):
    """Pointwise MLP: expand by ``ratio``, GELU, project back."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden)
        self.act = nn.GELU()
        self.conv2 = ConvNorm(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(x)))


def _se_width(dim: int, ratio: float) -> int:
    """timm's rounding of the squeeze width to a multiple of 8 (never below 8)."""
    return max(8, int(dim * ratio + 4) // 8 * 8)


class Block(nn.Module):
    """Token mixer, optional squeeze-excite, then a residual channel MLP."""

    def __init__(self, dim: int, cfg: RepViTConfig, use_se: bool) -> None:
        super().__init__()
        self.token_mixer = TokenMixer(dim, cfg.kernel_size)
        self.se = SqueezeExcite(dim, _se_width(dim, cfg.se_ratio)) if use_se else nn.Identity()
        self.channel_mixer = ConvMlp(dim, dim * cfg.mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.channel_mixer(x)


class Downsample(nn.Module):
    """Block, stride-2 depthwise conv, pointwise widening, residual MLP: (B, C, H, W) ->
    (B, C', H/2, W/2)."""

    def __init__(self, dim: int, dim_out: int, cfg: RepViTConfig) -> None:
        super().__init__()
        self.pre_block = Block(dim, cfg, use_se=False)
        self.spatial_downsample = ConvNorm(dim, dim, cfg.kernel_size, stride=2, groups=dim)
        self.channel_downsample = ConvNorm(dim, dim_out)
        self.ffn = ConvMlp(dim_out, dim_out * cfg.mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        return x + self.ffn(x)


class Stage(nn.Module):
    def __init__(self, dim: int, dim_out: int, depth: int, cfg: RepViTConfig, downsample: bool) -> None:
        super().__init__()
        if downsample:
            self.downsample = Downsample(dim, dim_out, cfg)
        # Squeeze-excite on the 1st, 3rd, ... block of every stage.
        self.blocks = nn.Sequential(*(Block(dim_out, cfg, use_se=i % 2 == 0) for i in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        return self.blocks(x)


class Stem(nn.Module):
    """Two 3x3 stride-2 convs with a GELU between: (B, 3, S, S) -> (B, C, S/4, S/4)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, dim // 2, 3, stride=2)
        self.act1 = nn.GELU()
        self.conv2 = ConvNorm(dim // 2, dim, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.act1(self.conv1(x)))


class _Body(nn.Module):
    def __init__(self, cfg: RepViTConfig) -> None:
        super().__init__()
        dims = cfg.embed_dims
        self.stem = Stem(dims[0])
        for i, depth in enumerate(cfg.depths):
            self.add_module(f"stages_{i}", Stage(dims[max(i - 1, 0)], dims[i], depth, cfg, downsample=i > 0))


class RepViT(nn.Module):
    """The trunk: (B, 3, S, S) -> the four stage outputs, finest first: (B, C_i, S/4/2^i, ...)."""

    def __init__(self, cfg: RepViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = _Body(cfg)  # timm's feature wrapper sits at ``trunk.body`` in the checkpoint

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.body.stem(x)  # (B, C_0, S/4, S/4)
        outs = []
        for i in range(len(self.cfg.depths)):
            x = getattr(self.body, f"stages_{i}")(x)  # (B, C_i, S/4/2^i, ...)
            outs.append(x)
        return outs

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold every BatchNorm into its conv and every token mixer into one conv (in place;
        the state dict then no longer has the checkpoint's layout)."""
        for module in list(self.modules()):
            if isinstance(module, TokenMixer):
                module.fuse()
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, ConvNorm):
                    setattr(parent, name, child.fused())
