"""The SAM 2 model: image encoder, prompt encoder + mask decoder, memory attention and
memory encoder, and the small learned tensors that glue them (no-memory embeddings,
object pointers, temporal encodings).

This module only computes; who remembers what, and for how long, is the tracker's business
(``sam2_ros.tracking.tracker``). Each method documents the step of SAM 2 (arXiv:2408.00714) it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP, per_row
from .config import SAM2Config
from .decoder import MaskDecoder, PromptEncoder, select_masks
from .hiera import Hiera
from .image_encoder import ImageEncoder
from .memory import MemoryAttention, MemoryEncoder
from .position_encoding import sine_encoding_1d

# Logit written where the object-score head says "no object": far below any threshold.
NO_OBJ_SCORE = -1024.0
# Logit scale and bias used when a binary mask is taken as the model's own output.
MASK_AS_OUTPUT_SCALE, MASK_AS_OUTPUT_BIAS = 20.0, -10.0


@dataclass
class ImageFeatures:
    """One encoded batch of frames."""

    feat: Tensor  # (B, C, h, w) stride-16 features, before any memory
    pos: Tensor  # (B, C, h, w) their sine position encoding
    high_res: List[Tensor]  # [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)], projected for the decoder

    def select(self, index: Union[Tensor, slice, int]) -> "ImageFeatures":
        """The features of some images of the batch (e.g. one frame repeated per object)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ImageFeatures(self.feat[index], self.pos[index], [x[index] for x in self.high_res])

    def expand(self, batch: int) -> "ImageFeatures":
        """A view of a single frame's features repeated for ``batch`` objects (no copy)."""
        return ImageFeatures(
            self.feat.expand(batch, -1, -1, -1), self.pos.expand(batch, -1, -1, -1),
            [x.expand(batch, -1, -1, -1) for x in self.high_res],
        )

    def to(self, device: torch.device | str) -> "ImageFeatures":
        return ImageFeatures(self.feat.to(device), self.pos.to(device), [x.to(device) for x in self.high_res])


@dataclass
class MaskPrediction:
    """What one decoding step produces for a batch of objects."""

    low_res_multimasks: Tensor  # (B, M, 4h, 4w) logits, M = 3 or 1
    ious: Tensor  # (B, M)
    low_res_masks: Tensor  # (B, 1, 4h, 4w) the chosen mask
    high_res_masks: Tensor  # (B, 1, S, S) the chosen mask at input resolution
    obj_ptr: Tensor  # (B, C) object pointer for later frames
    object_score_logits: Tensor  # (B, 1)
    selection: Any = None  # what predict_masks' ``select`` said besides the index (SAMURAI: its choice)


# Picks each row's kept candidate among its upsampled candidates (B, M, S, S) with their
# predicted IoUs (B, M): (index (B,), anything the caller wants back in MaskPrediction.selection).
Select = Callable[[Tensor, Tensor], Tuple[Tensor, Any]]


