"""The fixed-capacity memory bank of the static frame step (no rclpy).

Every tensor is allocated once, for ``slots`` objects, and rewritten in place frame after
frame, as gpt-fast keeps its KV cache: shapes never change, whatever objects come and go or
however full the banks are, so ``torch.compile`` (and CUDA graphs, ONNX, TensorRT) see one
graph. What each entry holds is told by its frame index (-1: empty); which entries a frame
attends to is computed from those indices by tensor arithmetic (see
:func:`sam2_ros.step.frame_step.gather_memory`).

Per object slot:

* ``K = max_cond_frames`` conditioning entries (prompted frames), then a ring of
  ``R = num_maskmem - 1`` recent frames, indexed by ``frame % R``: spatial memories;
* the same K conditioning entries, then a ring of ``P = max_obj_ptrs - 1`` recent frames
  (``frame % P``): object pointers;
* the last low-res logits and object-score logit (what a correction starts from);
* with SAMURAI's memory selection (``BankLayout.samurai``), its box filter, the count of
  frames that passed its memory test and the frame the object was first prompted on; the ring
  of spatial memories then holds the last R frames that passed (and the previous frame)
  instead of the last R frames (:mod:`sam2_ros.step.memory_selection` says why that is
  SAMURAI's choice, and :mod:`sam2_ros.step.samurai_step` how the step uses them);

and, for the whole bank, the index of the next frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from .memory_selection import SamuraiConfig


@dataclass(frozen=True)
class BankLayout:
    """Sizes of a :class:`MemoryBank` (all static: they are the compiled graph's shapes)."""

    slots: int  # object capacity
    cond: int  # K conditioning entries per object
    recent: int  # R recent spatial memories (ring)
    ptrs: int  # P recent object pointers (ring)
    feat_size: int  # side h = w of the stride-16 feature map
    mem_dim: int  # C_mem
    d_model: int  # C, the width of an object pointer
    mem_tokens: Optional[int] = None  # T, tokens per memory frame (None: h*w, SAM 2's; EdgeTAM: 512)
    samurai: Optional[SamuraiConfig] = None  # None: SAM 2's memory; else SAMURAI's, with these settings

    def __post_init__(self) -> None:
        if min(self.slots, self.cond, self.recent, self.ptrs) < 1:
            raise ValueError(f"every bank size must be >= 1, got {self}")

    @classmethod
    def for_model(cls, model, slots: int, max_cond_frames: int, num_maskmem: int,
                  samurai: Optional[SamuraiConfig] = None) -> "BankLayout":
        """The layout of a tracker of ``slots`` objects on ``model`` (a SAM2 or EdgeTAM), with
        SAMURAI's memory selection where ``samurai`` is given."""
        cfg = model.cfg
        return cls(slots, max_cond_frames, num_maskmem - 1, cfg.max_obj_ptrs - 1, cfg.feat_size, cfg.mem_dim,
                   cfg.d_model, model.memory_tokens_per_frame, samurai)

    @property
    def hw(self) -> int:
        """T, the tokens of one memory frame."""
        return self.mem_tokens or self.feat_size**2

    @property
    def low_res(self) -> int:
        """Side of the decoder's mask logits."""
        return 4 * self.feat_size

    @property
    def mem_entries(self) -> int:
        return self.cond + self.recent

    @property
    def ptr_entries(self) -> int:
        return self.cond + self.ptrs


class BankState(NamedTuple):
    """The bank as plain tensors: the state a frame step takes and returns (and what an
    exported step has as inputs and outputs)."""

    mem: Tensor  # (S, K + R, T, C_mem) bfloat16 spatial memories (T tokens each), as upstream stores them
    mem_frame: Tensor  # (S, K + R) int64 frame of each memory, -1 = empty
    ptr: Tensor  # (S, K + P, C) float32 object pointers
    ptr_frame: Tensor  # (S, K + P) int64 frame of each pointer, -1 = empty
    low_res: Tensor  # (S, 1, 4h, 4w) float32 last mask logits
    score: Tensor  # (S, 1) float32 last object-score logit
    cond_seen: Tensor  # (S,) int64 conditioning frames ever written (upstream orders them by it)
    active: Tensor  # (S,) bool slot holds an object
    # SAMURAI's memory selection (unused with SAM 2's): each slot's box filter (MotionState),
    kf_mean: Tensor  # (S, 8) float32
    kf_cov: Tensor  # (S, 8, 8) float32
    kf_stable: Tensor  # (S,) int64 SAMURAI's stable_frames
    kept: Tensor  # (S,) int64 frames that passed the memory test, written to the ring
    first_frame: Tensor  # (S,) int64 frame the object was first prompted on
    # frame stays last: a camera batch (sam2_ros.step.joint) stacks every field before it per slot
    frame: Tensor  # () int64 index of the next frame to track ((S,) per slot in a camera batch)


class MemoryBank(nn.Module):
    """:class:`BankState` as preallocated buffers (non-persistent: not part of any checkpoint)."""

    def __init__(self, layout: BankLayout, device: torch.device | str = "cpu", mem_dtype: torch.dtype = torch.bfloat16) -> None:
        """``mem_dtype``: float32 for runtimes without bfloat16 (ONNX Runtime from numpy); the
        values written are bfloat16-rounded either way."""
        super().__init__()
        self.layout = L = layout
        s = L.slots
        shapes = {
            "mem": ((s, L.mem_entries, L.hw, L.mem_dim), mem_dtype, 0),
            "mem_frame": ((s, L.mem_entries), torch.int64, -1),
            "ptr": ((s, L.ptr_entries, L.d_model), torch.float32, 0),
            "ptr_frame": ((s, L.ptr_entries), torch.int64, -1),
            "low_res": ((s, 1, L.low_res, L.low_res), torch.float32, 0),
            "score": ((s, 1), torch.float32, 0),
            "cond_seen": ((s,), torch.int64, 0),
            "active": ((s,), torch.bool, False),
            "kf_mean": ((s, 8), torch.float32, 0),
            "kf_cov": ((s, 8, 8), torch.float32, 0),
            "kf_stable": ((s,), torch.int64, 0),
            "kept": ((s,), torch.int64, 0),
            "first_frame": ((s,), torch.int64, 0),
            "frame": ((), torch.int64, 0),
        }
        for name, (shape, dtype, fill) in shapes.items():
            self.register_buffer(name, torch.full(shape, fill, dtype=dtype, device=device), persistent=False)

    def state(self) -> BankState:
        return BankState(*(getattr(self, name) for name in BankState._fields))

    def write_(self, new: BankState) -> None:
        """Copy a step's new state into the buffers (in place: their addresses never change,
        which CUDA graphs need)."""
        for name, value in zip(BankState._fields, new):
            getattr(self, name).copy_(value)

    def clear_slot_(self, slot: int, active: bool = False) -> None:
        """Forget everything slot ``slot`` remembers; ``active`` marks it as holding a (new) object."""
        self.mem_frame[slot] = -1
        self.ptr_frame[slot] = -1
        self.low_res[slot] = 0
        self.score[slot] = 0
        self.cond_seen[slot] = 0
        self.active[slot] = active
        self.kf_stable[slot] = 0  # SAMURAI's filter starts again at the object's first decode,
        self.kept[slot] = 0
        self.first_frame[slot] = self.frame  # the frame tracked next (a device copy, no host sync)

    def reset_(self) -> None:
        """Empty every slot; the next frame is frame 0."""
        self.mem_frame.fill_(-1)
        self.ptr_frame.fill_(-1)
        self.low_res.zero_()
        self.score.zero_()
        self.cond_seen.zero_()
        self.active.fill_(False)
        self.kf_stable.zero_()
        self.kept.zero_()
        self.first_frame.zero_()
        self.frame.zero_()

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())
