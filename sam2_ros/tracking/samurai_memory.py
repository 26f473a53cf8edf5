"""SAMURAI's memory selection in the tracker (``Tracker(memory_selection="samurai")``; no rclpy):
its options (:func:`samurai_settings`) and its state on the exact path (:class:`SamuraiMemory`).

Per object: its box filter (a :class:`~sam2_ros.step.memory_selection.MotionState` of one
slot), the ring of the R = ``num_maskmem - 1`` spatial memories SAMURAI attends to (the frame
of each entry, the count of frames that passed the memory test, and the memories themselves),
and the frame it was first prompted on. :class:`~sam2_ros.tracking.exact_path.ExactPath` calls
in where SAMURAI's tracking differs from SAM 2's:

* :meth:`SamuraiMemory.decode_options` for every decode: objects are present above
  ``min_obj_score_logits``, and a decode with three candidates keeps the one the filter
  picks (:func:`~sam2_ros.step.memory_selection.choose`, batched over the objects decoded
  together), which steps the filter;
* :meth:`SamuraiMemory.start` / :meth:`SamuraiMemory.restart` for a new object / a prompt on
  a tracked one (its filter starts again; its ring stays);
* :meth:`SamuraiMemory.spatial`: the recent memories a frame attends to are the ring's,
  whatever their age, with the temporal encoding of their rank;
* :meth:`SamuraiMemory.remember`: after the frame's memories are encoded, SAMURAI's memory
  test decides which ring entry each goes to (:func:`~sam2_ros.step.memory_selection.admit`,
  :func:`~sam2_ros.step.memory_selection.ring_write`).

The same functions as the static frame step's (:mod:`sam2_ros.step.samurai_step`), one
object at a time; the rules, and why the ring attends to exactly SAMURAI's frames:
:mod:`sam2_ros.step.memory_selection`. Object pointers stay SAM 2's
(:mod:`~sam2_ros.tracking.exact_memory`). The state is constant per object: R memories (the
same tensors the exact memory holds while they are recent), the filter and two counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..step import memory_selection as ms

MEMORY_SELECTIONS = ("sam2", "samurai")


def samurai_settings(memory_selection: str, options: Dict[str, object], num_maskmem: int, max_obj_ptrs: int,
                     prompt_buffer: int) -> Optional[ms.SamuraiConfig]:
    """The tracker's SAMURAI settings (None for SAM 2's memory selection) from its options
    (named as :class:`~sam2_ros.step.memory_selection.SamuraiConfig`'s fields; None = SAMURAI's
    default), or a ``ValueError`` saying what cannot work and what to do."""
    if memory_selection not in MEMORY_SELECTIONS:
        raise ValueError(f"memory_selection must be 'sam2' (SAM 2's memory: the last frames) or 'samurai' "
                         f"(motion-aware: SAMURAI's), got {memory_selection!r}")
    given = {k: v for k, v in options.items() if v is not None}
    if memory_selection == "sam2":
        if given:
            raise ValueError(f"{', '.join(given)}: SAMURAI's settings, used only with memory_selection='samurai'")
        return None
    for name, value in given.items():
        integer = name == "stable_frames_threshold"
        if isinstance(value, bool) or not isinstance(value, (int,) if integer else (int, float)):
            raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if num_maskmem < 2:
        raise ValueError("memory_selection='samurai' selects the recent memories (num_maskmem - 1 of them): "
                         f"num_maskmem must be >= 2, got {num_maskmem}")
    if max_obj_ptrs < num_maskmem:
        # SAMURAI stops its scan after max_obj_ptrs - 1 qualifying frames: fewer than the ring holds.
        raise ValueError(f"memory_selection='samurai' needs the model's max_obj_ptrs ({max_obj_ptrs}) >= num_maskmem "
                         f"({num_maskmem}): SAMURAI then attends to fewer memories than num_maskmem - 1, which a "
                         "bounded memory cannot reproduce; lower num_maskmem")
    if prompt_buffer:
        raise ValueError("memory_selection='samurai' has no prompt buffer (a prompt on a past frame would rewrite the "
                         "motion and memory choices of every frame after it): pass prompt_buffer=0")
    try:
        return ms.SamuraiConfig(**given)
    except ValueError as error:
        raise ValueError(f"memory_selection='samurai': {error}") from None


@dataclass
class _Motion:
    """One object's SAMURAI state."""

    state: ms.MotionState  # its box filter, (1, ...)
    ring: Tensor  # (1, R) int64 frame of each ring entry, -1 = empty
    kept: Tensor  # (1,) int64 frames that passed the memory test, written to the ring
    first_frame: int  # frame the object was first prompted on
    features: Dict[int, Tensor] = field(default_factory=dict)  # ring frame -> its memory (C_mem, h, w)
    # this frame's kept candidate, as its three-candidate decode chose it: (iou, kf_score, has_kf_score), each (1,)
    choice: Optional[Tuple[Tensor, Tensor, Tensor]] = None


