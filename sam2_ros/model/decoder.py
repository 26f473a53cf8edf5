"""SAM's prompt encoder and two-way-transformer mask decoder, with SAM 2's additions:
an object-score token (is the object present at all?) and high-resolution skip features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .common import MLP, Attention, LayerNorm2d, per_row
from .position_encoding import RandomFourierEncoding

# Point labels understood by the prompt encoder.
LABEL_PAD, LABEL_NEG, LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Points (and box corners, as labels 2/3) to sparse tokens; a low-res mask to a dense map."""

    def __init__(self, embed_dim: int, image_size: int, feat_size: int, mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_size = image_size
        self.feat_size = feat_size
        self.mask_input_size = 4 * feat_size
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # One learned offset per label: negative, positive, box top-left, box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe: Optional[Tensor] = None

    def dense_pe(self) -> Tensor:
        """(1, C, h, w) positional encoding of the feature grid (constant: cached)."""
        pe = self._dense_pe
        if pe is None or pe.device != self.no_mask_embed.weight.device:
            pe = self._dense_pe = self.pe_layer.dense(self.feat_size, self.feat_size)
        return pe

    def embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """(B, N, 2) pixel coords in the model frame, (B, N) labels -> (B, N + 1, C).

        A padding point (label -1) is always appended: SAM 2 never passes a separate box
        (boxes arrive as labelled corner points), which is the case SAM pads.
        """
        b = coords.shape[0]
        coords = torch.cat((coords.float() + 0.5, coords.new_zeros(b, 1, 2, dtype=torch.float32)), dim=1)  # centre of pixel
        labels = torch.cat((labels, labels.new_full((b, 1), LABEL_PAD)), dim=1)  # (B, N+1)
        emb = self.pe_layer.points(coords, self.image_size)  # (B, N+1, C)
        lab = labels[..., None]
        emb = torch.where(lab == LABEL_PAD, self.not_a_point_embed.weight.to(emb.dtype).expand_as(emb), emb)
        for value, table in enumerate(self.point_embeddings):
            emb = torch.where(lab == value, emb + table.weight, emb)
        return emb

    def embed_mask(self, mask_logits: Optional[Tensor], batch: int, has_mask: Optional[Tensor] = None) -> Tensor:
        """(B, 1, 4h, 4w) mask logits (or None) -> (B, C, h, w) dense prompt.

        ``has_mask`` (B,) bool: which rows of ``mask_logits`` are prompts; the others get the
        no-mask embedding (a static batch mixing both).
        """
        no_mask = self.no_mask_embed.weight.view(1, -1, 1, 1).expand(batch, -1, self.feat_size, self.feat_size)
        if mask_logits is None:
            return no_mask
        dense = self.mask_downscaling(mask_logits)
        if has_mask is None:
            return dense
        return torch.where(has_mask[:, None, None, None], dense, no_mask.to(dense.dtype))

    def forward(
        self, coords: Optional[Tensor], labels: Optional[Tensor], mask_logits: Optional[Tensor] = None,
        has_mask: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Sparse (B, N + 1 | 0, C) and dense (B, C, h, w) prompts; no points gives no tokens."""
        if coords is None:
            b = mask_logits.shape[0] if mask_logits is not None else 1
            sparse = self.no_mask_embed.weight.new_zeros(b, 0, self.embed_dim)
            return sparse, self.embed_mask(mask_logits, b, has_mask)
        return self.embed_points(coords, labels), self.embed_mask(mask_logits, coords.shape[0], has_mask)


class TwoWayBlock(nn.Module):
    """Tokens attend to themselves and to the image; then the image attends to the tokens."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
                token_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """``token_mask`` (B, T) bool: the valid tokens (padding points of a static batch are
        never attended to; their own outputs are don't-cares)."""
        if self.skip_first_layer_pe:
            # The first block's tokens are the prompt embeddings themselves: no residual, no PE.
            queries = self.self_attn(queries, queries, queries, token_mask)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries, token_mask)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, queries + query_pe, queries, token_mask))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor,
                token_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """image, image_pe (B, C, h, w); tokens (B, T, C) -> tokens (B, T, C), image (B, hw, C)."""
        keys = image.flatten(2).transpose(1, 2)  # (B, hw, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)  # (B, hw, C)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe, token_mask)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


@dataclass
class DecoderOutput:
    """Raw decoder outputs for all 4 mask tokens (token 0 = single-mask output)."""

    masks: Tensor  # (B, 4, 4h, 4w) low-res mask logits
    iou: Tensor  # (B, 4) predicted IoU
    mask_tokens: Tensor  # (B, 4, C) output tokens (object pointers are made from them)
    object_score_logits: Tensor  # (B, 1) > 0: the object is present


