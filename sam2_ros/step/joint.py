"""Several cameras' banks through one static frame step (no rclpy).

Cameras are one more batch dimension of the step: the object slots of every camera in a round
(each camera's :class:`~sam2_ros.step.bank.MemoryBank`, its own capacity) are stacked into one
batch, every slot at its own camera's frame index and with its own camera's image features, and
:func:`~sam2_ros.step.frame_step.frame_step` runs once for all of them: one memory attention, one
decoder and one memory encoder for the whole round instead of one per camera. Each camera's bank
then gets its part of the new state back, in place. Slots attend only to their own bank's
entries, so a camera's logits are those of its own step (up to the summation order of batched
kernels). The tracker-level entry is :func:`sam2_ros.tracking.cameras.track_together`.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..model.build import autocast
from ..model.sam2 import SAM2, ImageFeatures
from .bank import BankLayout, BankState
from .frame_step import PromptBatch, StepTables, frame_step


def joint_step(model: SAM2, layout: BankLayout, tables: StepTables, states: Sequence[BankState], feats: Tuple[Tensor, ...],
               prompts: Optional[Sequence[PromptBatch]]) -> Tuple[List[BankState], List[Tensor], List[Tensor]]:
    """One frame for the slots of every camera in ``states`` (bank states of capacities S_c,
    each at its own frame), with ``feats`` the cameras' stacked image features (feat, pos,
    *high_res, each (N, ...)) and ``prompts`` one (padded) prompt batch per camera or None.
    Pure: returns each camera's new state, low-res logits (S_c, 1, 4h, 4w) and score logits
    (S_c, 1). ``layout``: the cameras' common layout (its ``slots`` is replaced by the sum)."""
    sizes = [s.active.shape[0] for s in states]
    device = states[0].active.device
    # which camera each slot of the batch belongs to (constant: the sizes are static)
    camera = torch.cat([torch.full((n,), c, dtype=torch.int64, device=device) for c, n in enumerate(sizes)])  # (S,)
    fields = [torch.cat([getattr(s, f) for s in states]) for f in BankState._fields[:-1]]
    frame = torch.cat([s.frame.reshape(1).expand(n) for s, n in zip(states, sizes)])  # (S,) each slot's camera's frame
    state = BankState(*fields, frame)
    per_slot = [x.index_select(0, camera) for x in feats]  # (S, C, h, w) ...
    f = ImageFeatures(per_slot[0], per_slot[1], per_slot[2:])
    batch = None if prompts is None else PromptBatch(*(torch.cat(parts) for parts in zip(*prompts)))
    new, low, score = frame_step(model, dataclasses.replace(layout, slots=sum(sizes)), tables, state, f, batch)
    out_states, lows, scores, at = [], [], [], 0
    for n in sizes:
        part = slice(at, at + n)
        out_states.append(BankState(*(x[part] for x in new[:-1]), new.frame[at]))
        lows.append(low[part])
        scores.append(score[part])
        at += n
    return out_states, lows, scores


def joint_in_place(model: SAM2, layout: BankLayout, tables: StepTables, dtype: torch.dtype, banks: Sequence[BankState],
                   feats: Tuple[Tensor, ...], prompts: Optional[Sequence[PromptBatch]] = None
                   ) -> Tuple[List[Tensor], List[Tensor]]:
    """:func:`joint_step` on the cameras' bank tensors, each camera's new state copied back
    into its own (in place, as :func:`~sam2_ros.step.frame_step.step_in_place`). Returns each
    camera's low-res logits and score logits."""
    with autocast(feats[0].device, dtype):
        new, lows, scores = joint_step(model, layout, tables, banks, feats, prompts)
    for bank, state in zip(banks, new):
        for buf, value in zip(bank, state):
            buf.copy_(value)
    return lows, scores


def joint_tracked(model: SAM2, layout: BankLayout, tables: StepTables, dtype: torch.dtype, banks: Sequence[BankState],
                  feats: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
    # unprompted and prompted rounds: one compiled graph each (CompiledStep.joint_track / joint_prompted)
    return joint_in_place(model, layout, tables, dtype, banks, feats, None)


def joint_prompted(model: SAM2, layout: BankLayout, tables: StepTables, dtype: torch.dtype, banks: Sequence[BankState],
                   feats: Tuple[Tensor, ...], prompts: Sequence[PromptBatch]) -> Tuple[List[Tensor], List[Tensor]]:
    return joint_in_place(model, layout, tables, dtype, banks, feats, prompts)
