"""Streaming multi-object tracker on SAM 2, with a bounded memory bank (no rclpy).

Frames arrive one at a time; objects are prompted (points, box or mask) on any frame,
corrected on any frame and removed at any time. Per frame the image is encoded once and all
objects go through memory attention, the decoder and the memory encoder as batches.

What an object remembers (and nothing else, so the state is constant on an endless stream):

* its conditioning frames (prompted frames), at most ``max_cond_frames``: the most recent
  ones, which are the ones Meta's ``max_cond_frames_in_attn`` would select for a frame that
  comes after all of them; a conditioning frame pushed out still serves as a recent frame
  while it is one, as upstream does with unselected conditioning frames;
* the memories of its last ``num_maskmem - 1`` tracked frames;
* the object pointers of its last 15 frames (16 with the current one).

Numerically this is Meta's ``SAM2VideoPredictor`` driven one frame at a time (see
``test/test_tracker_parity.py``), with memories stored in bfloat16 as upstream stores them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .model.build import autocast, build_model, build_random_model, resolve_device, resolve_dtype
from .model.preprocess import check_image, frame_to_model_coords, to_frame_resolution, to_model_input
from .model.sam2 import SAM2, ImageFeatures, MaskPrediction
from .postprocess import fill_small_holes

ArrayLike = Union[np.ndarray, Sequence, Tensor]


class PromptError(ValueError):
    """A prompt that cannot be used; the message says what was wrong and what is accepted."""


@dataclass
class Prompt:
    """A prompt for one object on the frame passed with it.

    Attributes:
        obj_id: the object's id (an int >= 0). A new id starts an object; an existing id
            corrects it (points/box) or resets its mask (mask).
        points: (K, 2) x, y pixels of the frame; ``labels`` (K,) 1 foreground, 0 background.
        box: (4,) x0, y0, x1, y1 pixels (may be combined with points).
        mask: (H, W) bool mask at the frame's resolution (not combined with points or box).
    """

    obj_id: int
    points: Optional[ArrayLike] = None
    labels: Optional[ArrayLike] = None
    box: Optional[ArrayLike] = None
    mask: Optional[ArrayLike] = None

    def parsed(self, frame_hw: Tuple[int, int]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
        """Validate against a frame of size (H, W): returns (points (K, 2) with the box corners
        first, labels (K,) with 2/3 for box corners, mask (H, W) bool) or raises PromptError."""
        h, w = frame_hw
        oid = self.obj_id
        if isinstance(oid, bool) or not isinstance(oid, (int, np.integer)) or oid < 0:
            raise PromptError(f"obj_id must be an integer >= 0, got {oid!r}")
        if self.mask is not None:
            if self.points is not None or self.box is not None:
                raise PromptError(f"object {oid}: a mask prompt cannot be combined with points or a box; send them separately")
            mask = np.asarray(self.mask)
            if mask.shape != (h, w):
                raise PromptError(f"object {oid}: mask has shape {mask.shape}, the frame is {h} x {w}; masks must match the frame")
            return None, None, mask.astype(bool)
        if self.points is None and self.box is None:
            raise PromptError(f"object {oid}: the prompt has no points, box or mask")
        pts = np.zeros((0, 2), np.float32)
        labs = np.zeros((0,), np.int32)
        if (self.points is None) != (self.labels is None):
            raise PromptError(f"object {oid}: points and labels go together (labels: 1 foreground, 0 background)")
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float32).reshape(-1, 2) if np.size(self.points) else pts
            labs = np.asarray(self.labels).reshape(-1)
            if len(pts) == 0:
                raise PromptError(f"object {oid}: the point list is empty")
            if labs.shape != (len(pts),):
                raise PromptError(f"object {oid}: {len(pts)} points but {labs.size} labels")
            if not np.isin(labs, (0, 1)).all():
                raise PromptError(f"object {oid}: labels must be 1 (foreground) or 0 (background), got {labs.tolist()}")
            labs = labs.astype(np.int32)
            _check_in_frame(pts, frame_hw, f"object {oid}: point")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float32).reshape(-1)
            if box.shape != (4,):
                raise PromptError(f"object {oid}: box must be x0, y0, x1, y1, got {box.size} numbers")
            corners = box.reshape(2, 2)
            _check_in_frame(corners, frame_hw, f"object {oid}: box corner")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise PromptError(f"object {oid}: box {box.tolist()} needs x1 > x0 and y1 > y0")
            # SAM 2 takes a box as two labelled corner points, before any clicks.
            pts = np.concatenate((corners, pts))
            labs = np.concatenate((np.array([2, 3], np.int32), labs))
        return pts, labs, None


def _check_in_frame(pts: np.ndarray, frame_hw: Tuple[int, int], what: str) -> None:
    h, w = frame_hw
    if not np.isfinite(pts).all():
        raise PromptError(f"{what} coordinates must be finite, got {pts.tolist()}")
    bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
    if bad.any():
        raise PromptError(f"{what} {pts[bad][0].tolist()} lies outside the {w} x {h} frame (x in [0, {w}], y in [0, {h}])")


@dataclass
class TrackResult:
    """The tracker's answer for one frame."""

    frame_index: int
    object_ids: List[int]  # ascending
    logits: Tensor  # (N, H, W) float32 mask logits at the frame's resolution
    scores: Tensor  # (N,) object-presence probability
    mask_threshold: float = 0.0

    @property
    def masks(self) -> Tensor:
        """(N, H, W) bool."""
        return self.logits > self.mask_threshold