class SAM2(nn.Module):
    """SAM 2 / 2.1 built from a :class:`SAM2Config`; parameter names match Meta's checkpoints."""

    def __init__(self, cfg: SAM2Config) -> None:
        super().__init__()
        self.cfg = cfg
        c, m = cfg.d_model, cfg.mem_dim
        self.image_encoder = self.build_image_encoder(cfg)
        self.memory_attention = self.build_memory_attention(cfg)
        self.memory_encoder = MemoryEncoder(c, m)
        self.sam_prompt_encoder = PromptEncoder(c, cfg.image_size, cfg.feat_size, cfg.mask_in_chans)
        self.sam_mask_decoder = MaskDecoder(c, cfg.decoder_depth, cfg.decoder_heads, cfg.decoder_mlp_dim)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        if cfg.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(c, m)
        # Downsamples a full-resolution mask prompt to the decoder's mask-input size.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))

    @staticmethod
    def build_image_encoder(cfg: SAM2Config) -> nn.Module:
        """Hiera + FPN neck (EdgeTAM overrides it with RepViT)."""
        return ImageEncoder(Hiera(cfg.hiera), cfg.hiera.channel_list, cfg.d_model)

    @staticmethod
    def build_memory_attention(cfg: SAM2Config) -> nn.Module:
        """Memory attention whose keys share the queries' RoPE table (EdgeTAM's do not)."""
        return MemoryAttention(cfg.d_model, cfg.mem_dim, cfg.memory_attention_layers, cfg.memory_attention_ffn,
                               cfg.feat_size, cfg.rope_theta)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    # ------------------------------------------------------------------ image
    def encode_image(self, images: Tensor) -> ImageFeatures:
        """Normalized images (B, 3, S, S) -> features for the decoder and the memory."""
        (s4, s8, s16), pos = self.image_encoder(images)
        dec = self.sam_mask_decoder
        return ImageFeatures(s16, pos, [dec.conv_s0(s4), dec.conv_s1(s8)])

    def image_embedding(self, feats: ImageFeatures) -> Tensor:
        """Stride-16 features of a frame with no memory (single images, first frames)."""
        return feats.feat + self.no_mem_embed.view(1, -1, 1, 1)  # (B, C, h, w)

    # ---------------------------------------------------------------- decoder
    def use_multimask(self, num_points: int) -> bool:
        """SAM 2 answers with 3 candidates only for ambiguous prompts (0 or 1 click)."""
        return self.cfg.multimask_min_pt_num <= num_points <= self.cfg.multimask_max_pt_num

    def decode(
        self,
        embedding: Tensor,
        high_res: List[Tensor],
        coords: Optional[Tensor],
        labels: Optional[Tensor],
        mask_input: Optional[Tensor],
        multimask: Union[bool, Tensor],
        has_mask: Optional[Tensor] = None,
        point_mask: Optional[Tensor] = None,
    ):
        """Prompt encoder + mask decoder.

        Args:
            embedding: (B|1, C, h, w) frame embedding (memory-conditioned or with no_mem_embed).
            coords, labels: (B, N, 2) pixels in the model's S x S frame and (B, N) labels
                (1 fg, 0 bg, 2/3 box corners); None: no sparse prompt at all.
            mask_input: (B, 1, 4h, 4w) mask logits, or None.
            multimask: one choice for the batch, or (B,) bool per row (static batches).
            has_mask: (B,) bool, the rows whose ``mask_input`` is a prompt (None: all).
            point_mask: (B, N + 1) bool, the valid point tokens (the appended padding point
                included); None: all.
        Returns:
            (masks (B, M, 4h, 4w), ious (B, M), tokens (B, M, C), object_score_logits (B, 1));
            M = 1 when ``multimask`` is a tensor (the rows' own choices, as 1 mask each).
        """
        sparse, dense = self.sam_prompt_encoder(coords, labels, mask_input, has_mask)
        out = self.sam_mask_decoder(embedding, self.sam_prompt_encoder.dense_pe(), sparse, dense, high_res, point_mask)
        cfg = self.cfg
        choose = lambda multi: select_masks(  # noqa: E731
            out, multi, cfg.dynamic_multimask_via_stability, cfg.dynamic_multimask_stability_delta,
            cfg.dynamic_multimask_stability_thresh,
        )
        if not isinstance(multimask, Tensor):
            masks, ious, tokens = choose(multimask)
            return masks, ious, tokens, out.object_score_logits
        # Per row: the best of the three candidates, or the (stability-checked) single mask.
        multi, single = choose(True), choose(False)
        best = multi[1].argmax(-1)  # (B,)
        rows = torch.arange(best.shape[0], device=best.device)
        pick = multimask.view(-1, 1)
        masks = torch.where(pick[:, :, None, None], multi[0][rows, best][:, None], single[0])  # (B, 1, 4h, 4w)
        ious = torch.where(pick, multi[1][rows, best][:, None], single[1])  # (B, 1)
        tokens = torch.where(pick[:, :, None], multi[2][rows, best][:, None], single[2])  # (B, 1, C)
        return masks, ious, tokens, out.object_score_logits

    def predict_masks(
        self,
        embedding: Tensor,
        high_res: List[Tensor],
        coords: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        mask_input: Optional[Tensor] = None,
        multimask: Union[bool, Tensor] = False,
        has_mask: Optional[Tensor] = None,
        point_mask: Optional[Tensor] = None,
        present_above: float = 0.0,
        select: Optional[Select] = None,
    ) -> MaskPrediction:
        """One video-model decoding step: decode, blank absent objects, pick the best
        candidate, upsample it to S x S, and make the object pointer.

        ``multimask``, ``has_mask`` and ``point_mask`` may be per-row tensors (see
        :meth:`decode`): the static frame step decodes a batch of differently prompted objects
        in one call; the chosen mask is then already picked inside :meth:`decode`.

        ``present_above``: an object is present (its mask kept, its own pointer) where its
        object-score logit is above this (SAM 2: 0; SAMURAI: -1). ``select``: who picks among
        three candidates (SAMURAI's motion-aware choice, ``sam2_ros.step.memory_selection``);
        None: the highest predicted IoU."""
        if coords is None:
            # The video model always sends at least one (padding) point.
            b = mask_input.shape[0] if mask_input is not None else embedding.shape[0]
            coords = embedding.new_zeros(b, 1, 2, dtype=torch.float32)
            labels = torch.full((b, 1), -1, dtype=torch.int32, device=embedding.device)
        if mask_input is not None and mask_input.shape[-1] != self.sam_prompt_encoder.mask_input_size:
            size = self.sam_prompt_encoder.mask_input_size
            mask_input = F.interpolate(mask_input.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        masks, ious, tokens, obj_logits = self.decode(embedding, high_res, coords, labels, mask_input, multimask,
                                                      has_mask, point_mask)
        present = obj_logits > present_above  # (B, 1)
        masks = torch.where(present[:, :, None, None], masks, NO_OBJ_SCORE).float()  # (B, M, 4h, 4w)
        s = self.cfg.image_size
        # Every candidate is upsampled, then the best one picked, as upstream does: upsampling
        # one plane instead of three rounds differently with one CPU thread.
        highs = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)  # (B, M, S, S)
        selection = None
        if not isinstance(multimask, Tensor) and multimask:
            best, selection = (ious.argmax(-1), None) if select is None else select(highs, ious)  # (B,)
            rows = torch.arange(best.shape[0], device=best.device)
            low, high = masks[rows, best][:, None], highs[rows, best][:, None]  # (B, 1, 4h, 4w), (B, 1, S, S)
            token = tokens[rows, best]  # (B, C)
        else:
            low, high, token = masks, highs, tokens[:, 0]
        ptr = self._object_pointer(per_row(self.obj_ptr_proj, token), present)
        return MaskPrediction(masks, ious, low, high, ptr, obj_logits, selection)

    def _object_pointer(self, ptr: Tensor, present: Tensor) -> Tensor:
        """Absent objects get the learned no-object pointer instead of their own."""
        p = present.to(ptr.dtype)  # (B, 1)
        return p * ptr + (1 - p) * self.no_obj_ptr

    def mask_as_output(self, feats: ImageFeatures, masks: Tensor, present_above: float = 0.0) -> MaskPrediction:
        """A mask prompt is taken as the answer itself (its logits +/-10); only the object
        pointer comes from the decoder, prompted with the downsampled mask (``present_above``
        as :meth:`predict_masks`)."""
        m = masks.float()  # (B, 1, S, S)
        high = m * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS
        size = high.shape[-1] // 4
        low = F.interpolate(high, size=(size, size), mode="bilinear", align_corners=False, antialias=True)  # (B, 1, S/4, S/4)
        # The pointer is decoded from the raw frame features (no memory, no no_mem_embed).
        ptr = self.predict_masks(feats.feat, feats.high_res, mask_input=self.mask_downsample(m), present_above=present_above).obj_ptr
        present = m.flatten(1).gt(0).any(1, keepdim=True)  # (B, 1)
        obj_logits = present.float() * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS
        # The decoder's gating already replaced absent pointers; empty masks must be absent too.
        ptr = self._object_pointer(ptr, present)
        return MaskPrediction(low, m.new_ones(m.shape[0], 1), low, high, ptr, obj_logits)

    # ----------------------------------------------------------------- memory
    def condition_on_memory(
        self, feats: ImageFeatures, memory: Tensor, memory_pos: Tensor, num_ptr_tokens: int,
        memory_mask: Optional[Tensor] = None,
        memory_rope: Optional[Tensor] = None,
        prefix: Optional[Tensor] = None,
    ) -> Tensor:
        """Memory attention: (B, C, h, w) frame features attend to (B, M, C_mem) memory tokens
        (spatial memories first, then ``num_ptr_tokens`` object-pointer tokens); ``memory_mask``
        (B, M) bool marks the valid ones (None: all), ``memory_rope`` (B, M) the spatial ones
        when rows differ (None: all but the pointer tokens); ``prefix``: this frame's
        :meth:`memory_prefix`, shared by objects conditioned one at a time."""
        b, c, h, w = feats.feat.shape
        x = feats.feat.flatten(2).transpose(1, 2)  # (B, hw, C)
        x_pos = feats.pos.flatten(2).transpose(1, 2)  # (B, hw, C)
        x = self.memory_attention(x, x_pos, memory, memory_pos, num_ptr_tokens, memory_mask, memory_rope, prefix)
        return x.transpose(1, 2).reshape(b, c, h, w)

    def memory_prefix(self, feats: ImageFeatures) -> Tensor:
        """The frame's share of memory attention, the same for every object: (B, hw, C) tokens
        after the first layer's self-attention (~10 GMACs at 1024 px: a fifth of EdgeTAM's
        memory attention for one object, 3 % of tiny's)."""
        x = feats.feat.flatten(2).transpose(1, 2)  # (B, hw, C)
        return self.memory_attention.frame_prefix(x, feats.pos.flatten(2).transpose(1, 2))

    def encode_memory(
        self, feat: Tensor, high_res_masks: Tensor, object_score_logits: Tensor, binarize: Union[bool, Tensor] = False
    ) -> tuple[Tensor, Tensor]:
        """Memory of a frame: features (B|1, C, h, w) fused with each object's mask (B, 1, S, S).

        ``binarize`` (per object) thresholds masks that came from clicks, so the memory holds
        exactly what the user saw; otherwise the logits are squashed by a sigmoid. Absent
        objects get the learned no-object embedding (SAM 2.1).
        Returns memory features and their position encoding, both (B, C_mem, h, w).
        """
        cfg = self.cfg
        # Upstream gives the memory encoder a view of its sequence-first (hw, B, C) features.
        # oneDNN picks its 1x1-conv kernel by strides (even a unit batch's), and memories are
        # stored in bfloat16, which turns a last-bit difference into a visible one: the same
        # view gives the same bits.
        feat = feat.flatten(2).permute(2, 0, 1).permute(1, 2, 0).view(feat.shape)
        soft = torch.sigmoid(high_res_masks)
        if isinstance(binarize, Tensor):
            mask = torch.where(binarize.view(-1, 1, 1, 1), (high_res_masks > 0).to(soft.dtype), soft)
        else:
            mask = (high_res_masks > 0).to(soft.dtype) if binarize else soft
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        mem, pos = self.memory_encoder(feat, mask)
        if cfg.no_obj_embed_spatial:
            absent = (object_score_logits <= 0).to(mem.dtype)  # (B, 1)
            mem = mem + absent[:, :, None, None] * self.no_obj_embed_spatial[:, :, None, None]
        return mem, pos

    @property
    def memory_tokens_per_frame(self) -> int:
        """T: tokens one memory frame of one object holds (h*w for SAM 2; 512 for EdgeTAM)."""
        return self.cfg.feat_size**2

    def memory_positions(self) -> Tensor:
        """(T, C_mem) positions of one memory frame's tokens (before its temporal encoding)."""
        h = self.cfg.feat_size
        return self.memory_encoder.position_encoding.grid(h, h, self.device).flatten(2).transpose(1, 2)[0]

    def memory_as_tokens(self, memory: Tensor) -> Tensor:
        """:meth:`encode_memory`'s memories as tokens: (B, C_mem, h, w) -> (B, T, C_mem)."""
        return memory.flatten(2).transpose(1, 2)

    def memory_tpos(self, frames_back: int) -> Tensor:
        """Temporal encoding (1, 1, C_mem) of a memory from ``frames_back`` frames ago;
        0 means a conditioning (prompted) frame, whatever its age."""
        index = self.cfg.num_maskmem - 1 if frames_back == 0 else frames_back - 1
        return self.maskmem_tpos_enc[index].view(1, 1, -1)

    def pointer_tokens(self, ptrs: Tensor, t_diffs: Tensor, max_ptrs: int) -> tuple[Tensor, Tensor]:
        """Object pointers (B, P, C) with their frame offsets (B, P) -> memory tokens.

        Each C-wide pointer is split into C/C_mem tokens of width C_mem so it fits in the
        memory bank; all pieces share the pointer's temporal encoding.
        Returns tokens and position encodings, both (B, P * C/C_mem, C_mem).
        """
        cfg = self.cfg
        b, p, c = ptrs.shape
        m = cfg.mem_dim
        if cfg.add_tpos_enc_to_obj_ptrs:
            # Offsets are normalized by the largest one the bank can hold.
            pos = sine_encoding_1d(t_diffs.flatten() / (max_ptrs - 1), c if cfg.proj_tpos_enc_in_obj_ptrs else m)
            pos = pos.view(b, p, -1).to(ptrs.dtype)
            if cfg.proj_tpos_enc_in_obj_ptrs:
                # Per object, as upstream: see per_row.
                pos = per_row(lambda row: self.obj_ptr_tpos_proj(row[0])[None], pos)  # (B, P, C_mem)
        else:
            pos = ptrs.new_zeros(b, p, m)
        split = c // m
        tokens = ptrs.reshape(b, p * split, m)  # (B, P*split, C_mem)
        pos = pos.to(ptrs.dtype).repeat_interleave(split, dim=1)  # (B, P*split, C_mem)
        return tokens, pos
