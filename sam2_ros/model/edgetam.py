"""EdgeTAM (Zhou et al., CVPR 2025, arXiv:2501.07256): SAM 2 for devices.

The same per-frame steps as :class:`~sam2_ros.model.sam2.SAM2` (it subclasses it; the prompt
encoder, mask decoder, memory encoder, object pointers and temporal encodings are SAM 2.0's),
with three parts replaced:

* image trunk: RepViT-M1 (``repvit.py``) under SAM 2's FPN neck;
* memory: after SAM 2's memory encoder, a 2-D spatial perceiver (``perceiver.py``) turns each
  memory frame's (C_mem, h, w) map into ``T = 512`` tokens: 256 global latents (position
  zero, never rotated), then 256 2-D latents on a 16 x 16 grid (sine position, rotated);
* memory attention: 2 layers; its cross-attention rotates the queries with the (h, w) table
  of the frame and each memory frame's 2-D latents with a 16 x 16 table. The global latents
  take identity rows (cos 1, sin 0) of a (T, d/2) key table, which leaves them exactly as
  they are, so a memory frame is T tokens laid out like a SAM 2 frame's h*w ones and the key
  table simply repeats every T tokens.

What a memory bank holds per object and memory frame is therefore ``T x C_mem`` tokens (the
perceiver's output, stored like SAM 2's in bfloat16), and their positions are one constant
(T, C_mem) table (:meth:`EdgeTAM.memory_positions`) plus the frame's temporal encoding.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor, nn

from .common import per_row
from .config import EdgeTAMConfig
from .image_encoder import ImageEncoder
from .memory import MemoryAttention
from .perceiver import SpatialPerceiver
from .position_encoding import axial_rope_tables
from .repvit import RepViT
from .sam2 import SAM2


def perceiver_key_tables(cfg: EdgeTAMConfig, head_dim: int) -> Tuple[Tensor, Tensor]:
    """(T, d/2) cos and sin for one memory frame's keys: identity rows for the global
    latents, then the 2-D latents' grid x grid axial table."""
    g, n = cfg.perceiver.grid, cfg.perceiver.num_latents
    cos, sin = axial_rope_tables(head_dim, g, g, cfg.rope_theta)  # (G*G, d/2)
    cos = torch.cat((torch.ones(n, cos.shape[1]), cos))  # (T, d/2)
    sin = torch.cat((torch.zeros(n, sin.shape[1]), sin))
    return cos, sin


class EdgeTAM(SAM2):
    """EdgeTAM built from an :class:`EdgeTAMConfig`; parameter names match ``edgetam.pt``."""

    cfg: EdgeTAMConfig

    def __init__(self, cfg: EdgeTAMConfig) -> None:
        super().__init__(cfg)
        self.spatial_perceiver = SpatialPerceiver(cfg.mem_dim, cfg.perceiver)

    @staticmethod
    def build_image_encoder(cfg: EdgeTAMConfig) -> nn.Module:
        return ImageEncoder(RepViT(cfg.repvit), cfg.repvit.channel_list, cfg.d_model)

    @staticmethod
    def build_memory_attention(cfg: EdgeTAMConfig) -> nn.Module:
        # One head: the key tables are as wide as the model.
        tables = perceiver_key_tables(cfg, cfg.d_model)
        return MemoryAttention(cfg.d_model, cfg.mem_dim, cfg.memory_attention_layers, cfg.memory_attention_ffn,
                               cfg.feat_size, cfg.rope_theta, key_tables=tables)

    def fuse(self) -> "EdgeTAM":
        """Fold the trunk's BatchNorms and token-mixer branches into single convs (after
        loading; about 1e-6 relative from the unfused numbers). Returns self."""
        self.image_encoder.trunk.fuse()
        return self

    # ----------------------------------------------------------------- memory
    @property
    def memory_tokens_per_frame(self) -> int:
        """T: tokens one memory frame of one object holds (512)."""
        return self.cfg.perceiver.tokens

    def encode_memory(
        self, feat: Tensor, high_res_masks: Tensor, object_score_logits: Tensor, binarize: Union[bool, Tensor] = False
    ) -> tuple[Tensor, Tensor]:
        """Memory of a frame: SAM 2's memory map of each object's mask (see
        :meth:`SAM2.encode_memory`), compressed by the spatial perceiver.

        Returns tokens and positions, both (B, T, C_mem); the positions are the same for
        every frame and object (:meth:`memory_positions`).
        """
        mem, pos = super().encode_memory(feat, high_res_masks, object_score_logits, binarize)  # (B, C_mem, h, w)
        # Per object on the CPU (see per_row): a row's tokens do not depend on the batch.
        tokens = per_row(lambda rows: self.spatial_perceiver(rows, pos[: rows.shape[0]])[0], mem)  # (B, T, C_mem)
        return tokens, self.memory_positions().to(tokens.dtype).expand(tokens.shape[0], -1, -1)

    def memory_positions(self) -> Tensor:
        """(T, C_mem) positions of one memory frame's tokens (before its temporal encoding)."""
        return self.spatial_perceiver.positions(self.device)

    def memory_as_tokens(self, memory: Tensor) -> Tensor:
        """:meth:`encode_memory`'s output is already (B, T, C_mem) tokens."""
        return memory
