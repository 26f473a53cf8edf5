"""The static frame step: one frame of tracking for every object slot, as pure tensor functions
with fixed shapes (no rclpy, no host synchronisation, no data-dependent Python control flow).

:func:`frame_step` takes the frame's image features, the bank (:class:`~sam2_ros.step.bank.BankState`)
and, on prompted frames, a :class:`PromptBatch`, and returns the new bank and every slot's
mask logits and object-score logit. Objects are the batch dimension; empty slots, empty bank
entries and padding points are masked, so each object gets what it would get alone (up to
summation order: the exact path, ``sam2_ros.tracking.tracker``, stays bit-identical to Meta's
predictor; this one is within float rounding of it, see ``test/test_frame_step.py``).

:func:`step_in_place` writes the new bank back into the bank's own tensors (what compiled
graphs and CUDA graphs need); :mod:`sam2_ros.step.compiled` compiles it, and
:mod:`sam2_ros.step.joint` runs several cameras' banks as one batch.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.build import autocast
from ..model.sam2 import MASK_AS_OUTPUT_BIAS, MASK_AS_OUTPUT_SCALE, SAM2, ImageFeatures, MaskPrediction
from . import samurai_step
from .bank import BankLayout, BankState

# PromptBatch.kind values
TRACKED, NEW_POINTS, CORRECTION, MASK = 0, 1, 2, 3


class PromptBatch(NamedTuple):
    """The prompts of one frame, one row per object slot (rows of unprompted slots are padding)."""

    kind: Tensor  # (S,) int64: TRACKED, NEW_POINTS (a new object), CORRECTION (points on a tracked one), MASK
    coords: Tensor  # (S, N, 2) float32 points in pixels of the model's S x S input
    labels: Tensor  # (S, N) int32: 1 fg, 0 bg, 2/3 box corners, -1 padding
    point_valid: Tensor  # (S, N + 1) bool: the tokens upstream would send (see PromptBatch.build)
    mask: Tensor  # (S, 1, Simg, Simg) float32 binary mask prompts (zeros elsewhere)
    multimask: Tensor  # (S,) bool: three candidates (0 or 1 click), else one mask
    cond: Tensor  # (S,) bool: the prompted frame becomes a conditioning frame


class StepTables(nn.Module):
    """Constants of the step, built once: the memories' spatial position encoding and the
    RoPE-free pieces the bank layout fixes."""

    def __init__(self, model: SAM2, layout: BankLayout) -> None:
        super().__init__()
        h = layout.feat_size
        # The model caches its constant encodings on first use. Fill those caches here, eagerly:
        # filled inside a compiled or exported graph they would hold that graph's rounding (or
        # a fake tensor), and every later eager call, the exact path's too, would use it.
        model.image_encoder.position_encoding.grid(h, h, model.device)
        model.memory_encoder.position_encoding.grid(h, h, model.device)  # EdgeTAM's memory_positions skips it
        with torch.no_grad():
            model.sam_prompt_encoder.dense_pe()
        mem_pos = model.memory_positions()  # (T, C_mem), also fills the model's caches
        self.register_buffer("mem_pos", mem_pos.contiguous(), persistent=False)


# ------------------------------------------------------------------------------ memory
def gather_memory(model: SAM2, layout: BankLayout, tables: StepTables, state: BankState
                  ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """What frame ``state.frame`` attends to, for every slot, in static shapes.

    Returns memory tokens and their positions (S, M, C_mem), the valid tokens (S, M) and the
    spatial (rotated) ones (S, M), M = (K + R) * hw + (K + P) * C / C_mem. Validity is what
    upstream selects for a frame after all the object's conditioning frames: the (at most K,
    the latest) conditioning frames, the recent frames 1..R back (with SAMURAI's memory
    selection: every frame its ring holds, see :mod:`~sam2_ros.step.samurai_step`), and the
    pointers of the conditioning frames and of the frames 1..P back.

    Each row holds its valid tokens first, in upstream's order (conditioning memories by
    frame, recent ones oldest first, then the conditioning frames' pointers and the recent
    ones newest first), and the padding after them: attention kernels then sum the valid
    keys in the same blocks as over an unpadded bank, which keeps the rounding (and what the
    bfloat16 memories make of it) close to the exact path's.
    """
    L, cfg = layout, model.cfg
    # () for one stream; (S,) when the slots of several cameras, each at its own frame, are
    # tracked as one batch (sam2_ros.step.joint)
    t = state.frame.reshape(-1, 1)  # (1, 1) or (S, 1)
    _, e, hw, cm = state.mem.shape
    big = 1 << 40  # above any frame index: sorts after every valid entry

    is_cond_mem = torch.arange(L.mem_entries, device=t.device) < L.cond  # (K + R,)
    back = t - state.mem_frame  # (S, K + R)
    # Recent memories: the last R frames, encoded by age; SAMURAI's: its ring's, by rank.
    recent, recent_tpos = (back >= 1) & (back <= L.recent), back - 1
    if L.samurai is not None:
        recent, recent_tpos = samurai_step.recent_memories(L, state.mem_frame)
    mem_valid = (state.mem_frame >= 0) & (is_cond_mem | recent)
    # Upstream keeps conditioning frames in the order they came while it has at most K of
    # them, and from then on selects them closest first (newest first, for a later frame).
    newest_first = (state.cond_seen > L.cond)[:, None]  # (S, 1)
    cond_order = torch.where(newest_first, -state.mem_frame, state.mem_frame)
    order = torch.where(mem_valid, torch.where(is_cond_mem, cond_order, big + state.mem_frame), 2 * big)
    perm = order.argsort(dim=1)  # (S, K + R) valid conditioning, valid recent, empty
    # Temporal encoding: the last slot for conditioning frames, slot back - 1 for recent ones.
    tpos_index = torch.where(is_cond_mem, cfg.num_maskmem - 1, recent_tpos.clamp(0, cfg.num_maskmem - 1)).gather(1, perm)
    tpos = model.maskmem_tpos_enc.view(cfg.num_maskmem, -1)[tpos_index]  # (S, K + R, C_mem)
    spatial = state.mem.gather(1, perm[:, :, None, None].expand(-1, -1, hw, cm)).flatten(1, 2).float()  # (S, (K + R) * hw, C_mem)
    spatial_pos = (tables.mem_pos[None, None] + tpos[:, :, None]).flatten(1, 2)  # (S, (K + R) * hw, C_mem)

    is_cond_ptr = torch.arange(L.ptr_entries, device=t.device) < L.cond  # (K + P,)
    offset = t - state.ptr_frame  # (S, K + P)
    ptr_valid = (state.ptr_frame >= 0) & (is_cond_ptr | ((offset >= 1) & (offset <= L.ptrs)))
    cond_order = torch.where(newest_first, -state.ptr_frame, state.ptr_frame)
    order = torch.where(ptr_valid, torch.where(is_cond_ptr, cond_order, big + offset), 2 * big)
    pperm = order.argsort(dim=1)  # (S, K + P)
    offset = torch.where(ptr_valid, offset, 0).gather(1, pperm).float()
    if not cfg.use_signed_tpos_enc_to_obj_ptrs:
        offset = offset.abs()
    ptrs = state.ptr.gather(1, pperm[:, :, None].expand(-1, -1, state.ptr.shape[-1]))
    tokens, tokens_pos = model.pointer_tokens(ptrs, offset, cfg.max_obj_ptrs)  # (S, (K + P) * split, C_mem)
    split = tokens.shape[1] // L.ptr_entries

    # Token j of a row: its j-th valid spatial token, then its valid pointer tokens, then padding.
    n_spatial = mem_valid.sum(1, keepdim=True) * hw  # (S, 1)
    n_valid = n_spatial + ptr_valid.sum(1, keepdim=True) * split
    m = e * hw + tokens.shape[1]
    j = torch.arange(m, device=t.device)[None]  # (1, M)
    source = torch.where(j < n_spatial, j, torch.where(j < n_valid, e * hw + j - n_spatial, j))  # (S, M)
    index = source[:, :, None].expand(-1, -1, cm)
    memory = torch.cat((spatial, tokens.to(spatial.dtype)), 1).gather(1, index)  # (S, M, C_mem)
    memory_pos = torch.cat((spatial_pos, tokens_pos.to(spatial.dtype)), 1).gather(1, index)
    valid = j < n_valid  # (S, M)
    # An empty slot (or a new object's, whose tracked output is discarded) attends to its first
    # token rather than to nothing, which would be 0/0.
    valid = valid | ((j == 0) & (n_valid == 0))
    return memory, memory_pos, valid, j < n_spatial


def write_memory(layout: BankLayout, state: BankState, mem: Tensor, ptr: Tensor, low_res: Tensor, score: Tensor,
                 cond: Tensor, place: Optional[Tensor] = None) -> BankState:
    """The bank after frame ``state.frame``: each active slot's new memory (S, hw, C_mem) and
    pointer (S, C) go to a conditioning entry (``cond``, per slot) or to the rings.

    A new conditioning frame takes an empty entry, else the oldest one's; the displaced frame
    then serves as a recent frame while it is one (as upstream uses conditioning frames it no
    longer selects), and the rings keep no entry of a conditioning frame (upstream keeps no
    unprompted output of a prompted frame). ``place`` (S,): the memory ring's entry of this
    frame (SAMURAI's, :func:`~sam2_ros.step.samurai_step.after_decode`); None: ``frame % R``.
    """
    L = layout
    t = state.frame
    rows = torch.arange(state.mem.shape[0], device=t.device)
    write = state.active
    cond = cond & write
    k = state.mem_frame[:, : L.cond].argmin(1)  # (S,) an empty entry (-1) first, else the oldest frame
    old = state.mem_frame[rows, k]  # (S,)
    evict = cond & (old >= 0)
    args = (L.cond, t, rows, k, old, evict, cond, write)
    mem_all, mem_frame = _write_entries(state.mem, state.mem_frame, mem, L.recent, *args, place=place)
    ptr_all, ptr_frame = _write_entries(state.ptr, state.ptr_frame, ptr, L.ptrs, *args)
    low_res = torch.where(_rows(write, low_res), low_res.float(), state.low_res)
    score = torch.where(_rows(write, score), score.float(), state.score)
    return state._replace(mem=mem_all, mem_frame=mem_frame, ptr=ptr_all, ptr_frame=ptr_frame, low_res=low_res,
                          score=score, cond_seen=state.cond_seen + cond.long(), frame=t + 1)


def _write_entries(values: Tensor, frames: Tensor, new: Tensor, ring: int, n_cond: int, t: Tensor, rows: Tensor,
                   k: Tensor, old: Tensor, evict: Tensor, cond: Tensor, write: Tensor,
                   place: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One table of the bank (memories or pointers: ``n_cond`` conditioning entries, then a
    ring of ``ring``) after this frame's writes; see :func:`write_memory`."""
    if place is not None:
        # SAMURAI's ring: the entry its memory test gave. It attends to no displaced
        # conditioning frame (no frame it scans is one), so none moves into the ring.
        now = n_cond + place
    else:
        dst = n_cond + old.clamp_min(0) % ring  # where the displaced conditioning frame sits in the ring
        # ... only while no later frame took its place (then it is out of the window anyway).
        move = evict & (frames[rows, dst] < old)
        values = values.index_put((rows, dst), torch.where(_rows(move, values[rows, k]), values[rows, k], values[rows, dst]))
        frames = frames.index_put((rows, dst), torch.where(move, old, frames[rows, dst]))
        now = (n_cond + t % ring).expand_as(rows)  # this frame's ring entry
    dst = torch.where(cond, k, now)
    values = values.index_put((rows, dst), torch.where(_rows(write, new), new.to(values.dtype), values[rows, dst]))
    frames = frames.index_put((rows, dst), torch.where(write, t, frames[rows, dst]))
    frames = frames.index_put((rows, now), torch.where(cond, -1, frames[rows, now]))
    return values, frames


def _rows(flag: Tensor, like: Tensor) -> Tensor:
    """(S,) per-slot flags shaped to broadcast over ``like`` (S, ...)."""
    return flag.view(-1, *([1] * (like.dim() - 1)))


# ------------------------------------------------------------------------------ the step
def track_pass(model: SAM2, layout: BankLayout, tables: StepTables, state: BankState, feats: ImageFeatures
               ) -> Tuple[Tensor, MaskPrediction]:
    """Every slot tracked from its memory: memory-conditioned features (S, C, h, w) and the
    decoder's answer without prompts."""
    memory, memory_pos, valid, rope = gather_memory(model, layout, tables, state)
    batch = feats.expand(layout.slots)
    # The frame's share of memory attention (the first self-attention) once, not once per slot
    # (for several cameras, feats already hold one row per slot).
    prefix = model.memory_prefix(feats).expand(layout.slots, -1, -1)  # (S, hw, C)
    pix = model.condition_on_memory(batch, memory, memory_pos, 0, valid, rope, prefix)  # (S, C, h, w)
    pred = model.predict_masks(pix, batch.high_res, multimask=model.use_multimask(0),
                               **samurai_step.decode_options(layout, state))
    return pix, pred


def prompt_pass(model: SAM2, feats: ImageFeatures, pix: Tensor, tracked: MaskPrediction, prompts: PromptBatch,
                present_above: float = 0.0) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every slot decoded with its prompt in one batch: new objects from the frame alone,
    corrections from their memory-conditioned features and tracked logits, masks taken as the
    answer. Returns (low-res logits (S, 1, 4h, 4w), object-score logits (S, 1), pointers (S, C),
    predicted IoUs of the kept masks (S,), 1 for masks). ``present_above``: as
    ``SAM2.predict_masks``."""
    kind = prompts.kind
    new, corr, is_mask = kind == NEW_POINTS, kind == CORRECTION, kind == MASK
    s = kind.shape[0]
    feat = feats.feat.expand(s, -1, -1, -1)
    emb = torch.where(_rows(corr, pix), pix, torch.where(_rows(new, pix), model.image_embedding(feats).to(pix.dtype), feat.to(pix.dtype)))
    # A mask prompt's pointer is decoded from the downsampled mask; a correction starts from
    # the tracked logits.
    mask_in = torch.where(_rows(corr, tracked.low_res_masks), tracked.low_res_masks.clamp(-32.0, 32.0),
                          model.mask_downsample(prompts.mask).to(tracked.low_res_masks.dtype))
    pred = model.predict_masks(emb, [x.expand(s, -1, -1, -1) for x in feats.high_res], prompts.coords, prompts.labels,
                               mask_in, prompts.multimask, has_mask=corr | is_mask, point_mask=prompts.point_valid,
                               present_above=present_above)
    # Mask prompts: the mask itself is the answer (logits +/-10), as SAM2.mask_as_output.
    high = prompts.mask * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS  # (S, 1, Simg, Simg)
    low_mask = F.interpolate(high, size=pred.low_res_masks.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    present = prompts.mask.flatten(1).gt(0).any(1, keepdim=True)  # (S, 1)
    m = is_mask[:, None]
    low = torch.where(m[:, :, None, None], low_mask, pred.low_res_masks)
    score = torch.where(m, present.float() * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS, pred.object_score_logits.float())
    ptr = torch.where(m, model._object_pointer(pred.obj_ptr, present), pred.obj_ptr)
    iou = torch.where(is_mask, torch.ones_like(pred.ious[:, 0]), pred.ious[:, 0])  # (S,)
    return low, score, ptr, iou


def frame_step(model: SAM2, layout: BankLayout, tables: StepTables, state: BankState, feats: ImageFeatures,
               prompts: Optional[PromptBatch] = None) -> Tuple[BankState, Tensor, Tensor]:
    """Track one frame for every slot (and apply its prompts): (new bank, low-res logits
    (S, 1, 4h, 4w), object-score logits (S, 1)). Pure: the input state is not modified."""
    pix, tracked = track_pass(model, layout, tables, state, feats)
    low, score, ptr = tracked.low_res_masks, tracked.object_score_logits, tracked.obj_ptr
    # Tracked frames are memorised from the high-res masks, prompted ones binarized from their
    # low-res logits (as upstream).
    mem_masks, binarize = tracked.high_res_masks, torch.zeros_like(state.active)
    cond = torch.zeros_like(state.active)
    samurai_prompt = None
    if prompts is not None:
        prompted = prompts.kind != TRACKED
        p_low, p_score, p_ptr, p_iou = prompt_pass(model, feats, pix, tracked, prompts, samurai_step.present_above(layout))
        low = torch.where(prompted[:, None, None, None], p_low.to(low.dtype), low)
        score = torch.where(prompted[:, None], p_score.to(score.dtype), score)
        ptr = torch.where(prompted[:, None], p_ptr.to(ptr.dtype), ptr)
        size = mem_masks.shape[-1]
        up = F.interpolate(low.float(), size=(size, size), mode="bilinear", align_corners=False)
        mem_masks = torch.where(prompted[:, None, None, None], up.to(mem_masks.dtype), mem_masks)
        binarize, cond = prompted, prompted & prompts.cond
        samurai_prompt = (prompted, prompted & prompts.multimask, p_iou)
    mem, _ = model.encode_memory(feats.feat, mem_masks, score, binarize)  # (S, C_mem, h, w)
    mem = model.memory_as_tokens(mem).to(torch.bfloat16)  # (S, T, C_mem)
    if layout.samurai is None:
        return write_memory(layout, state, mem, ptr.float(), low, score, cond), low.float(), score.float()
    # SAMURAI: the filters step, and the memory goes where its memory test puts it.
    place, motion = samurai_step.after_decode(layout, state, tracked.selection, score, mem_masks, cond, samurai_prompt)
    new = write_memory(layout, state, mem, ptr.float(), low, score, cond, place)._replace(**motion)
    return new, low.float(), score.float()


# ------------------------------------------------------------------------------ in place
def encode_features(model: SAM2, dtype: torch.dtype, image: Tensor) -> Tuple[Tensor, ...]:
    """Normalized images (B, 3, S, S) -> the model's image features, flat:
    (feat (B, C, h, w), pos (B, C, h, w), high_res_0 (B, C0, 4h, 4w), high_res_1 (B, C1, 2h, 2w))."""
    with autocast(image.device, dtype):
        f = model.encode_image(image)
    # pos is the model's cached encoding, expanded: a view, which a compiled graph returns as
    # a view of its input (not an inference tensor). Copied, it is a tensor like the others
    # and like a frame's features from FrameStep.encode (copies), so that the step graphs'
    # guards (on dispatch keys too) hold for both and each compiles once.
    return (f.feat, f.pos.clone(), *f.high_res)


def step_in_place(model: SAM2, layout: BankLayout, tables: StepTables, dtype: torch.dtype, bank: BankState,
                  feats: Tuple[Tensor, ...], prompts: Optional[PromptBatch] = None) -> Tuple[Tensor, Tensor]:
    """:func:`frame_step` on a bank's tensors, its new state copied back into them (in place:
    their addresses never change, which CUDA graphs need). ``feats`` as
    :func:`encode_features` returns them. Returns (low-res logits (S, 1, 4h, 4w), object-score
    logits (S, 1))."""
    f = ImageFeatures(feats[0], feats[1], list(feats[2:]))
    with autocast(f.feat.device, dtype):
        new, low, score = frame_step(model, layout, tables, bank, f, prompts)
    for buf, value in zip(bank, new):
        buf.copy_(value)
    return low, score


def tracked_in_place(model: SAM2, layout: BankLayout, tables: StepTables, dtype: torch.dtype, bank: BankState,
                    feats: Tuple[Tensor, ...]) -> Tuple[Tensor, Tensor]:
    # Unprompted and prompted frames are separate functions: one compiled graph each, without
    # dynamo guarding on whether ``prompts`` is None.
    return step_in_place(model, layout, tables, dtype, bank, feats, None)


def prompted_in_place(model: SAM2, layout: BankLayout, tables: StepTables, dtype: torch.dtype, bank: BankState,
                       feats: Tuple[Tensor, ...], prompts: PromptBatch) -> Tuple[Tensor, Tensor]:
    return step_in_place(model, layout, tables, dtype, bank, feats, prompts)


def build_prompt_batch(slots: int, max_points: int, image_size: int, device: torch.device,
                       rows: "dict[int, tuple]") -> PromptBatch:
    """A :class:`PromptBatch` from per-slot prompts ``{slot: (kind, coords, labels, mask, multimask, cond)}``
    (coords (K, 2) float32 in model pixels and labels (K,) for point kinds, a (1, 1, S, S)
    float mask tensor for MASK); the other slots are padding. Built on the host, sent once."""
    kind = torch.zeros(slots, dtype=torch.int64)
    coords = torch.zeros(slots, max_points, 2)
    labels = torch.full((slots, max_points), -1, dtype=torch.int32)
    point_valid = torch.zeros(slots, max_points + 1, dtype=torch.bool)
    point_valid[:, 0] = point_valid[:, max_points] = True  # upstream's padding point + the appended one
    multimask = torch.zeros(slots, dtype=torch.bool)
    cond = torch.zeros(slots, dtype=torch.bool)
    mask = torch.zeros(slots, 1, image_size, image_size, device=device)
    for slot, (k, pts, labs, m, multi, c) in rows.items():
        kind[slot], multimask[slot], cond[slot] = k, multi, c
        if pts is not None and len(pts):
            n = len(pts)
            coords[slot, :n] = torch.as_tensor(pts, dtype=torch.float32)
            labels[slot, :n] = torch.as_tensor(labs, dtype=torch.int32)
            point_valid[slot, :n] = True
        if m is not None:
            mask[slot] = m[0]
    to = lambda x: x.to(device, non_blocking=True)  # noqa: E731
    return PromptBatch(to(kind), to(coords), to(labels), to(point_valid), mask, to(multimask), to(cond))
