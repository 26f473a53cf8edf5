"""Image-encoder backends behind one interface.

An encoder is a callable ``encoder(images) -> ImageFeatures``: ``images`` are normalized
(B, 3, S, S) float32 on the model's device, and the features come back on the model's device,
as ``SAM2.encode_image`` returns them. Pass one to ``Tracker(model, encoder=...)``.

* ``torch``: the model's own ``encode_image``.
* ``onnxruntime``: an ``.onnx`` file from ``export/export_onnx.py --part encoder`` on
  onnxruntime's CPU, CUDA or TensorRT execution providers.
* ``tensorrt``: a TensorRT 10 ``.engine`` from ``export/build_engine.py``, its I/O bound to
  torch CUDA tensors (no pycuda).

Files are checked before use (exists, readable, parses; made for this model, image size and
weights; engines also for this TensorRT version and GPU): a file that does not match raises
:class:`BackendMismatchError` saying what differs. :func:`make_encoder_or_fallback` is what the
ROS node uses: it falls back to torch with a logged warning instead of failing.

The onnxruntime and tensorrt modules are imported only when chosen.
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable, Optional, Tuple

from .metadata import BackendError, BackendMismatchError

BACKENDS = ("torch", "onnxruntime", "tensorrt")
_MODULES = {"torch": ".torch_backend", "onnxruntime": ".onnxruntime_backend", "tensorrt": ".tensorrt_backend"}

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendError", "BackendMismatchError", "make_encoder", "make_encoder_or_fallback"]


def make_encoder(name: str, model, engine_path: Optional[str] = None, **kwargs) -> Callable:
    """The image encoder ``name`` for ``model``.

    Args:
        name: torch, onnxruntime or tensorrt.
        model: the loaded :class:`~sam2_ros.model.sam2.SAM2` (its device is where features go).
        engine_path: the .onnx (onnxruntime) or .engine (tensorrt) file; unused for torch.
        **kwargs: backend options, e.g. ``providers=["CPUExecutionProvider"]`` for onnxruntime.
    Raises:
        ValueError: unknown backend name or missing file argument.
        BackendError: the backend's package is missing, or the file cannot be used.
        BackendMismatchError: the file was made for something else (the message says what).
    """
    key = str(name).strip().lower()
    if key not in _MODULES:
        raise ValueError(f"unknown encoder backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if key != "torch" and not engine_path:
        kind = ".onnx" if key == "onnxruntime" else ".engine"
        raise ValueError(f"encoder backend {key!r} needs a {kind} file (encoder_engine / engine_path)")
    module = importlib.import_module(_MODULES[key], __name__)
    return module.make(model, engine_path, **kwargs)


def make_encoder_or_fallback(
    name: str,
    model,
    engine_path: Optional[str] = None,
    warn: Optional[Callable[[str], None]] = None,
    **kwargs,
) -> Tuple[Callable, str]:
    """Like :func:`make_encoder`, but a backend that cannot be used (missing package, bad or
    mismatched file) falls back to torch. Returns ``(encoder, backend actually used)``; the
    reason for a fallback goes to ``warn`` (default: this module's logger, level WARNING).
    An unknown backend name is still an error: that is a configuration mistake."""
    key = str(name).strip().lower()
    if key not in _MODULES:
        raise ValueError(f"unknown encoder backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if key == "torch":
        return make_encoder("torch", model), "torch"
    try:
        return make_encoder(key, model, engine_path, **kwargs), key
    except (BackendError, ValueError, ImportError, OSError, RuntimeError) as e:
        msg = f"encoder backend {key!r} cannot be used ({e}); falling back to the torch encoder"
        (warn or log.warning)(msg)
        return make_encoder("torch", model), "torch"
