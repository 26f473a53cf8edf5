"""Image encoder on ONNX Runtime (CPU, CUDA or TensorRT execution providers).

The graph is ``export/export_onnx.py --part encoder`` (input ``image``; outputs ``feat``,
``high_res_0``, ``high_res_1``, float32). The position encoding is a constant of the image size
and comes from the model. On a CUDA model with the CUDA or TensorRT provider, inputs and
outputs are bound to torch CUDA tensors (no host copies); otherwise they go through numpy.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from ..model.sam2 import ImageFeatures
from .metadata import BackendError, expected_facts, raise_if_different, read_onnx_metadata

log = logging.getLogger(__name__)

OUTPUTS = ("feat", "high_res_0", "high_res_1")
_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: Optional[Sequence], available: Sequence[str], device: torch.device) -> List:
    """Explicit ``requested`` (names or aliases cpu/cuda/tensorrt, or (name, options) pairs)
    are checked against the available ones; None picks the best available for the device."""
    if requested:
        out = []
        for p in requested:
            name = p[0] if isinstance(p, (tuple, list)) else p
            name = _ALIASES.get(str(name).lower(), name)
            if name not in available:
                raise BackendError(f"onnxruntime provider {name} is not available here (available: {', '.join(available)})")
            out.append((name, p[1]) if isinstance(p, (tuple, list)) else name)
        return out
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    return [p for p in _PREFERENCE if p in available]


class OnnxRuntimeEncoder:
    def __init__(self, model, path: str, providers: Optional[Sequence] = None, check: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("encoder backend onnxruntime needs the onnxruntime package "
                               "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from e
        meta = read_onnx_metadata(path, check=check)
        raise_if_different(path, meta, expected_facts(model, "encoder"),
                           "Export the encoder again for this model: python export/export_onnx.py --part encoder ...")
        self.model = model
        self.device = model.device
        self.path = str(path)
        self.precision = meta.get("precision", "fp32")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's idle threads spin by default; here they would steal the cores from
        # torch, which runs the rest of every frame right after the encoder.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.providers = choose_providers(providers, ort.get_available_providers(), self.device)
        try:
            self.session = ort.InferenceSession(self.path, opts, providers=self.providers)
        except Exception as e:
            raise BackendError(f"onnxruntime cannot load {path}: {e}") from e
        ins = self.session.get_inputs()
        outs = [o.name for o in self.session.get_outputs()]
        if [i.name for i in ins] != ["image"] or outs[:3] != list(OUTPUTS):
            raise BackendError(f"{path} is not an encoder graph (inputs {[i.name for i in ins]}, outputs {outs})")
        self.input_shape = tuple(ins[0].shape)
        self.output_shapes = [tuple(o.shape) for o in self.session.get_outputs()[:3]]
        self.active_providers = self.session.get_providers()
        self._bind = self.device.type == "cuda" and self.active_providers[0] != "CPUExecutionProvider"
        log.info("onnxruntime encoder %s on %s", path, ", ".join(self.active_providers))

    def _run_one(self, image: Tensor) -> List[Tensor]:
        if not self._bind:
            outs = self.session.run(list(OUTPUTS), {"image": image.detach().float().cpu().numpy()})
            return [torch.from_numpy(o).to(self.device) for o in outs]
        import numpy as np

        image = image.detach().float().contiguous()
        binding = self.session.io_binding()
        binding.bind_input("image", "cuda", self.device.index or 0, np.float32, tuple(image.shape), image.data_ptr())
        outs = [torch.empty(s, dtype=torch.float32, device=self.device) for s in self.output_shapes]
        for name, t in zip(OUTPUTS, outs):
            binding.bind_output(name, "cuda", self.device.index or 0, np.float32, tuple(t.shape), t.data_ptr())
        # onnxruntime runs on its own stream: make it see the finished input, and wait for it.
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return outs

    def __call__(self, images: Tensor) -> ImageFeatures:
        if tuple(images.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"the encoder graph takes {self.input_shape}, got images of shape {tuple(images.shape)}")
        # The graph has a static batch: run frame by frame when more are given.
        step = self.input_shape[0]
        parts = [self._run_one(images[i : i + step]) for i in range(0, images.shape[0], step)]
        feat, h0, h1 = (torch.cat(x) if len(parts) > 1 else x[0] for x in zip(*parts))
        pos = self.model.image_encoder.position_encoding(feat)
        return ImageFeatures(feat, pos, [h0, h1])


def make(model, engine_path: str, providers: Optional[Sequence] = None, check: bool = True) -> OnnxRuntimeEncoder:
    return OnnxRuntimeEncoder(model, engine_path, providers=providers, check=check)
