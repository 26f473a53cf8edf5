"""Streaming multi-object tracker on SAM 2, with a bounded memory bank (no rclpy).

Frames arrive one at a time; objects are prompted (points, box or mask) on any frame,
corrected on any frame and removed at any time. Per frame the image is encoded once and all
objects go through memory attention, the decoder and the memory encoder as batches.

Two paths behind one API:

* the exact path (default, :mod:`~sam2_ros.tracking.exact_path`): each object's memory as
  upstream keeps it (:mod:`~sam2_ros.tracking.exact_memory`: the latest ``max_cond_frames``
  conditioning frames, the memories of the last ``num_maskmem - 1`` frames, the pointers of
  the last 15; a constant state), with ``prompt_buffer`` frames that :meth:`Tracker.prompt_past` can still prompt. Numerically
  Meta's ``SAM2VideoPredictor`` driven one frame at a time (``test/test_tracker_parity.py``),
  memories stored in bfloat16 as upstream stores them.
* the static frame step (``compile``, ``static`` or an exported ``step_backend``): the same
  windows in a fixed-capacity bank (``sam2_ros.step.bank``), all slots in one pure tensor step
  (``sam2_ros.step.frame_step``) that torch.compile, CUDA graphs, ONNX and TensorRT take whole.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..model.build import autocast, build_model, build_random_model, resolve_device, resolve_dtype
from ..model.preprocess import check_image, frame_to_model_coords, mask_to_model, to_frame_resolution, to_model_input
from ..model.sam2 import SAM2, ImageFeatures
from ..step.bank import BankLayout
from ..step.compiled import COMPILE_MODES, FrameStep
from ..step.frame_step import CORRECTION, MASK, NEW_POINTS, PromptBatch, build_prompt_batch
from .exact_path import ExactPath, MaskPrompts, PointPrompts
from .samurai_memory import SamuraiMemory, samurai_settings
from .text_tracking import TrackerText
from .types import FrameNotBuffered, Prompt, PromptError, TrackResult

__all__ = ["FrameNotBuffered", "Prompt", "PromptError", "TrackResult", "Tracker"]


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
        dtype: compute dtype (``auto``: bfloat16 on CUDA, float32 on the CPU, where it gives
            the official numbers exactly; ``bfloat16`` on the CPU is faster and close, not exact).
        compile: ``True`` or a mode (``"default"``, ``"reduce-overhead"``: CUDA graphs on
            GPUs, ``"max-autotune"``) compiles the whole frame step (``sam2_ros.step.frame_step``:
            encoder, memory attention, decoder, memory encoder, all objects as one batch)
            with ``fullgraph=True`` and static shapes; the first frames (the first prompted
            one too) pay the compilation, later ones never recompile. Implies ``static``.
        static: track through the static frame step (fixed-capacity bank of ``max_objects``
            slots, every slot computed every frame) even without compiling; ``None``: when
            ``compile`` is set. Its logits are within float rounding of the exact path
            (the default, bit-identical to Meta's predictor on the CPU). It does not support
            ``prompt_buffer`` or ``fill_hole_area`` yet (refused with the reason).
        max_prompt_points: the most points (box corners count as two) one prompt may have
            on the static path, whose prompt batch has this fixed size.
        step_backend: where the static frame step runs: ``torch`` (``compile`` applies), or
            ``onnxruntime`` / ``tensorrt`` with ``step_engine``, the file written by
            ``export/export_onnx.py --part step`` for this tracker's capacity (and, for
            TensorRT, built into an engine by ``export/build_engine.py``); implies ``static``.
        batch_objects: run the objects of a frame as one batch. ``None``: on CUDA, and on a
            CPU up to 256 px, where it was measured faster (benchmarks/RESULTS.md); at larger
            sizes a CPU batch outgrows the caches and a loop is faster. The loop is the
            official predictors' order, bit for bit; a batch is within float rounding of it
            (the same bits on some CPUs: an AMD EPYC; not on an Intel Xeon, whose matrix
            kernels round a batch's rows differently from a single row).
        encoder: another image-encoder backend: a callable taking normalized images
            (B, 3, S, S) on the model's device and returning their
            :class:`~sam2_ros.model.sam2.ImageFeatures` (e.g. ONNX Runtime or TensorRT, see
            ``sam2_ros.backends``); default: the model's own ``encode_image``.
        prompt_buffer: how many of the last tracked frames can still be prompted with
            :meth:`prompt_past` (0: none, the default). Each buffered frame keeps its image
            features (about 20 MB in float32 at 1024 px, 1.3 MB at 256 px) and each object's
            low-res logits on it (256 KB at 1024 px); the memory bank keeps the memories these
            frames need (``prompt_buffer`` more frames of them). The state stays bounded.
        memory_selection: ``"sam2"`` (default): SAM 2's memory, the last ``num_maskmem - 1``
            frames whatever they hold, and the candidate mask with the highest predicted IoU.
            ``"samurai"``: SAMURAI's motion-aware memory (Yang et al. 2024, training-free): a
            Kalman filter on each object's box picks among the decoder's three candidates, and
            only frames whose mask passed its memory test (predicted IoU, object score, motion
            agreement) are remembered, so occluders and look-alikes do not enter the memory.
            Numerically SAMURAI's released predictor on its protocol (prompts on the first
            frame); a prompt or correction later restarts the object's filter. Both paths;
            needs ``prompt_buffer=0``. The options below set its thresholds (None: SAMURAI's
            released configs', ``sam2_ros.step.memory_selection.SamuraiConfig``):
            ``kf_score_weight`` (0.25), ``stable_frames_threshold`` (15),
            ``stable_ious_threshold`` (0.3), ``memory_bank_iou_threshold`` (0.5),
            ``memory_bank_obj_score_threshold`` (0.0), ``memory_bank_kf_score_threshold``
            (0.0) and ``min_obj_score_logits`` (-1: an object counts as present from an
            object-score logit of -1 rather than 0, so masks whose score is in (-1, 0] are kept,
            not blanked, although their presence score is below 0.5).
        detector: text prompts (``Prompt(text="person . red cup")``): a Grounding DINO Hub id
            (``"IDEA-Research/grounding-dino-tiny"``) or local directory, or an object with
            ``detect(frame, query)``; ``detector_options``: its settings and when it runs
            (:class:`~sam2_ros.tracking.text_tracking.TrackerText`). Class labels
            (:attr:`TrackResult.labels`) need no detector.
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
        prompt_buffer: int = 0,
        static: Optional[bool] = None,
        max_prompt_points: int = 16,
        step_backend: str = "torch",
        step_engine: Optional[str] = None,
        memory_selection: str = "sam2",
        kf_score_weight: Optional[float] = None,
        stable_frames_threshold: Optional[int] = None,
        stable_ious_threshold: Optional[float] = None,
        memory_bank_iou_threshold: Optional[float] = None,
        memory_bank_obj_score_threshold: Optional[float] = None,
        memory_bank_kf_score_threshold: Optional[float] = None,
        min_obj_score_logits: Optional[float] = None,
        detector=None,
        detector_options: Optional[dict] = None,
    ) -> None:
        cfg = model.cfg
        options = dict(kf_score_weight=kf_score_weight, stable_frames_threshold=stable_frames_threshold,
                       stable_ious_threshold=stable_ious_threshold, memory_bank_iou_threshold=memory_bank_iou_threshold,
                       memory_bank_obj_score_threshold=memory_bank_obj_score_threshold,
                       memory_bank_kf_score_threshold=memory_bank_kf_score_threshold, min_obj_score_logits=min_obj_score_logits)
        samurai = samurai_settings(memory_selection, options, num_maskmem, cfg.max_obj_ptrs, prompt_buffer)
        if step_backend != "torch":
            if compile:
                raise ValueError(f"compile applies to the torch frame step; step_backend={step_backend!r} runs an "
                                 "exported one: pass compile=False")
            if not step_engine:
                raise ValueError(f"step_backend={step_backend!r} needs step_engine (from export/export_onnx.py --part step)")
            static = True if static is None else static
        if compile is not False and compile is not True and compile not in COMPILE_MODES:
            raise ValueError(f"compile must be False, True or one of {', '.join(COMPILE_MODES)}; got {compile!r}")
        static = bool(compile) if static is None else bool(static)
        if (compile or step_backend != "torch") and not static:
            raise ValueError("compile and exported steps run the static frame step: pass static=True (or leave it None)")
        if static:
            why = {"prompt_buffer > 0 (prompts on past frames)": prompt_buffer,
                   "fill_hole_area > 0 (hole filling)": fill_hole_area,
                   "num_maskmem = 1 (no recent memories)": num_maskmem == 1}
            for what, bad in why.items():
                if bad:
                    raise ValueError(f"the static frame step (compile/static) does not support {what} yet; "
                                     "use the exact path (compile=False, static=False) for it")
            if max_prompt_points < 1:
                raise ValueError(f"max_prompt_points must be >= 1, got {max_prompt_points}")
        if isinstance(prompt_buffer, bool) or not isinstance(prompt_buffer, (int, np.integer)) or prompt_buffer < 0:
            raise ValueError(f"prompt_buffer must be an integer >= 0, got {prompt_buffer!r}")
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
        self.static = static
        self.memory_selection = memory_selection
        self.samurai = samurai  # SAMURAI's settings (None: SAM 2's memory selection)
        self._max_objects = int(max_objects)
        self.num_maskmem = num_maskmem
        self.max_cond_frames = max_cond_frames
        self.mask_threshold = float(mask_threshold)
        self.corrections_as_cond = corrections_as_cond
        if batch_objects is None:
            batch_objects = self.device.type == "cuda" or cfg.feat_size**2 <= 256
        self._encode = encoder or model.encode_image
        self.max_prompt_points = int(max_prompt_points)
        self._step: Optional[FrameStep] = None
        self._slots: Dict[int, int] = {}  # object id -> bank slot (static path)
        if static:
            layout = BankLayout.for_model(model, max_objects, max_cond_frames, num_maskmem, samurai)
            if step_backend == "torch":
                self._step = FrameStep(model, layout, self.dtype, compile, encoder)
            else:
                from ..backends.step_runtime import make_frame_step

                self._step = make_frame_step(step_backend, model, layout, step_engine, self.max_prompt_points,
                                             self.dtype, encoder)
        self._exact = ExactPath(model, num_maskmem, max_cond_frames, corrections_as_cond, int(fill_hole_area),
                                bool(batch_objects), int(prompt_buffer),
                                None if samurai is None else SamuraiMemory(samurai, num_maskmem, self.device))
        self._frame_index = -1
        self._frame_hw: Optional[Tuple[int, int]] = None
        self.text = TrackerText(detector, detector_options, self.device)  # class labels, text prompts

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: Optional[str] = None,
        model: str = "tiny",
        image_size: int = 1024,
        device: str = "auto",
        fuse: bool = False,
        **kwargs,
    ) -> "Tracker":
        """Load a checkpoint: Meta's .pt file, a folder, or a Hugging Face Hub id (``facebook/sam2.1-hiera-tiny``,
        ``facebook/EdgeTAM``, or a SAM 2 saved by transformers); ``None``: the official checkpoint of ``model``
        (SAM 2.1's, or ``edgetam.pt`` for ``model="edgetam"``), downloaded once into the Hugging Face Hub cache.
        ``fuse`` (EdgeTAM only): fold its trunk's BatchNorms into its convs after loading, EdgeTAM's
        fastest CPU mode (outputs within ~1e-6 of the unfused model). Keyword arguments go to
        :class:`Tracker` (``detector="IDEA-Research/grounding-dino-tiny"`` for text prompts)."""
        net = build_model(checkpoint, model=model, image_size=image_size, device=resolve_device(device), fuse=fuse)
        return cls(net, **kwargs)

    @classmethod
    def from_config(cls, model: str = "tiny", image_size: int = 1024, device: str = "auto", seed: int = 0, **kwargs) -> "Tracker":
        """A tracker with random weights: the whole pipeline runs, the masks mean nothing."""
        return cls(build_random_model(model, image_size, resolve_device(device), seed=seed), **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def object_ids(self) -> List[int]:
        return sorted(self._slots if self.static else self._exact.objects)

    @property
    def max_objects(self) -> int:
        """The most objects tracked at once; settable, except on the static path, where it is
        the bank's capacity."""
        return self._max_objects

    @max_objects.setter
    def max_objects(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"max_objects must be an integer >= 1, got {n!r}")
        if self.static and n != self._max_objects:
            raise ValueError(f"max_objects is the static frame step's capacity ({self._max_objects}), fixed when "
                             "the tracker is built; build a new Tracker to change it")
        self._max_objects = int(n)

    @property
    def frame_index(self) -> int:
        """Index of the last frame tracked (-1 before the first)."""
        return self._frame_index

    @property
    def prompt_buffer(self) -> int:
        """How many of the last tracked frames :meth:`prompt_past` can prompt. Settable at any
        time: a smaller buffer forgets the oldest frames at once; a larger one fills up as
        frames are tracked."""
        return self._exact.prompt_buffer

    @prompt_buffer.setter
    def prompt_buffer(self, frames: int) -> None:
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 0:
            raise ValueError(f"prompt_buffer must be an integer >= 0, got {frames!r}")
        if frames and self.static:
            raise ValueError("the static frame step (compile/static) has no prompt buffer yet; "
                             "prompts on past frames need the exact path (compile=False)")
        if frames and self.samurai is not None:
            raise ValueError("memory_selection='samurai' has no prompt buffer: prompt_buffer stays 0")
        self._exact.set_prompt_buffer(int(frames), self._frame_index)

    @property
    def buffered_frames(self) -> List[int]:
        """Indices of the frames :meth:`prompt_past` can prompt, oldest first."""
        return list(self._exact.frames)

    def remove_object(self, obj_id: int) -> bool:
        """Forget an object and all its memory. Returns False if it was not tracked."""
        if self.static:
            slot = self._slots.pop(obj_id, None)
            if slot is not None:
                self._step.bank.clear_slot_(slot)
            return slot is not None
        return self._exact.remove(obj_id)

    def reset(self) -> None:
        """Drop every object and the prompt buffer; the next frame starts a new stream."""
        self._exact.reset()
        self._slots.clear()
        if self._step is not None:
            self._step.bank.reset_()
        self._frame_index = -1
        self._frame_hw = None
        self.text.reset()

    def state_tensors(self) -> List[Tensor]:
        """Every tensor the tracker holds between frames (for memory accounting)."""
        if self.static:
            return list(self._step.bank.buffers())
        return self._exact.state_tensors()

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_tensors())

    # ------------------------------------------------------------------ track
    @torch.inference_mode()
    def encode(self, frames: Sequence[np.ndarray]) -> List[ImageFeatures]:
        """Image features of ``frames`` (each H x W x 3 uint8 RGB, any size: each is resized to
        the model's input as :meth:`track` does), encoded as one batch; pass one as
        ``track(frame, prompts, features=...)``. Several trackers sharing one model (one per
        camera) encode their frames together this way. One frame gives exactly the features
        :meth:`track` computes itself; a batch of several may differ from one-at-a-time in the
        last bits where the CPU's batched kernels sum in another order. Compiled (with the
        model's own encoder), one frame runs the encoder graph :meth:`track` runs, several one
        batch graph that every tracker compiled on this model shares."""
        if not frames:
            return []
        if isinstance(self._step, FrameStep):
            # the static step's own encoder (compiled: the graph track() runs for one frame, a
            # shared batch graph for several)
            return self._step.encode(to_model_input(list(frames), self.image_size, self.device))
        with autocast(self.device, self.dtype):
            if self._encode is not self.model.encode_image:
                # another backend (ONNX Runtime, TensorRT): its graphs are built for one image
                return [self._encode(to_model_input([f], self.image_size, self.device)) for f in frames]
            feats = self._encode(to_model_input(list(frames), self.image_size, self.device))
        if len(frames) == 1:
            return [feats]
        # copies, not views: a frame kept in one camera's prompt buffer must not hold the batch
        return [ImageFeatures(feats.feat[i:i + 1].clone(), feats.pos[i:i + 1].clone(),
                              [x[i:i + 1].clone() for x in feats.high_res]) for i in range(len(frames))]

    @property
    def accepts_features(self) -> bool:
        """Whether :meth:`track` takes precomputed ``features`` (not with an exported frame
        step, whose graph starts at the image)."""
        return self._step is None or isinstance(self._step, FrameStep)

    @torch.inference_mode()
    def track(self, frame: np.ndarray, prompts: Sequence[Prompt] = (),
              features: Optional[ImageFeatures] = None) -> TrackResult:
        """Track every object on ``frame`` (H x W x 3 uint8 RGB) after applying ``prompts``.

        ``features``: the frame's image features from :meth:`encode` (of this tracker or one
        sharing its model), so that the image encoder does not run again; None: encoded here.

        All prompts are validated before anything changes: a bad prompt raises
        :class:`PromptError` and leaves the tracker as it was. A text prompt
        (``Prompt(text=...)``, with a ``detector``) and its detections:
        :mod:`~sam2_ros.tracking.text_tracking`; :attr:`TrackResult.labels` names the objects.
        """
        prompts = self.text.before(self, frame, prompts)
        return self.text.after(self._track(frame, prompts, features))

    @torch.inference_mode()
    def _track(self, frame: np.ndarray, prompts: Sequence[Prompt], features: Optional[ImageFeatures]) -> TrackResult:
        """:meth:`track` without text prompts and labels."""
        hw, (point_prompts, mask_prompts, new_ids) = self._checked(frame, prompts, features)
        if self.static:
            return self._track_static(frame, hw, point_prompts, mask_prompts, new_ids, features)

        new_size = hw != self._frame_hw
        self._frame_hw = hw
        t = self._frame_index + 1
        with autocast(self.device, self.dtype):
            if features is None:
                features = self._encode(to_model_input([frame], self.image_size, self.device))
            ids, low, score = self._exact.track(t, features, hw, point_prompts, mask_prompts, new_ids, new_size)
        self._frame_index = t
        return self._logits_result(t, hw, ids, low, score)

    @torch.inference_mode()
    def prompt_past(self, frame_index: int, prompts: Sequence[Prompt]) -> TrackResult:
        """Apply ``prompts`` to an earlier, already tracked frame still in the prompt buffer
        (:attr:`buffered_frames`, the last ``prompt_buffer`` frames; the last tracked frame
        included), as Meta's video predictor does when ``add_new_points_or_box`` /
        ``add_new_mask`` is called on an earlier frame before tracking goes on:

        * a new id, or an object not tracked on that frame (it started later, or on that
          frame through an earlier ``prompt_past``), starts there from the prompt alone (with
          its earlier prompt output on that frame as the mask input, if any); that frame
          becomes one of its conditioning frames, at its own index;
        * an object tracked on that frame is corrected there: the frame is tracked again
          from the object's memory as it is now (its conditioning frames, also later ones,
          and the frames before it), with its logits on that frame as the mask input; the
          frame becomes a conditioning frame (``corrections_as_cond``) or replaces its
          memory of that frame (a non-conditioning correction of a conditioning frame is
          not kept, as upstream);
        * a mask prompt sets the object's mask on that frame.

        The memories of later frames stay. The prompted outputs join the memory when the next
        frame is tracked; several ``prompt_past`` calls before that all see the memory as it
        was (and each other's outputs as the previous masks), as upstream's temporary outputs.

        Returns the frame's result: every object with an output on that frame (objects that
        started later have none), ``frame_index`` = that frame. Raises
        :class:`FrameNotBuffered` if the frame is not buffered, :class:`PromptError` for a
        bad prompt (nothing changes then).
        """
        p = int(frame_index)
        if self.static:
            raise FrameNotBuffered("the static frame step (compile/static) keeps no prompt buffer; "
                                   "prompt_past needs the exact path (compile=False) with prompt_buffer > 0")
        frames = self._exact.frames
        if p not in frames:
            have = (f"frames {min(frames)} to {max(frames)}" if frames else "no frame")
            raise FrameNotBuffered(
                f"frame {p} is not in the prompt buffer (prompt_buffer={self.prompt_buffer} keeps the last "
                f"{self.prompt_buffer} tracked frames; it holds {have}, the last tracked frame is {self._frame_index})"
            )
        hw = self._frame_hw
        point_prompts, mask_prompts, new_ids = self._parse(prompts, hw)
        with autocast(self.device, self.dtype):
            ids, low, score = self._exact.prompt_past(p, hw, point_prompts, mask_prompts, new_ids)
        return self.text.labelled(self._logits_result(p, hw, ids, low, score))

    def _checked(self, frame: np.ndarray, prompts: Sequence[Prompt], features: Optional[ImageFeatures]):
        """What :meth:`track` checks before anything changes: (frame size, parsed prompts)."""
        hw = check_image(frame, "frame")
        if features is not None and not self.accepts_features:
            raise ValueError("this tracker's exported frame step encodes the image itself: track(frame) without features")
        if features is not None and tuple(features.feat.shape[-2:]) != (self.model.cfg.feat_size,) * 2:
            raise ValueError(f"features of a {tuple(features.feat.shape[-2:])} feature map do not fit this "
                             f"tracker's model (feature size {self.model.cfg.feat_size}): encode with the same model")
        if self.object_ids and hw != self._frame_hw:
            raise ValueError(
                f"frame size changed from {self._frame_hw[1]}x{self._frame_hw[0]} to {hw[1]}x{hw[0]}; "
                "call reset() to start a new stream (objects' memories are tied to the old view)"
            )
        return hw, self._parse(prompts, hw)

    def _parse(self, prompts: Sequence[Prompt], hw: Tuple[int, int]) -> Tuple[PointPrompts, MaskPrompts, List[int]]:
        """Validate prompts for a frame of size ``hw``: (point prompts, mask prompts, new ids)."""
        point_prompts: PointPrompts = {}
        mask_prompts: MaskPrompts = {}
        for p in prompts:
            pts, labs, mask = p.parsed(hw)
            oid = int(p.obj_id)
            if oid in point_prompts or oid in mask_prompts:
                raise PromptError(f"object {oid} has two prompts on this frame; put all its points in one Prompt")
            if mask is not None:
                mask_prompts[oid] = mask
            else:
                point_prompts[oid] = (pts, labs)
        known = self.object_ids
        new_ids = [o for o in list(point_prompts) + list(mask_prompts) if o not in known]
        if len(known) + len(new_ids) > self.max_objects:
            raise PromptError(
                f"{len(new_ids)} new object(s) would make {len(known) + len(new_ids)} objects; "
                f"max_objects is {self.max_objects}: remove objects first or raise max_objects"
            )
        if self.static:
            for oid, (pts, _) in point_prompts.items():
                if len(pts) > self.max_prompt_points:
                    raise PromptError(
                        f"object {oid}: {len(pts)} points (a box counts as 2); the static frame step takes at most "
                        f"max_prompt_points={self.max_prompt_points}: send fewer or raise max_prompt_points"
                    )
        return point_prompts, mask_prompts, new_ids

    def _track_static(self, frame: np.ndarray, hw: Tuple[int, int], point_prompts, mask_prompts, new_ids,
                      features: Optional[ImageFeatures] = None) -> TrackResult:
        """:meth:`track` through the static frame step: objects are bank slots; a frame without
        prompts is one call of the (compiled) step, a prompted one builds its prompt batch first."""
        batch = self._static_prompts(hw, point_prompts, mask_prompts, new_ids)
        if features is not None:
            low, score = self._step(None, batch, features=features)
        else:
            low, score = self._step(to_model_input([frame], self.image_size, self.device), batch)
        return self._static_result(hw, low, score)

    def _static_prompts(self, hw: Tuple[int, int], point_prompts, mask_prompts, new_ids) -> Optional[PromptBatch]:
        """First half of a static frame: new objects get the lowest free slots (emptied); the
        frame's prompt batch, or None when it has no prompts."""
        self._frame_hw = hw
        for oid in new_ids:
            slot = min(set(range(self.max_objects)) - set(self._slots.values()))
            self._slots[oid] = slot
            self._step.bank.clear_slot_(slot, active=True)
        if not (point_prompts or mask_prompts):
            return None
        rows = {}
        for oid, (pts, labs) in point_prompts.items():
            kind = NEW_POINTS if oid in new_ids else CORRECTION
            coords = frame_to_model_coords(torch.from_numpy(pts), hw, self.image_size).numpy()
            cond = kind == NEW_POINTS or self.corrections_as_cond
            rows[self._slots[oid]] = (kind, coords, labs, None, self.model.use_multimask(len(labs)), cond)
        for oid, mask in mask_prompts.items():
            cond = oid in new_ids or self.corrections_as_cond
            rows[self._slots[oid]] = (MASK, None, None, mask_to_model(mask, self.image_size, self.device), False, cond)
        return build_prompt_batch(self.max_objects, self.max_prompt_points, self.image_size, self.device, rows)

    def _static_result(self, hw: Tuple[int, int], low: Tensor, score: Tensor) -> TrackResult:
        """Second half of a static frame: every slot's low-res logits (S, 1, 4h, 4w) and score
        logits (S, 1) -> the frame's result for the tracked objects."""
        self._frame_index += 1
        ids = self.object_ids
        index = torch.tensor([self._slots[o] for o in ids], dtype=torch.int64, device=self.device)
        return self._logits_result(self._frame_index, hw, ids, low.index_select(0, index), score.index_select(0, index))

    def _logits_result(self, t: int, hw: Tuple[int, int], ids: List[int], low: Optional[Tensor], score: Optional[Tensor]) -> TrackResult:
        """low-res logits (N, 1, S/4, S/4) and object-score logits (N, 1) -> the frame's result."""
        if not ids:
            h, w = hw
            return TrackResult(t, [], torch.zeros(0, h, w), torch.zeros(0), self.mask_threshold)
        scores = torch.sigmoid(score[:, 0])
        logits = to_frame_resolution(low, hw)[:, 0]  # (N, H, W)
        return TrackResult(t, ids, logits.cpu(), scores.cpu(), self.mask_threshold)

