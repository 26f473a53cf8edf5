"""Motion-aware memory (SAMURAI) for every object slot: pure tensor parts.

SAMURAI (Yang et al. 2024; its released predictor is PyPI ``absolutely-not-samurai==1.0.0``,
the test oracle) changes two things in SAM 2's tracking, without training:

1. **Which of the decoder's three candidate masks a tracked frame keeps** (:func:`choose`).
   A Kalman filter (:mod:`sam2_ros.step.kalman`) follows the box of the kept mask. Once it
   is stable, the candidate is the argmax of ``w * kf_iou + (1 - w) * predicted_iou``,
   where ``kf_iou`` is the IoU of the candidate's box with the filter's predicted box.
2. **Which past frames later frames attend to** (:func:`admit`, :func:`ring_write`): only
   frames whose kept mask was confident enter the memory, besides the previous frame.

These functions are batched over object slots (S), with static shapes, no host
synchronisation and no ``.item()``: the static frame step calls them inside its compiled
graph, the exact path calls them with S = 1. They live in ``step/`` (layer 1) because the
frame step (layer 1) calls them and may not import ``tracking/`` (layer 3).

What SAMURAI does, read from its code (``sam2/modeling/sam2_base.py``,
``sam2/utils/kalman_filter.py``, ``sam2/sam2_video_predictor.py`` of that package)
====================================================================================

Settings (:class:`SamuraiConfig`): the released configs ``configs/samurai/sam2.1_hiera_*.yaml``
set ``kf_score_weight=0.25`` (its code's default is 0.15: the configs win),
``stable_frames_threshold=15``, ``stable_ious_threshold=0.3``, ``min_obj_score_logits=-1``,
``memory_bank_iou_threshold=0.5``, ``memory_bank_obj_score_threshold=0.0``,
``memory_bank_kf_score_threshold=0.0``; everything else is SAM 2.1's (``num_maskmem=7``,
``max_obj_ptrs_in_encoder=16``, all conditioning frames attended).

**The filter** lives in SAMURAI on the model: one per process, which is why it tracks one
object. Per slot here: mean (8), covariance (8 x 8) and SAMURAI's counter ``stable_frames``
(:class:`MotionState`; 0 = not started, 1..T-1 = starting, >= T = stable, T =
``stable_frames_threshold``). On every decode with three candidates (every tracked frame;
also a prompt with exactly one click), in this order:

* ``stable == 0`` (never started, or restarting): take the candidate with the highest
  predicted IoU, ``initiate`` the filter from its box, ``stable = 1``. No motion score.
* ``0 < stable < T``: ``predict``; take the highest predicted IoU; if that IoU ``> 0.3``,
  ``update`` with its box and ``stable += 1``, else ``stable = 0`` (the filter keeps the
  predicted state; the next decode initiates). No motion score.
* ``stable >= T``: ``predict``; the boxes of all three candidates; ``kf_iou`` of each with
  the predicted box; candidate = argmax of the weighted score (first on ties); if its
  predicted IoU ``< 0.3`` then ``stable = 0`` (no update), else ``update`` with its box
  (``stable`` stays). Motion score = its ``kf_iou``.

Decodes with one mask (a box, two or more clicks, a mask prompt) leave the filter alone. The
box of a mask is ``(x_min, y_min, x_max, y_max)`` of its pixels with logit > 0 in the decoder's
S x S upsampled logits (pixel indices, inclusive), ``(0, 0, 0, 0)`` when empty; xyah is
``((x0 + x1) / 2, (y0 + y1) / 2, w / h, h)`` with ``w = x1 - x0``, ``h = y1 - y0`` and a zero
height replaced by 1. The IoU with the predicted box (converted back to corners) uses areas
without +1 and is 0 for a ``(0, 0, 0, 0)`` candidate. Comparisons as SAMURAI's: ``iou > 0.3``
on float32 tensors (the threshold rounded to float32); ``kf_iou`` rounded to float32 before
weighting (SAMURAI computes it in float64, here in the filter's dtype). SAMURAI never resets
the filter, not even in ``reset_state``: a fresh filter takes a fresh model.

**min_obj_score_logits = -1**: where SAM 2 treats an object as present when its object-score
logit is > 0, SAMURAI's decoder uses > -1, for two things only: masks are not blanked to -1024
and the object pointer is the object's own (not the learned no-object pointer) for logits in
(-1, 0]. So such frames show their mask although ``scores`` (sigmoid) are <= 0.5. The memory
encoder's no-object embedding still uses > 0, and such frames fail the memory admission's
object-score test (> 0).

**The memory** a frame t attends to (``_prepare_memory_conditioned_features``, SAMURAI
branch): its conditioning frames as SAM 2 (all of them, by default), the object pointers as
SAM 2 (the conditioning frames' and those of the frames t-1 .. t-15, whether they qualified or
not), and the spatial memories of at most R = num_maskmem - 1 = 6 earlier frames, chosen so:

1. scan i = t-1, t-2, ..., 2 (down to frame **2**, however far back: no window; SAMURAI ignores
   ``memory_temporal_stride_for_eval``); frame i *qualifies* if its kept mask's predicted IoU
   > 0.5, its object-score logit > 0.0 and (it has no motion score, or its motion score > 0.0),
   compared in float64 (``.item()``); collect qualifying frames, stop after c =
   ``max_obj_ptrs_in_encoder - 1`` = 15 of them; V = those, oldest first;
2. if t-1 is not in V, append t-1 (the previous frame always counts, qualified or not, even
   frame 0 or 1);
3. attend to the last R entries of V, oldest first; temporal position ``t_pos`` = R, R-1, ...
   from the newest: the temporal encoding follows the rank in V, not the distance in frames
   (``maskmem_tpos_enc[rank]``, rank 0 = newest). An entry without a stored memory (t-1 a
   conditioning frame) is skipped but keeps its place.

Before any frame qualifies, V = [t-1]: the previous frame alone (with the conditioning
frames), so frame 1 sees only its prompt and frame 2 sees frame 1. Frames 0 and 1 are never
scanned: frame 1 (the first tracked frame after a prompt on frame 0) is attended by frame 2
only, whatever its scores (SAM 2 would attend to it until frame 7). The scan reads
``best_iou_score`` of every frame in [2, t-1], which the predictor's per-object and
consolidated outputs lack: a correction on a tracked frame t >= 3 raises ``KeyError`` at once
(checked), one on frame 2 two frames later (read from the code), and the predictor refuses new
objects once tracking started. SAMURAI supports prompts before tracking only (its protocol: a
box on frame 0).

Why a bounded ring attends to exactly SAMURAI's frames
=======================================================

Let Q(t) be the frames of [2, t-1] that qualify. t-1 is the newest frame V can hold, and
c >= R (15 >= 6), so the last R entries of V are

* the R newest frames of Q(t), if t-1 qualifies (t-1 is the newest of them);
* t-1 and the R-1 newest frames of Q(t-1), if it does not.

A qualifying frame is attended until R newer frames qualified, however long ago that was; it
is never attended again after that. So R entries per slot hold everything: a ring, and a
count ``kept`` of the qualifying frames written to it. Every tracked frame t is written at
position ``kept % R``; then ``kept += 1`` if t qualifies (:func:`ring_write`). By induction
over t, before frame t the ring holds the R newest frames of Q(t) at positions
``(kept - R .. kept - 1) % R`` (fewer at the start, the rest empty), except that a t-1 which
did not qualify occupies position ``kept % R`` instead of the oldest of them. That is the list
above: if t qualifies it is written over the oldest, which is now the (R+1)-th newest; if not,
it is written over the oldest or over t-1, neither of which frame t+1 selects. The temporal
encoding is the rank among the ring's valid entries (:func:`ring_ranks`). The state is R
entries and one counter per slot, constant on an endless stream.

The ring and SAMURAI's scan differ only outside what SAMURAI supports:

* c < R (``max_obj_ptrs_in_encoder < num_maskmem``; no released config): SAMURAI attends to
  fewer frames than the ring. Refuse such settings.
* Objects prompted after frame 0 (a live stream's normal case): SAMURAI's frames 0 and 1 are
  absolute frame indices. Counted from the object's first prompted frame t0 instead, frames
  with ``t - t0 < 2`` never qualify, which is SAMURAI's rule for its prompt on frame 0 (the
  caller's ``admitted`` in :func:`ring_write`).
* Prompts after tracking started, where SAMURAI raises (see above). Extended so: a
  conditioning frame is attended as a conditioning frame and never qualifies; as t-1 it keeps
  SAMURAI's place of the previous frame, with no memory there (SAMURAI skips an entry it finds
  no output for), so its ring position is emptied (``cond`` in :func:`ring_write`). A corrected
  frame stored as a plain memory qualifies by its corrected output's scores.

Per frame, in a tracker (per slot: :class:`MotionState`, the ring's frames, ``kept``, and the
object's first prompted frame ``t0``)
=====================================================================================

1. Decode from memory; blank candidates and gate the pointer with ``score >
   min_obj_score_logits`` (not > 0); upsample all three (the decoder does).
2. :func:`choose` on the three candidates (``apply``: active slots, not new objects) and keep its ``index``
   (mask, upsampled mask and output token) instead of the highest predicted IoU.
3. Prompts. A new object: :func:`restart` (and an empty ring, ``kept = 0``, ``t0 = t``); its
   prompt decode goes through :func:`choose` if it has three candidates (one click: the filter
   starts on the prompt frame, as SAMURAI's), else the filter starts on the next frame. A
   prompt on a tracked object (no SAMURAI equivalent): after step 2, :func:`restart`, then the
   same as a new object's decode; the ring and ``t0`` stay.
4. Encode the memory as SAM 2 does (its no-object embedding still uses score > 0).
5. ``admitted = admit(...) & (t - t0 >= 2)`` with the kept mask's IoU, score and motion score
   (a prompt's decode: its own, no motion score; a mask prompt: IoU 1, SAMURAI's); then
   :func:`ring_write` (``cond``: the frame became a conditioning frame) gives the ring
   position the memory goes to, instead of ``t % R``. Pointers stay SAM 2's.
6. The next frame attends to the conditioning entries and every valid ring entry, whatever
   its age, with temporal encoding :func:`ring_ranks` instead of ``frames back - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Tuple

import numpy as np
import torch
from torch import Tensor

from . import kalman


@dataclass(frozen=True)
class SamuraiConfig:
    """SAMURAI's settings, with the defaults of its released configs
    (``configs/samurai/sam2.1_hiera_*.yaml``)."""

    kf_score_weight: float = 0.25  # weight of the motion IoU in the candidate score (code default: 0.15)
    stable_frames_threshold: int = 15  # successful filter updates before motion picks candidates
    stable_ious_threshold: float = 0.3  # predicted IoU below which the filter restarts
    memory_bank_iou_threshold: float = 0.5  # a memory needs predicted IoU > this,
    memory_bank_obj_score_threshold: float = 0.0  # object-score logit > this,
    memory_bank_kf_score_threshold: float = 0.0  # and motion IoU > this (once the filter is stable)
    min_obj_score_logits: float = -1.0  # object present when its score logit > this (SAM 2: 0)
    # The three memory thresholds as float32 comparisons equal to SAMURAI's float64 ones.
    memory_floors: Tuple[float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.kf_score_weight <= 1.0:
            raise ValueError(f"kf_score_weight must be in [0, 1], got {self.kf_score_weight}")
        if int(self.stable_frames_threshold) != self.stable_frames_threshold or self.stable_frames_threshold < 1:
            raise ValueError(f"stable_frames_threshold must be an integer >= 1, got {self.stable_frames_threshold}")
        for name in ("stable_ious_threshold", "memory_bank_iou_threshold", "memory_bank_obj_score_threshold",
                     "memory_bank_kf_score_threshold", "min_obj_score_logits"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        floors = tuple(float32_floor(x) for x in (self.memory_bank_iou_threshold, self.memory_bank_obj_score_threshold,
                                                   self.memory_bank_kf_score_threshold))
        object.__setattr__(self, "memory_floors", floors)


class MotionState(NamedTuple):
    """Each slot's box filter (SAMURAI keeps one on its model)."""

    mean: Tensor  # (S, 8) x, y, a, h and their velocities
    cov: Tensor  # (S, 8, 8)
    stable: Tensor  # (S,) int64 SAMURAI's stable_frames: 0 not started, < T starting, >= T stable