class SamuraiMemory:
    """Every object's SAMURAI state on the exact path; see the module docstring."""

    def __init__(self, cfg: ms.SamuraiConfig, num_maskmem: int, device: torch.device) -> None:
        self.cfg = cfg
        self.recent = num_maskmem - 1
        self.device = device
        self.objects: Dict[int, _Motion] = {}

    # ------------------------------------------------------------------ objects
    def start(self, oid: int, t: int) -> None:
        """A new object, prompted first on frame t: a fresh filter and an empty ring."""
        self.objects[oid] = _Motion(ms.new_motion_state(1, self.device),
                                    torch.full((1, self.recent), -1, dtype=torch.int64, device=self.device),
                                    torch.zeros(1, dtype=torch.int64, device=self.device), t)

    def restart(self, oid: int) -> None:
        """A prompt on a tracked object: its filter starts again at its next three-candidate
        decode (this frame's, for one click); the ring and the first frame stay."""
        obj = self.objects[oid]
        obj.state = ms.restart(obj.state, torch.ones(1, dtype=torch.bool, device=self.device))
        obj.choice = None

    def remove(self, oid: int) -> None:
        self.objects.pop(oid, None)

    def reset(self) -> None:
        self.objects.clear()

    def state_tensors(self) -> List[Tensor]:
        out = []
        for obj in self.objects.values():
            out += [*obj.state, obj.ring, obj.kept, *obj.features.values()]
        return out

    # ------------------------------------------------------------------ per frame
    def decode_options(self, oids: Sequence[int]) -> dict:
        """Keyword arguments of ``SAM2.predict_masks`` for a decode of ``oids`` (one row each,
        in that order): SAMURAI's presence threshold and its choice among three candidates,
        which steps each object's filter and records the kept candidate's scores."""
        objs = [self.objects[o] for o in oids]

        def select(highs: Tensor, ious: Tensor) -> Tuple[Tensor, None]:
            state = ms.MotionState(*(torch.cat(parts) for parts in zip(*(o.state for o in objs))))
            c = ms.choose(self.cfg, state, highs, ious.float(), torch.ones(len(objs), dtype=torch.bool, device=ious.device))
            for i, obj in enumerate(objs):
                row = slice(i, i + 1)
                obj.state = ms.MotionState(*(x[row] for x in c.state))
                obj.choice = (c.iou[row], c.kf_score[row], c.has_kf_score[row])
            return c.index, None

        return dict(present_above=self.cfg.min_obj_score_logits, select=select)

    def spatial(self, oid: int, spatial: List[Tuple[Tensor, int]]) -> List[Tuple[Tensor, int]]:
        """The spatial memories frame t attends to, from SAM 2's (``exact_memory.memory_of``:
        [(features, frames back)], conditioning frames first with 0): the conditioning ones as
        they are, then every frame in the object's ring, oldest first, whatever its age; its
        "frames back" is its rank among them + 1 (the newest: 1), so that its temporal encoding
        is ``maskmem_tpos_enc[rank]`` (``SAM2.memory_tpos``), SAMURAI's."""
        obj = self.objects[oid]
        frames = sorted(obj.features)  # the ring's frames (see remember)
        return [(f, back) for f, back in spatial if back == 0] + \
            [(obj.features[f], len(frames) - i) for i, f in enumerate(frames)]

    def remember(self, t: int, oids: Sequence[int], features: Sequence[Tensor], ious: Tensor, scores: Tensor,
                 cond: Sequence[bool]) -> None:
        """Frame t's memories of ``oids`` (each (C_mem, h, w), as stored) into their rings.

        ``ious`` (B,): each decode's first predicted IoU (its only one for a single-mask decode,
        1 for a mask prompt), used where no three-candidate decode chose (whose kept candidate
        has its own IoU and motion score); ``scores`` (B, 1): object-score logits; ``cond``:
        the frame became a conditioning frame of the object (its ring place is emptied).
        SAMURAI's memory test as :func:`~sam2_ros.step.memory_selection.admit`, frames 0 and 1
        of an object (from its first prompt) excluded; then one host read for all objects:
        which frames their rings now hold (the exact path builds exactly the attended tokens)."""
        objs = [self.objects[o] for o in oids]
        n = len(objs)
        dev = ious.device
        iou, kf, has_kf = ious.float().clone(), torch.zeros(n, device=dev), torch.zeros(n, dtype=torch.bool, device=dev)
        for i, obj in enumerate(objs):
            if obj.choice is not None:
                iou[i], kf[i], has_kf[i] = (x[0] for x in obj.choice)
                obj.choice = None
        eligible = torch.tensor([t - o.first_frame >= 2 for o in objs], device=dev)
        admitted = ms.admit(self.cfg, iou, scores.float(), kf, has_kf) & eligible
        ring, kept = torch.cat([o.ring for o in objs]), torch.cat([o.kept for o in objs])
        is_cond = torch.tensor(list(cond), device=dev)
        _, ring, kept = ms.ring_write(ring, kept, torch.tensor(t, device=dev), torch.ones(n, dtype=torch.bool, device=dev),
                                      admitted, is_cond)
        for i, (obj, frames) in enumerate(zip(objs, ring.tolist())):
            obj.ring, obj.kept = ring[i : i + 1], kept[i : i + 1]
            if not cond[i]:
                obj.features[t] = features[i]
            obj.features = {f: obj.features[f] for f in frames if f >= 0}
