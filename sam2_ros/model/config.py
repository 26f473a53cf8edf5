"""Frozen configurations of the SAM 2 / SAM 2.1 model family and of EdgeTAM.

One dataclass describes one released checkpoint layout. The numbers are the architecture
facts of Meta's published model cards and configs (Hiera sizes from the Hiera paper,
arXiv:2306.00989; SAM 2 heads from arXiv:2408.00714; EdgeTAM from arXiv:2501.07256 and its
released config); everything that is not a weight lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Tuple

SAM2_SIZES = ("tiny", "small", "base_plus", "large")  # the Hiera sizes of SAM 2 / 2.1
EDGETAM = "edgetam"  # EdgeTAM (arXiv:2501.07256): RepViT-M1 trunk, spatial perceiver memory
MODEL_NAMES = SAM2_SIZES + (EDGETAM,)
VERSIONS = ("2.1", "2.0")


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk: a 4-stage hierarchical ViT with windowed and a few global blocks."""

    embed_dim: int = 96  # channels of stage 1; doubles at every stage
    num_heads: int = 1  # heads of stage 1; doubles at every stage
    stages: Tuple[int, ...] = (1, 2, 7, 2)  # blocks per stage
    global_att_blocks: Tuple[int, ...] = (5, 7, 9)  # block indices with full attention
    window_spec: Tuple[int, ...] = (8, 4, 14, 7)  # window size per stage
    window_pos_embed_bkg_spatial_size: Tuple[int, int] = (7, 7)
    q_pool: int = 3  # the first block of stages 2..4 halves the resolution
    q_stride: Tuple[int, int] = (2, 2)
    mlp_ratio: float = 4.0

    @property
    def channel_list(self) -> Tuple[int, ...]:
        """Output channels per stage, deepest first (the order the FPN neck consumes)."""
        return tuple(self.embed_dim * 2**i for i in reversed(range(len(self.stages))))


@dataclass(frozen=True)
class SAM2Config:
    """Everything that shapes a SAM 2 model except its weights."""

    name: str = "tiny"
    version: str = "2.1"
    image_size: int = 1024
    hiera: HieraConfig = field(default_factory=HieraConfig)
    d_model: int = 256  # neck / decoder / memory-attention width
    mem_dim: int = 64  # memory-encoder output width
    backbone_stride: int = 16
    # memory
    num_maskmem: int = 7  # 1 conditioning slot + 6 previous frames
    max_obj_ptrs: int = 16
    memory_attention_layers: int = 4
    memory_attention_ffn: int = 2048
    rope_theta: float = 10000.0
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # SAM 2.1 additions (absent from 2.0 checkpoints)
    no_obj_embed_spatial: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    # decoder
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    # When a single mask is asked for and it is unstable, fall back to the best of the three
    # multimask outputs (what Meta's builders switch on for inference).
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # Multimask output only for 0 or 1 clicks: more clicks are unambiguous.
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1

    def __post_init__(self) -> None:
        check_image_size(self.image_size, self.hiera)

    @property
    def feat_size(self) -> int:
        """Side of the stride-16 feature map the decoder and memory attention work on."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's mask logits (stride 4)."""
        return self.image_size // 4


