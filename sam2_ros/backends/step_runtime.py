"""The static frame step on ONNX Runtime or a TensorRT 10 engine, behind the interface of
:class:`sam2_ros.step.compiled.FrameStep` (a ``bank`` and ``__call__(image, prompts)``), so that
``Tracker(frame_step=...)`` runs it (``python export/export_onnx.py --part step`` writes the file).

The image encoder runs first (the model's own, or an encoder backend), then the step graph;
the bank stays in this object's buffers, fed to the graph and replaced by its ``next_*``
outputs every frame. Files are checked before use: made for this model, image size and weights,
and for the tracker's bank layout (capacity, conditioning and recent frames, prompt points);
a mismatch raises :class:`BackendMismatchError` saying what differs.

The TensorRT runner is written against TensorRT 10's documented Python API (name-based I/O
tensors, ``set_tensor_address``, ``execute_async_v3``) and checked only on machines that have
TensorRT and a CUDA GPU (none of this project's CI machines).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..step.bank import BankLayout, BankState, MemoryBank
from ..step.frame_step import PromptBatch
from ..model.build import autocast
from ..model.sam2 import SAM2, ImageFeatures
from .metadata import BackendError, expected_facts, raise_if_different, read_onnx_metadata
from .step_export import INPUTS, OUTPUTS, layout_facts, tracked_batch

log = logging.getLogger(__name__)


def _expected(model: SAM2, layout: BankLayout, max_points: int) -> dict:
    return {**expected_facts(model, "step"), **layout_facts(layout, max_points)}


class _ExportedStep:
    """What both runtimes share: the encoder, the bank, the unprompted batch, the I/O order."""

    def __init__(self, model: SAM2, layout: BankLayout, max_points: int, dtype: torch.dtype,
                 encoder: Optional[Callable[[Tensor], ImageFeatures]], mem_dtype: torch.dtype) -> None:
        self.model, self.layout, self.dtype = model, layout, dtype
        self.bank = MemoryBank(layout, model.device, mem_dtype=mem_dtype)
        self._encode = encoder or model.encode_image
        self._tracked = tracked_batch(layout.slots, max_points, model.cfg.image_size, model.device)

    def _inputs(self, image: Tensor, prompts: Optional[PromptBatch]):
        with torch.inference_mode(), autocast(image.device, self.dtype):
            f = self._encode(image)
        feats = (f.feat.float(), f.pos.float(), *(x.float() for x in f.high_res))
        return (*feats, *self.bank.state(), *(prompts if prompts is not None else self._tracked))

    def _finish(self, outputs: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        n = len(BankState._fields)
        with torch.inference_mode():
            self.bank.write_(BankState(*outputs[:n]))
        return outputs[n], outputs[n + 1]


class OnnxRuntimeFrameStep(_ExportedStep):
    """The step graph on onnxruntime (CPU, or CUDA where the model is on a GPU)."""

    def __init__(self, model: SAM2, layout: BankLayout, path: str, max_points: int = 16,
                 dtype: torch.dtype = torch.float32, encoder=None, providers: Optional[Sequence] = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("step backend onnxruntime needs the onnxruntime package: pip install onnxruntime") from e
        from .onnxruntime_backend import choose_providers

        meta = read_onnx_metadata(path)
        raise_if_different(path, meta, _expected(model, layout, max_points),
                           "Export the step again for this tracker: python export/export_onnx.py --part step ...")
        super().__init__(model, layout, max_points, dtype, encoder, torch.float32)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # No spinning worker threads: they would take the cores from torch's encoder.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=choose_providers(providers, ort.get_available_providers(), model.device))
        except Exception as e:  # noqa: BLE001 - a file onnxruntime cannot load is a backend error
            raise BackendError(f"onnxruntime cannot load {path}: {e}") from e
        names = [i.name for i in self.session.get_inputs()]
        if names != list(INPUTS):
            raise BackendError(f"{path} is not a frame-step graph (inputs {names})")
        log.info("onnxruntime frame step %s (%d slots) on %s", path, layout.slots, ", ".join(self.session.get_providers()))

    def __call__(self, image: Tensor, prompts: Optional[PromptBatch] = None) -> Tuple[Tensor, Tensor]:
        feed = {n: t.detach().cpu().numpy() for n, t in zip(INPUTS, self._inputs(image, prompts))}
        out = self.session.run(list(OUTPUTS), feed)
        return self._finish([torch.from_numpy(o).to(self.model.device) for o in out])


class TensorRTFrameStep(_ExportedStep):
    """The step as a TensorRT 10 engine (``export/build_engine.py --onnx step.onnx``), its I/O
    bound to torch CUDA tensors. Checked only where TensorRT is installed (see module doc)."""

    def __init__(self, model: SAM2, layout: BankLayout, engine_path: str, max_points: int = 16,
                 dtype: torch.dtype = torch.float32, encoder=None) -> None:
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendError("step backend tensorrt needs TensorRT's Python package (JetPack: python3-libnvinfer; "
                               "elsewhere pip install tensorrt)") from e
        from .metadata import read_engine_metadata
        from .tensorrt_backend import _torch_dtype, deserialize, machine_facts

        if model.device.type != "cuda":
            raise BackendError(f"step backend tensorrt needs the model on a CUDA device, it is on {model.device}")
        meta = read_engine_metadata(engine_path)
        hint = "Build the engine again on this machine from a matching step ONNX: python export/build_engine.py ..."
        raise_if_different(engine_path, dict(meta.get("onnx_metadata", {})), _expected(model, layout, max_points), hint)
        raise_if_different(engine_path, {k: meta.get(k) for k in ("tensorrt_version", "gpu_name", "compute_capability")},
                           machine_facts(trt, model.device), hint)
        super().__init__(model, layout, max_points, dtype, encoder, torch.float32)
        self.runtime, self.engine = deserialize(trt, engine_path)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if set(names) != set(INPUTS) | set(OUTPUTS):
            raise BackendError(f"{engine_path} is not a frame-step engine (I/O tensors {names})")
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.outputs = [torch.empty(tuple(self.engine.get_tensor_shape(n)), dtype=self._dtypes[n], device=model.device)
                        for n in OUTPUTS]
        for n, t in zip(OUTPUTS, self.outputs):
            self.context.set_tensor_address(n, t.data_ptr())

    def __call__(self, image: Tensor, prompts: Optional[PromptBatch] = None) -> Tuple[Tensor, Tensor]:
        # TensorRT has no int64/bool I/O on every version: inputs are cast to the engine's types.
        inputs = [t.detach().to(self._dtypes[n]).contiguous() for n, t in zip(INPUTS, self._inputs(image, prompts))]
        for n, t in zip(INPUTS, inputs):
            self.context.set_tensor_address(n, t.data_ptr())
        stream = torch.cuda.current_stream(self.model.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        # The engine reads the inputs on this stream: keep them alive until it has.
        for t in inputs:
            t.record_stream(stream)
        fields = dict(zip(BankState._fields, self.outputs))
        outs = [o.to(getattr(self.bank, n).dtype) for n, o in fields.items()] + [o.float() for o in self.outputs[len(fields):]]
        return self._finish(outs)


STEP_BACKENDS = ("torch", "onnxruntime", "tensorrt")


def make_frame_step(name: str, model: SAM2, layout: BankLayout, path: Optional[str], max_points: int = 16,
                    dtype: torch.dtype = torch.float32, encoder=None):
    """The exported step ``name`` (onnxruntime | tensorrt) for a tracker of ``layout``."""
    if name == "onnxruntime":
        return OnnxRuntimeFrameStep(model, layout, path, max_points, dtype, encoder)
    if name == "tensorrt":
        return TensorRTFrameStep(model, layout, path, max_points, dtype, encoder)
    raise ValueError(f"unknown step backend {name!r}; choose one of {', '.join(STEP_BACKENDS)}")