class Choice(NamedTuple):
    """One decode's kept candidate and what SAMURAI records with it."""

    index: Tensor  # (S,) int64 candidate kept
    iou: Tensor  # (S,) float32 its predicted IoU (SAMURAI's best_iou_score)
    kf_score: Tensor  # (S,) float32 its IoU with the predicted box (0 where has_kf_score is False)
    has_kf_score: Tensor  # (S,) bool: chosen by motion (stable filter); else SAMURAI's kf_score is None
    state: MotionState  # the filters after this decode


def new_motion_state(slots: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> MotionState:
    """Filters of ``slots`` slots, none started."""
    return MotionState(torch.zeros(slots, 8, dtype=dtype, device=device),
                       torch.zeros(slots, 8, 8, dtype=dtype, device=device),
                       torch.zeros(slots, dtype=torch.int64, device=device))


def restart(state: MotionState, slots: Tensor) -> MotionState:
    """The filters of ``slots`` (S,) bool start again at their next three-candidate decode
    (a new object, or a prompt on a tracked one)."""
    return state._replace(stable=torch.where(slots, torch.zeros_like(state.stable), state.stable))


def mask_boxes(masks: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """(S, M, H, W) mask logits -> (S, M, 4) x0, y0, x1, y1 of the pixels with logit > 0
    (inclusive pixel indices), (0, 0, 0, 0) for an empty mask; as SAMURAI's ``argwhere``."""
    h, w = masks.shape[-2:]
    rows = masks.amax(-1) > 0  # (S, M, H)
    cols = masks.amax(-2) > 0  # (S, M, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    x0 = torch.where(cols, xs, w).amin(-1)
    x1 = torch.where(cols, xs, -1).amax(-1)
    y0 = torch.where(rows, ys, h).amin(-1)
    y1 = torch.where(rows, ys, -1).amax(-1)
    box = torch.stack((x0, y0, x1, y1), -1)  # (S, M, 4)
    empty = ~cols.any(-1, keepdim=True)
    return torch.where(empty, torch.zeros_like(box), box).to(dtype)


def _pick(x: Tensor, index: Tensor) -> Tensor:
    """x (S, M, ...) at each slot's ``index`` (S,) -> (S, ...)."""
    idx = index.view(-1, 1, *([1] * (x.dim() - 2))).expand(-1, 1, *x.shape[2:])
    return x.gather(1, idx).squeeze(1)


def choose(cfg: SamuraiConfig, state: MotionState, masks: Tensor, ious: Tensor, apply: Tensor) -> Choice:
    """SAMURAI's choice among the decoder's candidates, and its filter step, for every slot.

    ``masks`` (S, M, H, W): the candidates' logits upsampled to the model's input size (what
    the decoder upsamples anyway), after the no-object blanking; ``ious`` (S, M) float32
    predicted IoUs; ``apply`` (S,) bool: the slots whose decode is a SAMURAI decode (three
    candidates, an active object). Elsewhere the filter is unchanged and the index is SAM 2's
    (the highest predicted IoU).
    """
    T, thr = int(cfg.stable_frames_threshold), float(cfg.stable_ious_threshold)
    dtype = state.mean.dtype
    init = state.stable == 0
    stable = state.stable >= T
    boxes = mask_boxes(masks, dtype)  # (S, M, 4)
    p_mean, p_cov = kalman.predict(state.mean, state.cov)
    kf_iou = kalman.box_iou(kalman.xyah_to_box(p_mean[:, :4]), boxes).float()  # (S, M), float32 as SAMURAI's
    weighted = cfg.kf_score_weight * kf_iou + (1 - cfg.kf_score_weight) * ious
    index = torch.where(apply & stable, weighted.argmax(-1), ious.argmax(-1))  # (S,)
    iou = _pick(ious, index)
    z = kalman.box_to_xyah(_pick(boxes, index))  # (S, 4)
    i_mean, i_cov = kalman.initiate(z)
    u_mean, u_cov = kalman.update(p_mean, p_cov, z)
    # Which of initiate / predict+update / predict alone each slot ends with.
    ok = (stable & ~(iou < thr)) | (~stable & (iou > thr))  # (not torch.where: ONNX Runtime has no bool Where)
    use_init, use_update = apply & init, apply & ~init & ok
    use_predict = apply & ~init & ~ok

    def pick(a: Tensor, b: Tensor, c: Tensor, old: Tensor) -> Tensor:
        shape = (-1,) + (1,) * (old.dim() - 1)
        return torch.where(use_init.view(shape), a, torch.where(use_update.view(shape), b,
                           torch.where(use_predict.view(shape), c, old)))

    mean = pick(i_mean, u_mean, p_mean, state.mean)
    cov = pick(i_cov, u_cov, p_cov, state.cov)
    counter = torch.where(use_init | (use_update & ~stable), state.stable + 1,
                          torch.where(use_predict, torch.zeros_like(state.stable), state.stable))
    has_kf = apply & stable
    kf_score = torch.where(has_kf, _pick(kf_iou, index), torch.zeros_like(iou))
    return Choice(index, iou, kf_score, has_kf, MotionState(mean, cov, counter))


def float32_floor(x: float) -> float:
    """The largest float32 <= x: for a float32 ``v``, ``v > float32_floor(x)`` is exactly
    ``float(v) > x`` (SAMURAI compares ``.item()`` floats), in float32 arithmetic."""
    f = np.float32(x)
    if float(f) > x:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def admit(cfg: SamuraiConfig, iou: Tensor, obj_score: Tensor, kf_score: Tensor, has_kf_score: Tensor) -> Tensor:
    """SAMURAI's memory test per slot (S,) bool: predicted IoU, object-score logit and (where
    the filter chose) motion IoU above their thresholds. The caller adds SAMURAI's other
    conditions (a tracked, non-conditioning frame at least 2 frames after the object's
    first prompt): see :func:`ring_write`."""
    iou_min, score_min, kf_min = cfg.memory_floors
    score = obj_score.reshape(iou.shape)
    return (iou > iou_min) & (score > score_min) & (~has_kf_score | (kf_score > kf_min))


def ring_write(ring_frame: Tensor, kept: Tensor, t: Tensor, write: Tensor, admitted: Tensor, cond: Tensor
               ) -> Tuple[Tensor, Tensor, Tensor]:
    """Frame ``t``'s place in each slot's ring of R spatial memories (see the module doc).

    ``ring_frame`` (S, R) int64: the frame each ring entry holds (-1 empty); ``kept`` (S,)
    int64: qualifying frames stored so far; ``t`` () or (S,) int64; ``write`` (S,) bool: the
    slot stores a memory of frame t (an active object); ``admitted`` (S,) bool:
    :func:`admit` and eligible (``t - first_prompt >= 2``); ``cond`` (S,) bool: frame t is a
    conditioning frame of the slot (kept elsewhere: its ring position is emptied).

    Returns (position (S,) where the slot's memory goes when ``write & ~cond``, new
    ``ring_frame``, new ``kept``)."""
    r = ring_frame.shape[1]
    pos = kept % r  # (S,)
    old = ring_frame.gather(1, pos[:, None])[:, 0]
    new = torch.where(cond, torch.full_like(old, -1), t.expand_as(old))
    ring_frame = ring_frame.scatter(1, pos[:, None], torch.where(write, new, old)[:, None])
    return pos, ring_frame, kept + (write & ~cond & admitted).long()


def ring_ranks(ring_frame: Tensor) -> Tensor:
    """(S, R) rank of each ring entry among the slot's valid ones, newest first (0 = the
    newest): the index of its temporal encoding, ``maskmem_tpos_enc[rank]`` (SAMURAI's
    ``t_pos = R - rank``). Meaningless on empty entries."""
    valid = ring_frame >= 0
    newer = valid[:, None, :] & (ring_frame[:, None, :] > ring_frame[:, :, None])  # (S, R, R)
    return newer.sum(-1)
