"""The exact path of the tracker: every object's memory as Meta's predictor keeps it (no rclpy).

Per frame, objects with memory are tracked from it (batched where their banks have the same
layout, so the batch is exact), clicks and boxes correct them or start new objects, mask
prompts are taken as they are, and the frame's memory of every object is encoded in one batch
(:mod:`~sam2_ros.tracking.exact_memory` holds what each object remembers and selects what a
frame attends to). A prompt buffer keeps the last frames' features so that
:meth:`ExactPath.prompt_past` can prompt them after they were tracked. Numerically Meta's
``SAM2VideoPredictor`` driven one frame at a time (``test/test_tracker_parity.py``); with
SAMURAI's memory selection (a :class:`~sam2_ros.tracking.samurai_memory.SamuraiMemory`, which
these hooks call: decodes, prompts, the recent memories attended, where memories go),
SAMURAI's released predictor (``test/test_samurai_tracker.py``).

:class:`~sam2_ros.tracking.tracker.Tracker` owns one and calls it under its autocast; the
static frame step (:mod:`sam2_ros.step`) is the other path behind the same API.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.postprocess import fill_small_holes
from ..model.preprocess import frame_to_model_coords, mask_to_model
from ..model.sam2 import SAM2, ImageFeatures, MaskPrediction
from .exact_memory import Memory, ObjectMemory, Output, Pending, Windows, commit, evict, memory_of, store
from .samurai_memory import SamuraiMemory

PointPrompts = Dict[int, Tuple[np.ndarray, np.ndarray]]  # object id -> (points (K, 2) frame pixels, labels (K,))
MaskPrompts = Dict[int, np.ndarray]  # object id -> (H, W) bool


@dataclass
class _Step:
    """This frame's result for one object, before it is written to memory."""

    pred: MaskPrediction  # batch of 1
    from_prompt: bool  # prompted outputs are memorised binarized from their low-res logits
    cond: bool  # stored as a conditioning frame