def check_image_size(image_size: int, hiera: HieraConfig) -> None:
    """Refuse image sizes the Hiera trunk cannot run at, saying which sizes work."""
    if not isinstance(image_size, int) or image_size < 64:
        raise ValueError(f"image_size must be an integer >= 64, got {image_size!r}")
    if image_size % 32:
        raise ValueError(
            f"image_size={image_size} is not a multiple of 32; SAM 2's backbone downsamples by 32. "
            f"Try {max(64, round(image_size / 32) * 32)} (1024 is the native size, 512 the fast mode)."
        )
    # The windowed position embedding is tiled over the stride-4 grid, so that grid must
    # be a whole number of first-stage windows.
    if (image_size // 4) % hiera.window_spec[0]:
        step = 4 * hiera.window_spec[0]
        raise ValueError(
            f"image_size={image_size} must be a multiple of {step} for this Hiera trunk "
            f"(stride-4 grid in whole {hiera.window_spec[0]}x{hiera.window_spec[0]} windows)."
        )


_HIERA = {
    "tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9)),
    "small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13)),
    "base_plus": HieraConfig(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "large": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
}

# Users say "b+" and "base-plus" as often as "base_plus"; the official files say "t", "s", "l".
_ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "base+": "base_plus", "base-plus": "base_plus", "l": "large"}


def normalize_model_name(model: str) -> str:
    """Map a user-facing model name to one of :data:`MODEL_NAMES`, or raise with the choices."""
    key = str(model).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    return key


def sam2_config(model: str = "tiny", image_size: int = 1024, version: str = "2.1", **overrides) -> SAM2Config:
    """Build the frozen config of a released model size.

    Args:
        model: tiny, small, base_plus or large (aliases t, s, b+, l accepted).
        image_size: input side in pixels; a multiple of 32 (1024 native, 512 fast).
        version: "2.1" (default) or "2.0"; 2.0 checkpoints lack the 2.1 object-pointer
            temporal projection and the spatial no-object embedding.
        **overrides: any other :class:`SAM2Config` field (e.g. ``num_maskmem``).
    """
    name = normalize_model_name(model)
    if name == EDGETAM:
        raise ValueError("model 'edgetam' has its own configuration: use edgetam_config()")
    if version not in VERSIONS:
        raise ValueError(f"unknown SAM 2 version {version!r}; choose one of {', '.join(VERSIONS)}")
    cfg = SAM2Config(name=name, version=version, image_size=image_size, hiera=_HIERA[name])
    if version == "2.0":
        cfg = replace(
            cfg,
            no_obj_embed_spatial=False,
            proj_tpos_enc_in_obj_ptrs=False,
            use_signed_tpos_enc_to_obj_ptrs=False,
            add_tpos_enc_to_obj_ptrs=False,
        )
    return replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------- EdgeTAM


@dataclass(frozen=True)
class RepViTConfig:
    """RepViT trunk (arXiv:2307.09283); the defaults are RepViT-M1, EdgeTAM's."""

    embed_dims: Tuple[int, ...] = (48, 96, 192, 384)  # channels per stage (strides 4, 8, 16, 32)
    depths: Tuple[int, ...] = (2, 2, 14, 2)  # blocks per stage, after its downsampling block
    mlp_ratio: int = 2  # channel-MLP expansion
    kernel_size: int = 3  # depthwise token-mixing kernel
    se_ratio: float = 0.25  # squeeze-excite width (rounded to a multiple of 8)

    @property
    def channel_list(self) -> Tuple[int, ...]:
        """Output channels per stage, deepest first (the order the FPN neck consumes)."""
        return tuple(reversed(self.embed_dims))


@dataclass(frozen=True)
class PerceiverConfig:
    """EdgeTAM's 2-D spatial perceiver: compresses a (C_mem, h, w) memory map to
    ``num_latents`` global latents + ``grid * grid`` windowed ones."""

    num_latents: int = 256  # global latents: each attends to the whole map
    grid: int = 16  # 2-D latents: one per cell of a grid x grid partition of the map
    depth: int = 2
    ff_mult: int = 4

    @property
    def tokens(self) -> int:
        """Memory tokens per frame and object."""
        return self.num_latents + self.grid * self.grid


@dataclass(frozen=True)
class EdgeTAMConfig(SAM2Config):
    """EdgeTAM: SAM 2's prompt encoder, mask decoder and memory encoder (as in SAM 2.0: no
    object-pointer temporal encoding, no spatial no-object embedding), a RepViT-M1 trunk, a
    spatial perceiver after the memory encoder, and 2 memory-attention layers whose
    cross-attention rotates only the perceiver's 2-D latents (by their 16 x 16 grid cell).

    ``hiera`` is inherited and unused."""

    name: str = EDGETAM
    version: str = "2.0"
    repvit: RepViTConfig = field(default_factory=RepViTConfig)
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)
    memory_attention_layers: int = 2
    no_obj_embed_spatial: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False

    def __post_init__(self) -> None:
        check_edgetam_image_size(self.image_size, self.perceiver.grid)


def check_edgetam_image_size(image_size: int, grid: int = 16) -> None:
    """Refuse sizes EdgeTAM cannot run at. Its position tables (sine encodings, the memory
    attention's RoPE of the stride-16 map, the prompt encoder's) are rebuilt for any size;
    what fixes the size is the perceiver, which cuts the stride-16 memory map into
    grid x grid equal windows: the side must be a multiple of 16 * grid pixels."""
    step = 16 * grid
    if not isinstance(image_size, int) or image_size < step or image_size % step:
        near = max(step, round(image_size / step) * step) if isinstance(image_size, int) else 1024
        raise ValueError(
            f"EdgeTAM cannot run at image_size={image_size!r}: its spatial perceiver splits the "
            f"stride-16 memory map into {grid} x {grid} equal windows, so the size must be a multiple of "
            f"{step} pixels. Try {near} (1024 is the native size, 512 the fast mode)."
        )


def edgetam_config(image_size: int = 1024, **overrides) -> EdgeTAMConfig:
    """The frozen config of EdgeTAM (the released ``edgetam.pt``).

    Args:
        image_size: input side in pixels, a multiple of 256 (1024 native).
        **overrides: any other :class:`EdgeTAMConfig` field (e.g. ``num_maskmem``).
    """
    return EdgeTAMConfig(image_size=image_size, **overrides)
