"""Image encoder on a TensorRT 10 engine, its I/O bound to torch CUDA tensors (no pycuda).

Written against TensorRT 10's documented Python API (``Runtime.deserialize_cuda_engine``, the
name-based I/O tensor API ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` /
``get_tensor_shape`` / ``get_tensor_dtype``, ``IExecutionContext.set_tensor_address`` and
``execute_async_v3`` on torch's current CUDA stream). Checked only on machines with TensorRT
and a CUDA GPU; this module is imported only when the backend is chosen.

The engine is built by ``export/build_engine.py`` from the encoder ONNX, which writes
``<engine>.json`` beside it: the engine is refused (``BackendMismatchError``) unless that file
says the same model, image size and weights as the running model, and the same TensorRT
version, GPU and compute capability as this machine, and unless the engine's SHA-256 is the one
recorded there (an engine replaced or corrupted after it was built; metadata written before
``engine_sha256`` was recorded is accepted with a warning). The file checks that need no
TensorRT are :func:`check_engine_file`. An engine is deserialized (native code reading the file)
only after every check passed: use engines from trusted builds only.
"""

from __future__ import annotations

import logging
import os
from typing import Dict

import torch
from torch import Tensor

from ..model.sam2 import ImageFeatures
from .metadata import (BackendError, BackendMismatchError, expected_facts, file_sha256, raise_if_different,
                       read_engine_metadata)

log = logging.getLogger(__name__)

OUTPUTS = ("feat", "high_res_0", "high_res_1")


def machine_facts(trt, device: torch.device) -> Dict[str, str]:
    """What an engine must have been built with to run here."""
    props = torch.cuda.get_device_properties(device)
    return {
        "tensorrt_version": trt.__version__,
        "gpu_name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
    }


def _torch_dtype(trt, dt):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if hasattr(trt, "int64"):  # TensorRT 10: the frame step's frame indices
        table[trt.int64] = torch.int64
    if dt not in table:
        raise BackendError(f"engine tensor type {dt} is not supported by the tensorrt encoder backend")
    return table[dt]


_HINT = "Build the engine again on this machine from a matching ONNX: python export/build_engine.py ..."


def check_engine_file(model, engine_path: os.PathLike) -> Dict:
    """The checks of an engine file that need no TensorRT: the engine and ``<engine>.json`` are
    there and readable, the engine's SHA-256 is the one recorded, and the recorded model, image
    size and weights are the running model's. Returns the metadata; raises
    :class:`BackendError` / :class:`BackendMismatchError` saying what is wrong."""
    meta = read_engine_metadata(engine_path)
    if not isinstance(meta, dict):
        raise BackendError(f"{engine_path}.json does not hold a JSON object")
    recorded = meta.get("engine_sha256")
    if recorded:
        actual = file_sha256(engine_path)
        if actual.lower() != str(recorded).lower():
            raise BackendMismatchError(
                f"{engine_path} has SHA-256 {actual}, but {engine_path}.json records {recorded}: the engine "
                f"was replaced or corrupted after it was built. {_HINT}")
    else:
        log.warning("%s.json records no engine_sha256 (written by an older build_engine.py): the engine file "
                    "itself is not verified; write the metadata again with --metadata-only", engine_path)
    onnx_meta = meta.get("onnx_metadata", {})
    if not isinstance(onnx_meta, dict):
        raise BackendError(f"{engine_path}.json: onnx_metadata is not a JSON object")
    raise_if_different(engine_path, dict(onnx_meta), expected_facts(model, "encoder"), _HINT)
    return meta


def deserialize(trt, engine_path: os.PathLike):
    """(runtime, engine) of a checked engine file; the runtime must outlive the engine."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with open(engine_path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    if engine is None:
        raise BackendError(f"TensorRT could not deserialize {engine_path} (see the TensorRT log above)")
    return runtime, engine


class TensorRTEncoder:
    def __init__(self, model, engine_path: str) -> None:
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendError(
                "encoder backend tensorrt needs TensorRT's Python package (on JetPack 6 it comes with the "
                "system: python3-libnvinfer; elsewhere pip install tensorrt)") from e
        self.device = model.device
        if self.device.type != "cuda":
            raise BackendError(f"encoder backend tensorrt needs the model on a CUDA device, it is on {self.device}")
        meta = check_engine_file(model, engine_path)  # hash, model, image size, weights
        found = {k: meta.get(k) for k in ("tensorrt_version", "gpu_name", "compute_capability")}
        raise_if_different(engine_path, found, machine_facts(trt, self.device), _HINT)
        self.model = model
        self.trt = trt
        self.runtime, self.engine = deserialize(trt, engine_path)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != ["image"] or not set(OUTPUTS) <= set(names):
            raise BackendError(f"{engine_path} is not an encoder engine (I/O tensors {names})")
        self.input_shape = tuple(self.engine.get_tensor_shape("image"))
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype("image"))
        s = model.cfg.image_size
        if self.input_shape[1:] != (3, s, s):
            raise BackendError(f"{engine_path} takes {self.input_shape}, the model needs (1, 3, {s}, {s})")
        # Outputs are allocated once and reused: the engine writes into them on every call,
        # and the caller gets clones only where a batch is split (see __call__).
        self.outputs = {
            n: torch.empty(tuple(self.engine.get_tensor_shape(n)), dtype=_torch_dtype(trt, self.engine.get_tensor_dtype(n)),
                           device=self.device)
            for n in OUTPUTS
        }
        for n, t in self.outputs.items():
            self.context.set_tensor_address(n, t.data_ptr())
        log.info("tensorrt encoder %s (TensorRT %s)", engine_path, trt.__version__)

    def _run_one(self, image: Tensor):
        image = image.detach().to(self.input_dtype).contiguous()
        self.context.set_tensor_address("image", image.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        # Keep the input alive until the engine has read it (same stream: ordered).
        image.record_stream(stream)
        return [self.outputs[n].clone() if self.outputs[n].dtype == torch.float32 else self.outputs[n].float() for n in OUTPUTS]

    def __call__(self, images: Tensor) -> ImageFeatures:
        step = self.input_shape[0]
        parts = [self._run_one(images[i : i + step]) for i in range(0, images.shape[0], step)]
        feat, h0, h1 = (torch.cat(x) if len(parts) > 1 else x[0] for x in zip(*parts))
        return ImageFeatures(feat, self.model.image_encoder.position_encoding(feat), [h0, h1])


def make(model, engine_path: str) -> TensorRTEncoder:
    return TensorRTEncoder(model, engine_path)