class ExactPath:
    """Every object's memory and the prompt buffer; see the module docstring. The tracker
    validates prompts before calling in: nothing here refuses them."""

    def __init__(self, model: SAM2, num_maskmem: int, max_cond_frames: int, corrections_as_cond: bool,
                 fill_hole_area: int, batch_objects: bool, prompt_buffer: int,
                 samurai: Optional[SamuraiMemory] = None) -> None:
        self.model = model
        self.device = model.device
        self.image_size = model.cfg.image_size
        self.num_maskmem = num_maskmem
        self.max_cond_frames = max_cond_frames
        self.max_ptrs = model.cfg.max_obj_ptrs
        self.corrections_as_cond = corrections_as_cond
        self.fill_hole_area = fill_hole_area
        self.batch_objects = batch_objects
        self.prompt_buffer = prompt_buffer
        self.samurai = samurai  # None: SAM 2's memory selection
        self.objects: "OrderedDict[int, ObjectMemory]" = OrderedDict()
        self.frames: "OrderedDict[int, ImageFeatures]" = OrderedDict()  # the prompt buffer
        self._mem_pos: Optional[Tensor] = None  # (1, T, C_mem) constant position encoding of a memory frame

    @property
    def windows(self) -> Windows:
        return Windows(self.max_cond_frames, self.num_maskmem, self.max_ptrs, self.prompt_buffer)

    def set_prompt_buffer(self, frames: int, frame_index: int) -> None:
        """A new buffer size: a smaller one forgets the oldest frames (and the memories only
        they needed) at once."""
        self.prompt_buffer = frames
        if frame_index >= 0:
            for obj in self.objects.values():
                evict(self.windows, obj, frame_index)
            self._trim_frames(frame_index)

    def reset(self) -> None:
        self.objects.clear()
        self.frames.clear()
        if self.samurai is not None:
            self.samurai.reset()

    def remove(self, oid: int) -> bool:
        """Forget an object; False if it was not tracked."""
        if self.samurai is not None:
            self.samurai.remove(oid)
        return self.objects.pop(oid, None) is not None

    def state_tensors(self) -> List[Tensor]:
        """Every tensor held between frames, each once."""
        out = []
        for obj in self.objects.values():
            mems = list(obj.cond.values()) + list(obj.recent.values()) + [p.memory for p in obj.pending.values()]
            for mem in mems:
                out.append(mem.ptr)
                if mem.features is not None:
                    out.append(mem.features)
            out += [t for t in (obj.low_res, obj.score) if t is not None]
            for o in list(obj.outputs.values()) + [p.output for p in obj.pending.values()]:
                out += [o.low_res, o.score]
        for feats in self.frames.values():
            out += [feats.feat, feats.pos, *feats.high_res]
        if self.samurai is not None:
            out += self.samurai.state_tensors()
        return list({id(t): t for t in out}.values())

    # ------------------------------------------------------------------ frames
    def track(self, t: int, feats: ImageFeatures, hw: Tuple[int, int], point_prompts: PointPrompts,
              mask_prompts: MaskPrompts, new_ids: Sequence[int], new_size: bool) -> Tuple[List[int], Tensor, Tensor]:
        """Frame t (the next one) with its features and this frame's prompts. ``new_size``:
        the frame's size differs from the last one's (buffered frames can no longer be
        prompted). Returns every object's id, low-res logits (N, 1, S/4, S/4) and score logits
        (N, 1), ids ascending."""
        if new_size:
            self.frames.clear()
        commit(self.windows, self.objects.values())  # prompted outputs of earlier calls join the memory first, as upstream's preflight
        dev = self.device
        corrected = [o for o in list(point_prompts) + list(mask_prompts) if o in self.objects]
        steps: Dict[int, _Step] = {}
        # 1. Objects with memory (not given a new mask) are tracked, batched.
        tracked = [o for o in self.objects if o not in mask_prompts]
        conditioned = self._track_from_memory(t, feats, tracked, steps)
        if self.samurai is not None:  # a prompt (re)starts its object's filter
            for oid in corrected:
                self.samurai.restart(oid)
            for oid in new_ids:
                self.samurai.start(oid, t)
        # 2. Clicks and boxes: corrections of tracked objects, or new objects.
        for oid, (pts, labs) in point_prompts.items():
            coords = frame_to_model_coords(torch.from_numpy(pts).to(dev)[None], hw, self.image_size)
            labels = torch.from_numpy(labs).to(dev)[None]
            multimask = self.model.use_multimask(len(labs))
            opts = self._decode_options([oid])
            if oid in conditioned:
                prev = steps[oid].pred.low_res_masks.clamp(-32.0, 32.0)
                pred = self._filled(self.model.predict_masks(conditioned[oid], feats.high_res, coords, labels, prev, multimask, **opts))
                steps[oid] = _Step(pred, True, self.corrections_as_cond)
            else:
                emb = self.model.image_embedding(feats)
                pred = self._filled(self.model.predict_masks(emb, feats.high_res, coords, labels, None, multimask, **opts))
                steps[oid] = _Step(pred, True, True)
        # 3. Masks are taken as they are.
        for oid, mask in mask_prompts.items():
            present = {} if self.samurai is None else {"present_above": self.samurai.cfg.min_obj_score_logits}
            pred = self._filled(self.model.mask_as_output(feats, mask_to_model(mask, self.image_size, dev), **present))
            steps[oid] = _Step(pred, True, oid not in self.objects or self.corrections_as_cond)
        for oid in new_ids:
            self.objects[oid] = ObjectMemory()
        # Corrections of this frame join the memory with the next frame (upstream adds them
        # after the frame was tracked); until then prompt_past sees them as pending.
        self._remember(t, feats, steps, pending=corrected, latest=True)
        if self.prompt_buffer:
            self.frames[t] = feats
            for obj in self.objects.values():
                obj.tracked.add(t)
        for obj in self.objects.values():
            evict(self.windows, obj, t)
        self._trim_frames(t)
        ids = sorted(self.objects)
        return ids, *self._stack([Output(self.objects[o].low_res, self.objects[o].score) for o in ids])

    def prompt_past(self, p: int, hw: Tuple[int, int], point_prompts: PointPrompts, mask_prompts: MaskPrompts,
                    new_ids: Sequence[int]) -> Tuple[List[int], Optional[Tensor], Optional[Tensor]]:
        """Prompts on the buffered frame p (see :meth:`Tracker.prompt_past`). Returns the ids
        with an output on that frame and their low-res and score logits (None when none)."""
        feats = self.frames[p]
        dev = self.device
        steps: Dict[int, _Step] = {}
        for oid, (pts, labs) in point_prompts.items():
            obj = self.objects.get(oid)
            init = obj is None or p not in obj.tracked
            prev = self._output_at(obj, p) if obj is not None else None
            prev = prev.low_res.clamp(-32.0, 32.0) if prev is not None else None
            coords = frame_to_model_coords(torch.from_numpy(pts).to(dev)[None], hw, self.image_size)
            labels = torch.from_numpy(labs).to(dev)[None]
            if init:
                emb = self.model.image_embedding(feats)
            else:
                spatial, ptrs = memory_of(self.windows, obj, p)
                memory, memory_pos, n_ptr = self._assemble([(oid, spatial, ptrs)], len(ptrs))
                emb = self.model.condition_on_memory(feats, memory, memory_pos, n_ptr)
            multimask = self.model.use_multimask(len(labs))
            pred = self._filled(self.model.predict_masks(emb, feats.high_res, coords, labels, prev, multimask))
            steps[oid] = _Step(pred, True, init or self.corrections_as_cond)
        for oid, mask in mask_prompts.items():
            obj = self.objects.get(oid)
            init = obj is None or p not in obj.tracked
            pred = self._filled(self.model.mask_as_output(feats, mask_to_model(mask, self.image_size, dev)))
            steps[oid] = _Step(pred, True, init or self.corrections_as_cond)
        for oid in new_ids:
            self.objects[oid] = ObjectMemory()
        self._remember(p, feats, steps, pending=list(steps), latest=False)
        ids = [o for o in sorted(self.objects) if self._output_at(self.objects[o], p) is not None]
        return ids, *self._stack([self._output_at(self.objects[o], p) for o in ids])

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _output_at(obj: ObjectMemory, f: int) -> Optional[Output]:
        """The object's latest output on frame f: a pending prompt output, else the one in memory."""
        pend = obj.pending.get(f)
        return pend.output if pend is not None else obj.outputs.get(f)

    @staticmethod
    def _stack(outputs: List[Output]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        if not outputs:
            return None, None
        return torch.cat([o.low_res for o in outputs]), torch.cat([o.score for o in outputs])

    def _track_from_memory(self, t: int, feats: ImageFeatures, ids: List[int], steps: Dict[int, _Step]) -> Dict[int, Tensor]:
        """Track ``ids`` on frame t; returns each object's memory-conditioned features."""
        groups: Dict[Tuple[int, int], List[Tuple[int, list, list]]] = {}
        for oid in ids:
            spatial, ptrs = memory_of(self.windows, self.objects[oid], t)
            if self.samurai is not None:
                spatial = self.samurai.spatial(oid, spatial)
            groups.setdefault((len(spatial), len(ptrs)), []).append((oid, spatial, ptrs))
        conditioned = {}
        batches = []
        for (_, n_ptrs), members in groups.items():
            # Objects whose banks have the same layout attend together: same token count,
            # so the batch is exact (no padding, no masking).
            step = len(members) if self.batch_objects else 1
            batches += [(n_ptrs, members[i : i + step]) for i in range(0, len(members), step)]
        # Objects conditioned one at a time share the frame's part of memory attention (the
        # first layer's self-attention): computed once, the same bits as computed per object.
        prefix = self.model.memory_prefix(feats) if sum(len(m) == 1 for _, m in batches) > 1 else None
        for n_ptrs, members in batches:
            b = len(members)
            memory, memory_pos, ptr_tokens = self._assemble(members, n_ptrs)
            batch = feats.expand(b)
            shared = prefix if b == 1 else None
            pix = self.model.condition_on_memory(batch, memory, memory_pos, ptr_tokens, prefix=shared)  # (B, C, h, w)
            opts = self._decode_options([oid for oid, _, _ in members])
            pred = self._filled(self.model.predict_masks(pix, batch.high_res, multimask=self.model.use_multimask(0), **opts))
            for i, (oid, _, _) in enumerate(members):
                steps[oid] = _Step(_row(pred, i), False, False)
                conditioned[oid] = pix[i : i + 1]
        return conditioned

    def _assemble(self, members, n_ptrs: int) -> Tuple[Tensor, Tensor, int]:
        """Stack the members' memories: tokens and positions (B, M, C_mem), and the number of
        object-pointer tokens at the end."""
        model, dtype = self.model, self._mem_pos.dtype
        mems, poss, ptrs, offsets = [], [], [], []
        for _, spatial, plist in members:
            mems.append(torch.cat([f for f, _ in spatial]).to(dtype))  # (n*T, C_mem)
            poss.append(torch.cat([self._mem_pos[0] + model.memory_tpos(back)[0] for _, back in spatial]))
            ptrs.append(torch.stack([p for p, _ in plist]))  # (P, C)
            offsets.append([o for _, o in plist])
        memory, memory_pos = torch.stack(mems), torch.stack(poss)  # (B, n*T, C_mem)
        if n_ptrs == 0:
            return memory, memory_pos, 0
        offs = torch.tensor(offsets, dtype=torch.float32, device=self.device)
        if not model.cfg.use_signed_tpos_enc_to_obj_ptrs:
            offs = offs.abs()
        tokens, tpos = model.pointer_tokens(torch.stack(ptrs), offs, self.max_ptrs)
        return torch.cat((memory, tokens.to(memory.dtype)), 1), torch.cat((memory_pos, tpos.to(memory.dtype)), 1), tokens.shape[1]

    def _decode_options(self, oids: List[int]) -> dict:
        """``predict_masks``' keyword arguments for a decode of ``oids``: SAMURAI's (none for SAM 2)."""
        return {} if self.samurai is None else self.samurai.decode_options(oids)

    def _filled(self, pred: MaskPrediction) -> MaskPrediction:
        """Apply the optional hole filling to the low-res logits (what is output, and what a
        later correction or prompt memory starts from; tracked memories use the unfilled
        high-res masks, as upstream)."""
        if self.fill_hole_area > 0:
            pred.low_res_masks = fill_small_holes(pred.low_res_masks, self.fill_hole_area)
        return pred

    def _remember(self, t: int, feats: ImageFeatures, steps: Dict[int, _Step], pending: Sequence[int] = (),
                  latest: bool = True) -> None:
        """Encode frame t's memory of every object in ``steps`` in one batch; store it in the
        banks, or as pending (joining the memory with the next frame) for ``pending`` ids.
        ``latest``: t is the frame just tracked (its outputs are the objects' latest)."""
        if not steps:
            return
        ids = list(steps)
        s = self.image_size
        masks = []
        for oid in ids:
            st = steps[oid]
            if st.from_prompt:
                # Prompted outputs are memorised from their (low-res) logits, as upstream does.
                masks.append(F.interpolate(st.pred.low_res_masks, size=(s, s), mode="bilinear", align_corners=False))
            else:
                masks.append(st.pred.high_res_masks)
        binarize = torch.tensor([steps[o].from_prompt for o in ids], device=self.device)
        scores = torch.cat([steps[o].pred.object_score_logits for o in ids])  # (B, 1)
        mem, pos = self.model.encode_memory(feats.feat, torch.cat(masks), scores, binarize)
        # A memory frame is T tokens (SAM 2: its h*w map, EdgeTAM: its perceiver's latents).
        mem, pos = self.model.memory_as_tokens(mem), self.model.memory_as_tokens(pos)  # (B, T, C_mem)
        if self._mem_pos is None:
            self._mem_pos = pos[:1].float()  # (1, T, C_mem)
        # Upstream keeps memories in bfloat16: the same rounding, half the bytes.
        mem = mem.to(torch.bfloat16)
        pending = set(pending)
        entries = []
        for i, oid in enumerate(ids):
            obj, st = self.objects[oid], steps[oid]
            entry = Memory(mem[i].clone(), st.pred.obj_ptr[0].float().clone())
            entries.append(entry.features)
            out = Output(st.pred.low_res_masks.float(), st.pred.object_score_logits.float())
            if oid in pending:
                obj.pending[t] = Pending(entry, out, st.cond)  # a second prompt replaces it in place
            else:
                store(self.windows, obj, t, entry, out, st.cond)
            if latest:
                obj.low_res, obj.score = out.low_res, out.score
        if self.samurai is not None:
            ious = torch.cat([steps[o].pred.ious[:, 0] for o in ids])
            self.samurai.remember(t, ids, entries, ious, scores, [steps[o].cond for o in ids])

    def _trim_frames(self, frame_index: int) -> None:
        first = frame_index + 1 - self.prompt_buffer
        for f in [f for f in self.frames if f < first]:
            del self.frames[f]


def _row(pred: MaskPrediction, i: int) -> MaskPrediction:
    sl = slice(i, i + 1)
    return MaskPrediction(
        pred.low_res_multimasks[sl], pred.ious[sl], pred.low_res_masks[sl], pred.high_res_masks[sl],
        pred.obj_ptr[sl], pred.object_score_logits[sl],
    )
