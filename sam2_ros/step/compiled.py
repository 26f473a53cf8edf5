"""The static frame step compiled, and the module that runs it (no rclpy).

:class:`FrameStep` holds a bank and the step's constant tables and runs the step eagerly or
compiled (``torch.compile(fullgraph=True, dynamic=False)``; ``mode="reduce-overhead"`` captures
CUDA graphs on GPUs): three graphs, built once whatever objects come and go: the image
encoder, the tracking step and the prompted step. The compiled graphs take the bank as an
input and belong to the model (:class:`CompiledStep`): the trackers of several cameras on one
model share them, and a second camera compiles nothing.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..model.build import autocast
from ..model.sam2 import SAM2, ImageFeatures
from .bank import BankLayout, MemoryBank
from .frame_step import PromptBatch, StepTables, encode_features, prompted_in_place, tracked_in_place
from .joint import joint_prompted, joint_tracked

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledStep:
    """The compiled graphs of the static frame step for one model, compute dtype and compile
    mode, shared by every :class:`FrameStep` with those settings (one per camera in a process
    of several cameras; get it with :func:`compiled_step`).

    Nothing of a camera is inside: its bank and tables are inputs of the graphs, and the bank
    is written in place. Dynamo keeps compiled code per code object, behind guards; the inputs
    these graphs guard on are the same for every FrameStep that shares them (the same model
    and constants, tensors of the same shapes and dtypes), so a second camera's tracker with
    the bank layout of the first compiles nothing: it runs the first one's graphs. A bank of
    another layout (capacity, conditioning frames) has other shapes: its own graph
    (``dynamic=False``). Bank buffers are marked with ``torch._dynamo.mark_static_address``
    unguarded (``guard=False``, the default): dynamo then guards on their shapes, not on
    their identity (a guarded static address would be an ID_MATCH guard and recompile for
    every bank); CUDA graphs (``reduce-overhead``) treat them as fixed-address inputs,
    recording one graph per bank (cudagraph trees re-record on a new static address without
    counting it as an unexpected re-record) and replaying it in place. With
    ``inline_inbuilt_nn_modules`` (always on in torch 2.13) the model's parameters
    are graph inputs the same way, not constants.

    Three graphs: the image encoder of one frame, the tracking step, the prompted step;
    :meth:`encode_batch` adds one more for batches of 2 or more frames (their batch dimension
    dynamic: one graph for every camera count, compiled the first time cameras are encoded
    together).
    """

    def __init__(self, mode: Optional[str]) -> None:
        opts = dict(fullgraph=True, dynamic=False, mode=mode)
        self.encode = torch.compile(encode_features, **opts)
        self.track = torch.compile(tracked_in_place, **opts)
        self.prompted = torch.compile(prompted_in_place, **opts)
        # Measured on the CPU (tiny, 256 px, cold): a dynamic batch dimension compiles in about
        # 1.4 times one static size (78 s vs 56 s), so from three cameras on (batches of 2 and
        # 3: the shared worker batches the cameras that have a frame) it is cheaper than a graph
        # per size, and no batch size compiles mid-stream. B = 1 is not in it (dynamo
        # specializes sizes 0 and 1): a lone frame takes self.encode, the graph track() runs.
        self._encode_batch = torch.compile(_encode_batch_features, fullgraph=True, dynamic=None, mode=mode)
        # Several cameras' slots in one step (sam2_ros.step.joint): one graph per camera count.
        self.joint_track = torch.compile(joint_tracked, **opts)
        self.joint_prompted = torch.compile(joint_prompted, **opts)

    def encode_batch(self, model: SAM2, dtype: torch.dtype, images: Tensor) -> Tuple[Tensor, ...]:
        """:func:`encode_features` of a batch (B, 3, S, S), B >= 2, through the batch graph."""
        torch._dynamo.mark_dynamic(images, 0)
        return self._encode_batch(model, dtype, images)


def _encode_batch_features(model: SAM2, dtype: torch.dtype, images: Tensor) -> Tuple[Tensor, ...]:
    # Its own code object, so that the batch graph is not a recompilation of the one-frame
    # encoder (whose graph track() runs: a lone frame keeps its exact numbers).
    return encode_features(model, dtype, images)


# model -> {(dtype, mode): its CompiledStep}. Weak keys: the graphs go with the model (a
# CompiledStep holds no reference to it: the model is an argument of every call).
_COMPILED: "weakref.WeakKeyDictionary[SAM2, Dict[Tuple[torch.dtype, Optional[str]], CompiledStep]]" = weakref.WeakKeyDictionary()
_COMPILED_LOCK = threading.Lock()


def compiled_step(model: SAM2, dtype: torch.dtype, compile: Union[bool, str]) -> CompiledStep:
    """The :class:`CompiledStep` of ``model`` for ``dtype`` and ``compile`` (True or one of
    :data:`COMPILE_MODES`), made on the first call (thread-safe: cameras may configure
    concurrently) and the same object for every later one."""
    if compile is not True and compile not in COMPILE_MODES:
        raise ValueError(f"compile={compile!r}: choose True or one of {', '.join(COMPILE_MODES)}")
    mode = None if compile is True or compile == "default" else compile
    with _COMPILED_LOCK:
        per_model = _COMPILED.setdefault(model, {})
        if (dtype, mode) not in per_model:
            per_model[(dtype, mode)] = CompiledStep(mode)
        return per_model[(dtype, mode)]


class FrameStep(nn.Module):
    """A bank and the step that updates it, eager or compiled (the compiled graphs shared by
    every FrameStep of the same model, dtype and mode: :class:`CompiledStep`).

    ``encoder``: another image-encoder backend (normalized images (1, 3, S, S) ->
    :class:`ImageFeatures`); it then runs outside the compiled graphs.
    """

    def __init__(self, model: SAM2, layout: BankLayout, dtype: torch.dtype = torch.float32,
                 compile: Union[bool, str] = False, encoder: Optional[Callable[[Tensor], ImageFeatures]] = None) -> None:
        super().__init__()
        self.model, self.layout, self.dtype = model, layout, dtype
        self.bank = MemoryBank(layout, model.device)
        self.tables = StepTables(model, layout)
        self._encoder = encoder
        self.compiled: Optional[CompiledStep] = None
        if compile:
            self.compiled = compiled_step(model, dtype, compile)
            for buf in (*self.bank.buffers(), *self.tables.buffers()):
                # Fixed addresses: CUDA graphs replay in place on them. Unguarded (the
                # default): no recompilation per bank, see CompiledStep.
                torch._dynamo.mark_static_address(buf, guard=False)

    def _encode(self, image: Tensor) -> Tuple[Tensor, ...]:
        """One frame (1, 3, S, S) -> its flat features, as :func:`encode_features`."""
        if self._encoder is not None:
            with autocast(image.device, self.dtype):
                f = self._encoder(image)
            return (f.feat, f.pos, *f.high_res)
        if self.compiled is not None:
            return self.compiled.encode(self.model, self.dtype, image)
        return encode_features(self.model, self.dtype, image)

    @torch.inference_mode()
    def encode(self, images: Tensor) -> List[ImageFeatures]:
        """Normalized images (B, 3, S, S) -> the features of each (batch 1), as :meth:`forward`
        encodes a frame: one image gives exactly the features :meth:`forward` computes itself.
        Compiled with the default encoder, a batch of several runs the shared batch graph
        (:meth:`CompiledStep.encode_batch`). Each frame's features are its own tensors: a
        batch is split into copies, and compiled outputs are copied too (CUDA graphs
        overwrite theirs on the next call, perhaps another camera's)."""
        n = images.shape[0]
        if self._encoder is not None:
            # another backend: its graphs are built for one image
            return [self._features(self._encode(images[i:i + 1])) for i in range(n)]
        if n == 1:
            feats = self._encode(images)
            return [self._features(tuple(x.clone() for x in feats) if self.compiled is not None else feats)]
        if self.compiled is not None:
            feats = self.compiled.encode_batch(self.model, self.dtype, images)
        else:
            feats = encode_features(self.model, self.dtype, images)
        return [self._features(tuple(x[i:i + 1].clone() for x in feats)) for i in range(n)]

    @staticmethod
    def _features(feats: Tuple[Tensor, ...]) -> ImageFeatures:
        return ImageFeatures(feats[0], feats[1], list(feats[2:]))

    @torch.inference_mode()
    def forward(self, image: Optional[Tensor], prompts: Optional[PromptBatch] = None,
                features: Optional[ImageFeatures] = None) -> Tuple[Tensor, Tensor]:
        """One frame (normalized (1, 3, S, S)) for every slot: low-res logits (S, 1, 4h, 4w)
        and object-score logits (S, 1), valid until the next call of the shared graphs (any
        camera's: CUDA graphs reuse them).
        ``features``: the frame's features encoded already (e.g. batched with other cameras'
        frames); ``image`` is then not used and the encoder does not run."""
        if features is not None:
            feats = (features.feat, features.pos, *features.high_res)
        else:
            feats = self._encode(image)
        c = self.compiled
        args = (self.model, self.layout, self.tables, self.dtype, self.bank.state(), feats)
        if prompts is None:
            return (c.track if c is not None else tracked_in_place)(*args)
        return (c.prompted if c is not None else prompted_in_place)(*args, prompts)
