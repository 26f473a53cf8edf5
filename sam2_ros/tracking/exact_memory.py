"""The exact path's memory bank: what each object remembers, and which of it a frame attends
to, in upstream's order (no rclpy). Bit-identical to Meta's predictor where the CPU's kernels
allow (see ``test/test_tracker_parity.py``); the static frame step keeps the same windows in
fixed-capacity tensors instead (``sam2_ros.step.bank``).

What an object remembers, and nothing else, so the state is constant on an endless stream:
its conditioning frames (at most ``max_cond_frames`` that can still be selected), the memories
of its last ``num_maskmem - 1`` tracked frames and the pointers of its last ``max_ptrs - 1``;
with a prompt buffer of B frames, the windows reach B frames further back.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from torch import Tensor


@dataclass(frozen=True)
class Windows:
    """How far back an object's memory reaches (the tracker's settings)."""

    max_cond_frames: int
    num_maskmem: int
    max_ptrs: int
    prompt_buffer: int


@dataclass
class Memory:
    """One frame's memory of one object."""

    features: Optional[Tensor]  # (T, C_mem) bfloat16 tokens; None once too old for the bank
    ptr: Tensor  # (C,) object pointer


@dataclass
class Output:
    """One object's answer on one frame."""

    low_res: Tensor  # (1, 1, S/4, S/4) float32 logits (a later correction starts from them)
    score: Tensor  # (1, 1) float32 object-score logit


@dataclass
class Pending:
    """A prompted output not yet in the object's memory (upstream's temporary outputs): it
    joins the memory when the next frame is tracked."""

    memory: Memory
    output: Output
    cond: bool


@dataclass
class ObjectMemory:
    # Conditioning (prompted) frames, in the order upstream's dict holds them; the ones that
    # can still be selected for a frame that may be tracked or prompted (see evict).
    cond: "OrderedDict[int, Memory]" = field(default_factory=OrderedDict)
    cond_seen: int = 0  # conditioning frames ever stored (more than are kept, once over the cap)
    recent: Dict[int, Memory] = field(default_factory=dict)  # tracked frames in the window
    low_res: Optional[Tensor] = None  # (1, 1, S/4, S/4) logits on the last tracked frame
    score: Optional[Tensor] = None  # (1, 1) object-score logit on the last tracked frame
    # With a prompt buffer: outputs on the buffered frames (what is in memory), the buffered
    # frames the object was tracked on, and prompted outputs waiting for the next frame.
    outputs: Dict[int, Output] = field(default_factory=dict)
    tracked: set = field(default_factory=set)
    pending: "OrderedDict[int, Pending]" = field(default_factory=OrderedDict)


def select_cond(win: Windows, obj: ObjectMemory, t: int) -> Tuple[List[Tuple[int, Memory]], Dict[int, Memory]]:
    """The conditioning frames frame t attends to, in upstream's order, and the others.

    As upstream's ``select_closest_cond_frames``: all of them while the object has had at
    most ``max_cond_frames``; else the closest before t, the closest at or after t, then
    the nearest others. The frames kept in ``obj.cond`` include every one this can pick
    for a frame that can still be tracked or prompted (see :func:`evict`).
    """
    items = list(obj.cond.items())
    if obj.cond_seen <= win.max_cond_frames:
        return items, {}
    frames = [f for f, _ in items]
    chosen: List[int] = []
    before = max((f for f in frames if f < t), default=None)
    if before is not None:
        chosen.append(before)
    after = min((f for f in frames if f >= t), default=None)
    if after is not None:
        chosen.append(after)
    rest = sorted((f for f in frames if f not in chosen), key=lambda f: abs(f - t))
    chosen += rest[: win.max_cond_frames - len(chosen)]
    return [(f, obj.cond[f]) for f in chosen], {f: m for f, m in items if f not in chosen}

def memory_of(win: Windows, obj: ObjectMemory, t: int) -> Tuple[list, list]:
    """The object's memory for frame t, in upstream's order.

    Returns spatial memories [(features, frames_back)] (conditioning frames first, then
    recent frames oldest first) and pointers [(ptr, signed frame offset)]. A conditioning
    frame not selected serves as a recent frame while it is one, as upstream.
    """
    selected, unselected = select_cond(win, obj, t)

    def recent(f: int) -> Optional[Memory]:
        m = obj.recent.get(f)
        return m if m is not None else unselected.get(f)

    spatial = [(m.features, 0) for _, m in selected]
    for back in range(win.num_maskmem - 1, 0, -1):
        m = recent(t - back)
        if m is not None and m.features is not None:
            spatial.append((m.features, back))
    ptrs = [(m.ptr, t - f) for f, m in selected if f <= t]
    for back in range(1, win.max_ptrs):
        m = recent(t - back)
        if m is not None:
            ptrs.append((m.ptr, back))
    return spatial, ptrs

def store(win: Windows, obj: ObjectMemory, t: int, entry: Memory, out: Output, cond: bool) -> None:
    """Put frame t's memory of the object in its bank."""
    if cond:
        if t not in obj.cond:
            obj.cond_seen += 1
        obj.cond[t] = entry  # an existing frame keeps its place, as in upstream's dict
        obj.recent.pop(t, None)
    elif t in obj.cond:
        # Upstream drops a non-conditioning output on a conditioning frame (its preflight
        # removes non-conditioning outputs of conditioning frames).
        return
    else:
        obj.recent[t] = entry
    if win.prompt_buffer:
        obj.outputs[t] = out

def commit(win: Windows, objects: Iterable[ObjectMemory]) -> None:
    """Pending prompted outputs join the memory (upstream's preflight: per object, the
    non-conditioning ones first, then the conditioning ones, each in the order given)."""
    for obj in objects:
        if not obj.pending:
            continue
        items = list(obj.pending.items())
        for cond in (False, True):
            for t, pend in items:
                if pend.cond == cond:
                    store(win, obj, t, pend.memory, pend.output, cond)
        obj.pending.clear()

def evict(win: Windows, obj: ObjectMemory, t: int) -> None:
    """After frame t: keep only what a later frame, or a prompt on a buffered frame, can use.

    With B = prompt_buffer, the frames that can still be tracked or prompted are those from
    L = t + 1 - B on. They use the pointers of the max_ptrs - 1 frames before them and the
    spatial memories of the num_maskmem - 1 frames before them; and of the conditioning
    frames, those from L on and the max_cond_frames latest before L (upstream's selection
    cannot pick others for any frame from L on). A conditioning frame dropped from that set
    still serves as a recent frame while it is one, as upstream's unselected ones.
    """
    first = t + 1 - win.prompt_buffer
    older = sorted(f for f in obj.cond if f < first)
    for f in older[: max(0, len(older) - win.max_cond_frames)]:
        obj.recent[f] = obj.cond.pop(f)
    for f in list(obj.recent):
        back = first - f
        if back >= win.max_ptrs:
            del obj.recent[f]
        elif back >= win.num_maskmem and obj.recent[f].features is not None:
            obj.recent[f] = Memory(None, obj.recent[f].ptr)
    for f in [f for f in obj.outputs if f < first]:
        del obj.outputs[f]
    obj.tracked = {f for f in obj.tracked if f >= first}
