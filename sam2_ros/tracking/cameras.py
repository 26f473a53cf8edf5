"""Several cameras' trackers through one static frame step; no rclpy.

:func:`track_together` tracks several :class:`~sam2_ros.tracking.tracker.Tracker` sharing one
model, each with its frame, prompts and features, in one step where they can be (static torch
steps of one model, dtype and bank layout apart from capacity: :func:`joinable`), else one after
another. The step itself, cameras as one more batch dimension, is :mod:`sam2_ros.step.joint`;
compiled trackers run the model's shared joint graphs (:class:`~sam2_ros.step.compiled.CompiledStep`:
one per camera count, static shapes).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Union

import torch

from ..model.sam2 import ImageFeatures
from ..step.compiled import FrameStep
from ..step.frame_step import build_prompt_batch
from ..step.joint import joint_prompted, joint_tracked
from .types import Prompt, TrackResult


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
                t = trackers[k]  # labels noted, text prompts and the detector's objects as in track()
                group.append((k, *t._checked(frames[k], t.text.before(t, frames[k], prompts[k]), features[k])))
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
            out[k] = t.text.after(t._static_result(hw, low, score))
    return out