@dataclass
class _Memory:
    """One frame's memory of one object."""

    features: Optional[Tensor]  # (C_mem, h, w) bfloat16; None once too old for the bank
    ptr: Tensor  # (C,) object pointer


@dataclass
class _Object:
    cond: "OrderedDict[int, _Memory]" = field(default_factory=OrderedDict)  # prompted frames
    cond_seen: int = 0  # conditioning frames ever stored (more than are kept, once over the cap)
    recent: Dict[int, _Memory] = field(default_factory=dict)  # tracked frames in the window
    low_res: Optional[Tensor] = None  # (1, 1, S/4, S/4) latest logits (previous mask for corrections)
    score: Optional[Tensor] = None  # (1, 1) latest object-score logit


@dataclass
class _Step:
    """This frame's result for one object, before it is written to memory."""

    pred: MaskPrediction  # batch of 1
    from_prompt: bool  # prompted outputs are memorised binarized from their low-res logits
    cond: bool  # stored as a conditioning frame


class Tracker:
    """Track many objects through a stream of frames with SAM 2.

    Args:
        model: a loaded :class:`~sam2_ros.model.sam2.SAM2`.
        max_objects: the most objects tracked at once.
        num_maskmem: memory frames per object (1 conditioning + recent ones), at most the
            model's 7.
        max_cond_frames: conditioning frames kept per object (>= 2, as upstream requires).
        mask_threshold: logit above which a pixel is in the mask.
        fill_hole_area: fill background holes up to this many low-res pixels (upstream's GPU
            post-processing; 0 = off, which is what upstream does on CPU).
        corrections_as_cond: a corrected frame becomes a conditioning frame (upstream's
            ``add_all_frames_to_correct_as_cond``); False keeps it a plain recent frame.
        dtype: compute dtype on CUDA (``auto``: bfloat16); float32 on the CPU.
        compile: ``torch.compile`` the image encoder (first frames are slow); a string is
            the compile mode, e.g. ``"reduce-overhead"`` (CUDA graphs on GPUs).
        batch_objects: run the objects of a frame as one batch. ``None``: on CUDA, and on a
            CPU up to 256 px, where it was measured faster (benchmarks/RESULTS.md); at larger
            sizes a CPU batch outgrows the caches and a loop is faster. Results are
            bit-identical either way.
        encoder: another image-encoder backend: a callable taking normalized images
            (B, 3, S, S) on the model's device and returning their
            :class:`~sam2_ros.model.sam2.ImageFeatures` (e.g. ONNX Runtime or TensorRT, see
            ``sam2_ros.backends``); default: the model's own ``encode_image``.
    """

    def __init__(
        self,
        model: SAM2,
        max_objects: int = 16,
        num_maskmem: int = 7,
        max_cond_frames: int = 4,
        mask_threshold: float = 0.0,
        fill_hole_area: int = 0,
        corrections_as_cond: bool = True,
        dtype: str = "auto",
        compile: Union[bool, str] = False,
        batch_objects: Optional[bool] = None,
        encoder: Optional[Callable[[Tensor], ImageFeatures]] = None,
    ) -> None:
        cfg = model.cfg
        if not 1 <= max_objects:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if not 1 <= num_maskmem <= cfg.num_maskmem:
            raise ValueError(f"num_maskmem must be in [1, {cfg.num_maskmem}] for this model, got {num_maskmem}")
        if max_cond_frames < 2:
            raise ValueError(f"max_cond_frames must be >= 2, got {max_cond_frames}")
        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        self.model = model.eval()
        self.device = model.device
        self.dtype = resolve_dtype(dtype, self.device)
        self.image_size = cfg.image_size
        self.max_objects = max_objects
        self.num_maskmem = num_maskmem
        self.max_cond_frames = max_cond_frames
        self.max_ptrs = cfg.max_obj_ptrs
        self.mask_threshold = float(mask_threshold)
        self.fill_hole_area = int(fill_hole_area)
        self.corrections_as_cond = corrections_as_cond
        if batch_objects is None:
            batch_objects = self.device.type == "cuda" or cfg.feat_size**2 <= 256
        self.batch_objects = bool(batch_objects)
        self._encode = encoder or model.encode_image
        if compile:
            mode = compile if isinstance(compile, str) else None
            self._encode = torch.compile(self._encode, mode=mode, dynamic=False)
        self._objects: "OrderedDict[int, _Object]" = OrderedDict()
        self._frame_index = -1
        self._frame_hw: Optional[Tuple[int, int]] = None
        self._mem_pos: Optional[Tensor] = None  # (1, hw, C_mem) constant position encoding of memories

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: Optional[str] = None,
        model: str = "tiny",
        image_size: int = 1024,
        device: str = "auto",
        **kwargs,
    ) -> "Tracker":
        """Load Meta's checkpoint (``None``: download the official SAM 2.1 file once).
        Keyword arguments go to :class:`Tracker`."""
        return cls(build_model(checkpoint, model=model, image_size=image_size, device=resolve_device(device)), **kwargs)

    @classmethod
    def from_config(cls, model: str = "tiny", image_size: int = 1024, device: str = "auto", seed: int = 0, **kwargs) -> "Tracker":
        """A tracker with random weights: the whole pipeline runs, the masks mean nothing."""
        return cls(build_random_model(model, image_size, resolve_device(device), seed=seed), **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def object_ids(self) -> List[int]:
        return sorted(self._objects)

    @property
    def frame_index(self) -> int:
        """Index of the last frame tracked (-1 before the first)."""
        return self._frame_index

    def remove_object(self, obj_id: int) -> bool:
        """Forget an object and all its memory. Returns False if it was not tracked."""
        return self._objects.pop(obj_id, None) is not None

    def reset(self) -> None:
        """Drop every object; the next frame starts a new stream."""
        self._objects.clear()
        self._frame_index = -1
        self._frame_hw = None

    def state_tensors(self) -> List[Tensor]:
        """Every tensor the tracker holds between frames (for memory accounting)."""
        out = []
        for obj in self._objects.values():
            for mem in list(obj.cond.values()) + list(obj.recent.values()):
                out.append(mem.ptr)
                if mem.features is not None:
                    out.append(mem.features)
            out += [t for t in (obj.low_res, obj.score) if t is not None]
        return out

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_tensors())

    # ------------------------------------------------------------------ track
    @torch.inference_mode()
    def track(self, frame: np.ndarray, prompts: Sequence[Prompt] = ()) -> TrackResult:
        """Track every object on ``frame`` (H x W x 3 uint8 RGB) after applying ``prompts``.

        All prompts are validated before anything changes: a bad prompt raises
        :class:`PromptError` and leaves the tracker as it was.
        """
        hw = check_image(frame, "frame")
        if self._objects and hw != self._frame_hw:
            raise ValueError(
                f"frame size changed from {self._frame_hw[1]}x{self._frame_hw[0]} to {hw[1]}x{hw[0]}; "
                "call reset() to start a new stream (objects' memories are tied to the old view)"
            )
        point_prompts: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        mask_prompts: Dict[int, np.ndarray] = {}
        for p in prompts:
            pts, labs, mask = p.parsed(hw)
            oid = int(p.obj_id)
            if oid in point_prompts or oid in mask_prompts:
                raise PromptError(f"object {oid} has two prompts on this frame; put all its points in one Prompt")
            if mask is not None:
                mask_prompts[oid] = mask
            else:
                point_prompts[oid] = (pts, labs)
        new_ids = [o for o in list(point_prompts) + list(mask_prompts) if o not in self._objects]
        if len(self._objects) + len(new_ids) > self.max_objects:
            raise PromptError(
                f"{len(new_ids)} new object(s) would make {len(self._objects) + len(new_ids)} objects; "
                f"max_objects is {self.max_objects}: remove objects first or raise max_objects"
            )

        self._frame_hw = hw
        t = self._frame_index + 1
        dev = self.device
        with autocast(dev, self.dtype):
            feats = self._encode(to_model_input([frame], self.image_size, dev))
            steps: Dict[int, _Step] = {}
            # 1. Objects with memory (not given a new mask) are tracked, batched.
            tracked = [o for o in self._objects if o not in mask_prompts]
            conditioned = self._track_from_memory(t, feats, tracked, steps)
            # 2. Clicks and boxes: corrections of tracked objects, or new objects.
            for oid, (pts, labs) in point_prompts.items():
                coords = frame_to_model_coords(torch.from_numpy(pts).to(dev)[None], hw, self.image_size)
                labels = torch.from_numpy(labs).to(dev)[None]
                multimask = self.model.use_multimask(len(labs))
                if oid in conditioned:
                    prev = steps[oid].pred.low_res_masks.clamp(-32.0, 32.0)
                    pred = self._filled(self.model.predict_masks(conditioned[oid], feats.high_res, coords, labels, prev, multimask))
                    steps[oid] = _Step(pred, True, self.corrections_as_cond)
                else:
                    emb = self.model.image_embedding(feats)
                    pred = self._filled(self.model.predict_masks(emb, feats.high_res, coords, labels, None, multimask))
                    steps[oid] = _Step(pred, True, True)
            # 3. Masks are taken as they are.
            for oid, mask in mask_prompts.items():
                pred = self._filled(self.model.mask_as_output(feats, self._mask_to_model(mask)))
                steps[oid] = _Step(pred, True, oid not in self._objects or self.corrections_as_cond)
            for oid in new_ids:
                self._objects[oid] = _Object()
            self._remember(t, feats, steps)
        self._frame_index = t
        return self._result(t, hw)

    def _mask_to_model(self, mask: np.ndarray) -> Tensor:
        """(H, W) bool -> (1, 1, S, S) float binary mask, resized as upstream does."""
        m = torch.from_numpy(mask).to(self.device, torch.float32)[None, None]
        s = self.image_size
        if m.shape[-2:] != (s, s):
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        return m

    def _track_from_memory(self, t: int, feats: ImageFeatures, ids: List[int], steps: Dict[int, _Step]) -> Dict[int, Tensor]:
        """Track ``ids`` on frame t; returns each object's memory-conditioned features."""
        groups: Dict[Tuple[int, int], List[Tuple[int, list, list]]] = {}
        for oid in ids:
            spatial, ptrs = self._memory_of(self._objects[oid], t)
            groups.setdefault((len(spatial), len(ptrs)), []).append((oid, spatial, ptrs))
        conditioned = {}
        batches = []
        for (_, n_ptrs), members in groups.items():
            # Objects whose banks have the same layout attend together: same token count,
            # so the batch is exact (no padding, no masking).
            step = len(members) if self.batch_objects else 1
            batches += [(n_ptrs, members[i : i + step]) for i in range(0, len(members), step)]
        for n_ptrs, members in batches:
            b = len(members)
            memory, memory_pos, ptr_tokens = self._assemble(members, n_ptrs)
            batch = feats.expand(b)
            pix = self.model.condition_on_memory(batch, memory, memory_pos, ptr_tokens)  # (B, C, h, w)
            pred = self._filled(self.model.predict_masks(pix, batch.high_res, multimask=self.model.use_multimask(0)))
            for i, (oid, _, _) in enumerate(members):
                steps[oid] = _Step(_row(pred, i), False, False)
                conditioned[oid] = pix[i : i + 1]
        return conditioned

    def _memory_of(self, obj: _Object, t: int) -> Tuple[list, list]:
        """The object's memory for frame t, in upstream's order.

        Returns spatial memories [(features, frames_back)] (conditioning frames first, then
        recent frames oldest first) and pointers [(ptr, signed frame offset)].
        """
        cond = list(obj.cond.items())
        if obj.cond_seen > self.max_cond_frames:
            # Upstream, once it holds more conditioning frames than it attends to, lists the
            # selected ones nearest first; the order only changes float rounding, but memories
            # are bf16-rounded, so it is kept.
            cond.reverse()
        spatial = [(m.features, 0) for _, m in cond]
        for back in range(self.num_maskmem - 1, 0, -1):
            m = obj.recent.get(t - back)
            if m is not None and m.features is not None:
                spatial.append((m.features, back))
        ptrs = [(m.ptr, t - f) for f, m in cond if f <= t]
        for back in range(1, self.max_ptrs):
            m = obj.recent.get(t - back)
            if m is not None:
                ptrs.append((m.ptr, back))
        return spatial, ptrs

    def _assemble(self, members, n_ptrs: int) -> Tuple[Tensor, Tensor, int]:
        """Stack the members' memories: tokens and positions (B, M, C_mem), and the number of
        object-pointer tokens at the end."""
        model, dtype = self.model, self._mem_pos.dtype
        mems, poss, ptrs, offsets = [], [], [], []
        for _, spatial, plist in members:
            mems.append(torch.cat([f.flatten(1).t() for f, _ in spatial]).to(dtype))  # (n*hw, C_mem)
            poss.append(torch.cat([self._mem_pos[0] + model.memory_tpos(back)[0] for _, back in spatial]))
            ptrs.append(torch.stack([p for p, _ in plist]))  # (P, C)
            offsets.append([o for _, o in plist])
        memory, memory_pos = torch.stack(mems), torch.stack(poss)  # (B, n*hw, C_mem)
        if n_ptrs == 0:
            return memory, memory_pos, 0
        offs = torch.tensor(offsets, dtype=torch.float32, device=self.device)
        if not model.cfg.use_signed_tpos_enc_to_obj_ptrs:
            offs = offs.abs()
        tokens, tpos = model.pointer_tokens(torch.stack(ptrs), offs, self.max_ptrs)
        return torch.cat((memory, tokens.to(memory.dtype)), 1), torch.cat((memory_pos, tpos.to(memory.dtype)), 1), tokens.shape[1]

    def _filled(self, pred: MaskPrediction) -> MaskPrediction:
        """Apply the optional hole filling to the low-res logits (what is output, and what a
        later correction or prompt memory starts from; tracked memories use the unfilled
        high-res masks, as upstream)."""
        if self.fill_hole_area > 0:
            pred.low_res_masks = fill_small_holes(pred.low_res_masks, self.fill_hole_area)
        return pred

    def _remember(self, t: int, feats: ImageFeatures, steps: Dict[int, _Step]) -> None:
        """Encode this frame's memory of every object in one batch and update the banks."""
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
        if self._mem_pos is None:
            self._mem_pos = pos[:1].flatten(2).transpose(1, 2).float()  # (1, hw, C_mem)
        # Upstream keeps memories in bfloat16: the same rounding, half the bytes.
        mem = mem.to(torch.bfloat16)
        for i, oid in enumerate(ids):
            obj, st = self._objects[oid], steps[oid]
            entry = _Memory(mem[i].clone(), st.pred.obj_ptr[0].float().clone())
            if st.cond:
                obj.recent.pop(t, None)
                obj.cond[t] = entry
                obj.cond_seen += 1
                while len(obj.cond) > self.max_cond_frames:
                    # The oldest conditioning frame leaves the attention set but, while it is
                    # recent, still counts as a recent frame (as upstream's unselected ones).
                    f, old = obj.cond.popitem(last=False)
                    obj.recent[f] = old
            else:
                obj.recent[t] = entry
            obj.low_res = st.pred.low_res_masks.float()
            obj.score = st.pred.object_score_logits.float()
            self._evict(obj, t)

    def _evict(self, obj: _Object, t: int) -> None:
        """Keep only what frame t + 1 can use: pointers of the last max_ptrs - 1 frames,
        spatial memories of the last num_maskmem - 1."""
        for f in list(obj.recent):
            back = t + 1 - f
            if back >= self.max_ptrs:
                del obj.recent[f]
            elif back >= self.num_maskmem and obj.recent[f].features is not None:
                obj.recent[f] = _Memory(None, obj.recent[f].ptr)

    def _result(self, t: int, hw: Tuple[int, int]) -> TrackResult:
        ids = self.object_ids
        if not ids:
            h, w = hw
            empty = torch.zeros(0, h, w)
            return TrackResult(t, [], empty, torch.zeros(0), self.mask_threshold)
        low = torch.cat([self._objects[o].low_res for o in ids])  # (N, 1, S/4, S/4)
        scores = torch.sigmoid(torch.cat([self._objects[o].score for o in ids])[:, 0])
        logits = to_frame_resolution(low, hw)[:, 0]  # (N, H, W)
        return TrackResult(t, ids, logits.cpu(), scores.cpu(), self.mask_threshold)


def _row(pred: MaskPrediction, i: int) -> MaskPrediction:
    sl = slice(i, i + 1)
    return MaskPrediction(
        pred.low_res_multimasks[sl], pred.ious[sl], pred.low_res_masks[sl], pred.high_res_masks[sl],
        pred.obj_ptr[sl], pred.object_score_logits[sl],
    )