class MaskDecoder(nn.Module):
    def __init__(self, dim: int = 256, depth: int = 2, heads: int = 8, mlp_dim: int = 2048, num_multimask: int = 3) -> None:
        super().__init__()
        self.num_mask_tokens = num_multimask + 1
        self.transformer = TwoWayTransformer(depth, dim, heads, mlp_dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        # 1x1 projections of the stride-4 and stride-8 backbone maps, added while upscaling.
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def forward(
        self,
        image: Tensor,
        image_pe: Tensor,
        sparse: Tensor,
        dense: Tensor,
        high_res: Sequence[Tensor],
        sparse_mask: Optional[Tensor] = None,
    ) -> DecoderOutput:
        """image (B or 1, C, h, w) is broadcast over the prompt batch when it has batch 1.

        Args:
            image_pe: (1, C, h, w); sparse: (B, T, C); dense: (B, C, h, w);
            high_res: the stride-4 (B|1, C/8, 4h, 4w) and stride-8 (B|1, C/4, 2h, 2w) maps,
                already projected by ``conv_s0`` / ``conv_s1``.
            sparse_mask: (B, T) bool, the valid sparse tokens (None: all).
        """
        b = sparse.shape[0]
        out_tokens = torch.cat((self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight), dim=0)
        tokens = torch.cat((out_tokens[None].expand(b, -1, -1), sparse), dim=1)  # (B, 2 + 4 + T, C)
        token_mask = None
        if sparse_mask is not None:
            token_mask = torch.cat((sparse_mask.new_ones(b, out_tokens.shape[0]), sparse_mask), dim=1)  # (B, 6 + T)
        src = image.expand(b, -1, -1, -1) + dense  # (B, C, h, w)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens, token_mask)
        obj_token, iou_token = hs[:, 0], hs[:, 1]
        mask_tokens = hs[:, 2 : 2 + self.num_mask_tokens]  # (B, 4, C)

        src = src.transpose(1, 2).reshape(b, c, h, w)
        feat_s0, feat_s1 = high_res
        up1, ln1, act1, up2, act2 = self.output_upscaling
        # Plain NCHW whatever the batch (a batch of one comes out of the transposed conv that
        # way, a larger batch channels-last): the LayerNorm's channel reduction then rounds the
        # same for one object as for many.
        x = (up1(src) + feat_s1).contiguous()
        x = act1(ln1(x))  # (B, C/4, 2h, 2w)
        x = act2(up2(x) + feat_s0)  # (B, C/8, 4h, 4w)

        hyper = torch.stack(
            [per_row(mlp, mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, 4, C/8)
        masks = (hyper @ x.flatten(2)).view(b, self.num_mask_tokens, 4 * h, 4 * w)  # (B, 4, 4h, 4w)
        iou = per_row(self.iou_prediction_head, iou_token)  # (B, 4)
        return DecoderOutput(masks, iou, mask_tokens, per_row(self.pred_obj_score_head, obj_token))


def stability_score(mask_logits: Tensor, delta: float) -> Tensor:
    """IoU between the masks thresholded at +delta and -delta: (..., H, W) -> (...)."""
    flat = mask_logits.flatten(-2)
    inter = (flat > delta).sum(-1).float()
    union = (flat > -delta).sum(-1).float()
    return torch.where(union > 0, inter / union, torch.ones_like(inter))


def select_masks(
    out: DecoderOutput,
    multimask: bool,
    dynamic_fallback: bool,
    delta: float = 0.05,
    thresh: float = 0.98,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Pick the decoder's answer: the 3 multimask outputs, or the single-mask output
    (replaced by the best multimask output where it is unstable, if ``dynamic_fallback``).

    Returns (masks (B, M, 4h, 4w), iou (B, M), tokens (B, M, C)) with M = 3 or 1.
    """
    if multimask:
        return out.masks[:, 1:], out.iou[:, 1:], out.mask_tokens[:, 1:]
    masks, iou, tokens = out.masks[:, :1], out.iou[:, :1], out.mask_tokens[:, :1]
    if dynamic_fallback:
        best = out.iou[:, 1:].argmax(-1)  # (B,)
        rows = torch.arange(best.shape[0], device=best.device)
        stable = stability_score(masks[:, 0], delta) >= thresh  # (B,)
        masks = torch.where(stable[:, None, None, None], masks, out.masks[rows, best + 1][:, None])
        iou = torch.where(stable[:, None], iou, out.iou[rows, best + 1][:, None])
    return masks, iou, tokens
