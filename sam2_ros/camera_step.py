"""Several cameras' frames through one static frame step (issue 13); no rclpy.

Cameras are one more batch dimension of the static step: the object slots of every camera in
a round (each camera's :class:`~sam2_ros.bank.MemoryBank`, its own capacity) are stacked into
one batch, every slot at its own camera's frame index and with its own camera's image
features, and :func:`~sam2_ros.frame_step.frame_step` runs once for all of them: one memory
attention, one decoder and one memory encoder for the whole round instead of one per camera.
Each camera's bank then gets its part of the new state back, in place. Slots attend only to
their own bank's entries, so a camera's logits are those of its own step (up to the summation
order of batched kernels).

:func:`track_together` is the tracker-level entry: several :class:`~sam2_ros.tracker.Tracker`
sharing one model, each with its frame, prompts and features, tracked in one step where they
can be (static torch steps of one model, dtype and bank layout apart from capacity), else one
after another. Compiled trackers run the model's shared joint graphs
(:class:`~sam2_ros.frame_step.CompiledStep`: one per camera count, static shapes).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .bank import BankLayout, BankState
from .frame_step import FrameStep, PromptBatch, StepTables, build_prompt_batch, frame_step
from .model.build import autocast
from .model.sam2 import SAM2, ImageFeatures
from .track_types import Prompt, TrackResult


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
    into its own (in place, as :func:`~sam2_ros.frame_step.step_in_place`). Returns each
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


def joinable(trackers: Sequence) -> bool:
    """Whether ``trackers`` can be tracked in one step: static torch steps on one model, one
    dtype and compile mode, one bank layout apart from capacity, one prompt size."""
    steps = [t._step for t in trackers]
    if len(steps) < 2 or not all(isinstance(s, FrameStep) for s in steps):
        return False
    first = steps[0]

    def same(s: FrameStep) -> bool:
        return (s.model is first.model and s.dtype == first.dtype and s.compiled is first.compiled
                and s._encoder is None and dataclasses.replace(s.layout, slots=first.layout.slots) == first.layout)
    return all(same(s) for s in steps) and len({t.max_prompt_points for t in trackers}) == 1


@torch.inference_mode()
def track_together(trackers: Sequence, frames: Sequence, prompts: Sequence[Sequence[Prompt]],
                   features: Sequence[Optional[ImageFeatures]]) -> List[Union[TrackResult, Exception]]:
    """Track each tracker's frame (one camera each, all on one model) with its prompts and
    features (from ``Tracker.encode``, one per frame, or None), as one step where
    :func:`joinable`, else one after another. Returns per tracker its :class:`TrackResult`, or
    the exception its frame or prompts raised (that tracker is then left as it was; the others
    are tracked)."""
    out: List[Union[TrackResult, Exception]] = [None] * len(trackers)  # type: ignore[list-item]
    candidates = [k for k, f in enumerate(features) if f is not None]
    group = []  # (k, hw, parsed prompts): checked, to be tracked in one step
    if joinable([trackers[k] for k in candidates]):
        for k in candidates:
            try:
                group.append((k, *trackers[k]._checked(frames[k], prompts[k], features[k])))
            except Exception as error:  # noqa: BLE001 - that camera's problem only
                out[k] = error
    for k, tracker in enumerate(trackers):
        if out[k] is None and all(k != g[0] for g in group):  # one at a time
            try:
                out[k] = tracker.track(frames[k], prompts[k], features=features[k])
            except Exception as error:  # noqa: BLE001 - that camera's problem only
                out[k] = error
    if group:
        chosen = [trackers[k] for k, _, _ in group]
        batches = [t._static_prompts(hw, *parsed) for t, (_, hw, parsed) in zip(chosen, group)]
        padded = None
        if any(b is not None for b in batches):
            padded = [b if b is not None else build_prompt_batch(t.max_objects, t.max_prompt_points, t.image_size,
                                                                  t.device, {}) for t, b in zip(chosen, batches)]
        feats = [features[k] for k, _, _ in group]
        stacked = tuple(torch.cat(parts) for parts in zip(*[(f.feat, f.pos, *f.high_res) for f in feats]))  # (N, ...)
        steps = [t._step for t in chosen]
        first, compiled = steps[0], steps[0].compiled
        args = (first.model, first.layout, first.tables, first.dtype, [s.bank.state() for s in steps], stacked)
        if padded is None:
            lows, scores = (compiled.joint_track if compiled is not None else joint_tracked)(*args)
        else:
            lows, scores = (compiled.joint_prompted if compiled is not None else joint_prompted)(*args, padded)
        for t, (k, hw, _), low, score in zip(chosen, group, lows, scores):
            out[k] = t._static_result(hw, low, score)
    return out
