"""SAMURAI's memory selection inside the static frame step (``BankLayout.samurai`` set).

:mod:`sam2_ros.step.frame_step` calls these where SAMURAI's tracking differs from SAM 2's: the
tracked decode (presence above ``min_obj_score_logits``, the candidate the box filter picks),
which ring entries a frame attends to (every stored one, whatever its age, its temporal
encoding by rank) and where a frame's memory goes (the ring entry SAMURAI's memory test gives).
Pure tensor functions over the bank's slots: no host synchronisation, no data-dependent Python
control flow, so they run inside the compiled graph, CUDA graphs and the exported step. The
rules, and why a ring of R entries attends to exactly SAMURAI's frames:
:mod:`sam2_ros.step.memory_selection`.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from . import memory_selection as ms
from .bank import BankLayout, BankState


def motion_of(state: BankState) -> ms.MotionState:
    """The slots' box filters as the bank holds them."""
    return ms.MotionState(state.kf_mean, state.kf_cov, state.kf_stable)


def decode_options(layout: BankLayout, state: BankState) -> dict:
    """Keyword arguments of the tracked decode (``SAM2.predict_masks``): none for SAM 2's
    memory; SAMURAI's presence threshold and its choice among the three candidates, for every
    active slot (the result's ``selection`` is that :class:`~memory_selection.Choice`)."""
    cfg = layout.samurai
    if cfg is None:
        return {}
    motion = motion_of(state)

    def select(highs: Tensor, ious: Tensor) -> Tuple[Tensor, ms.Choice]:
        choice = ms.choose(cfg, motion, highs, ious.float(), state.active)
        return choice.index, choice

    return dict(present_above=cfg.min_obj_score_logits, select=select)


def present_above(layout: BankLayout) -> float:
    """The object-score logit above which an object is present (SAM 2: 0)."""
    return 0.0 if layout.samurai is None else layout.samurai.min_obj_score_logits


def recent_memories(layout: BankLayout, mem_frame: Tensor) -> Tuple[Tensor, Tensor]:
    """Which non-conditioning entries of the memory table (S, K + R) a frame attends to, and
    the index of each one's temporal encoding: SAMURAI attends to every frame its ring holds,
    however old, encoded by its rank among them (0 = the newest: ``maskmem_tpos_enc[rank]``).
    (Entries holding no frame, -1, are excluded by the caller.)"""
    ranks = ms.ring_ranks(mem_frame[:, layout.cond:])  # (S, R)
    tpos = torch.cat((torch.zeros_like(mem_frame[:, : layout.cond]), ranks), 1)  # (S, K + R)
    return torch.ones_like(mem_frame, dtype=torch.bool), tpos


def after_decode(layout: BankLayout, state: BankState, tracked: ms.Choice, score: Tensor, masks: Tensor,
                 cond: Tensor, prompt: Optional[Tuple[Tensor, Tensor, Tensor]]) -> Tuple[Tensor, Dict[str, Tensor]]:
    """The filters after frame ``state.frame``, and where each slot's memory of it goes.

    ``tracked``: the tracked decode's choice (:func:`decode_options`); ``score`` (S, 1): each
    slot's object-score logit on this frame (its prompt's, where prompted); ``masks`` (S, 1,
    S_img, S_img): the kept mask upsampled (the box a one-click prompt starts the filter from);
    ``cond`` (S,): the frame became a conditioning frame of the slot; ``prompt``: None on an
    unprompted frame, else (prompted (S,) bool, one-click rows (S,) bool, the prompt decode's
    predicted IoU (S,), 1 for a mask).

    Returns the ring position each memory goes to (S,) (``memory_selection.ring_write``) and
    the bank fields that change (``kf_mean``, ``kf_cov``, ``kf_stable``, ``kept``).
    """
    cfg = layout.samurai
    motion, iou, kf_score, has_kf = tracked.state, tracked.iou, tracked.kf_score, tracked.has_kf_score
    if prompt is not None:
        prompted, clicks, prompt_iou = prompt
        # A prompt restarts its object's filter. One click decodes three candidates: SAMURAI
        # then starts the filter from the kept one on the prompt frame itself (a box, more
        # clicks or a mask: on the next frame).
        motion = ms.restart(motion, prompted)
        motion = ms.choose(cfg, motion, masks.float(), prompt_iou.float()[:, None], clicks).state
        iou = torch.where(prompted, prompt_iou.float(), iou)
        kf_score = torch.where(prompted, torch.zeros_like(kf_score), kf_score)
        has_kf = has_kf & ~prompted
    # Frames 0 and 1 of an object (counted from its first prompt) never enter SAMURAI's memory.
    eligible = state.frame - state.first_frame >= 2
    admitted = ms.admit(cfg, iou, score.float(), kf_score, has_kf) & eligible
    pos, _, kept = ms.ring_write(state.mem_frame[:, layout.cond:], state.kept, state.frame, state.active, admitted, cond)
    return pos, dict(kf_mean=motion.mean, kf_cov=motion.cov, kf_stable=motion.stable, kept=kept)
