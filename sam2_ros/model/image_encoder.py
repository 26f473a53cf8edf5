"""The image encoder around a trunk: the FPN neck and the stride-16 position encoding.

SAM 2 puts it around Hiera (``hiera.py``), EdgeTAM around RepViT-M1 (``repvit.py``); the
neck and its weights' names are the same for both.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .position_encoding import SineEncoding2d


class FpnNeck(nn.Module):
    """Project every stage to d_model; the two coarsest levels also receive the
    nearest-upsampled coarser level (top-down), the two finest are plain projections."""

    def __init__(self, d_model: int, channel_list: Tuple[int, ...], top_down_levels: Tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        # convs[0] projects the deepest stage, as in the released checkpoints.
        self.convs = nn.ModuleList()
        for c in channel_list:
            seq = nn.Sequential()
            seq.add_module("conv", nn.Conv2d(c, d_model, kernel_size=1))
            self.convs.append(seq)
        self.top_down_levels = top_down_levels

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        """Stage maps finest first -> d_model maps finest first (same resolutions)."""
        n = len(xs) - 1
        out: List[Optional[Tensor]] = [None] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                up = F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
                prev = lateral + up.to(lateral.dtype)
            else:
                prev = lateral
            out[i] = prev
        return out  # type: ignore[return-value]


class ImageEncoder(nn.Module):
    """Trunk + FPN neck. Returns the stride 4, 8 and 16 maps (the stride-32 level only
    feeds the top-down path and is dropped, as SAM 2 does) and the stride-16 position encoding.

    ``trunk`` maps (B, 3, S, S) images to its four stage outputs, finest first;
    ``channel_list`` their widths, deepest first."""

    def __init__(self, trunk: nn.Module, channel_list: Tuple[int, ...], d_model: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.neck = FpnNeck(d_model, channel_list)
        self.position_encoding = SineEncoding2d(d_model)

    def forward(self, x: Tensor) -> Tuple[List[Tensor], Tensor]:
        feats = self.neck(self.trunk(x))[:-1]  # strides 4, 8, 16: (B, C, S/4..S/16, ...)
        return feats, self.position_encoding(feats[-1])  # pos: (B, C, S/16, S/16)
