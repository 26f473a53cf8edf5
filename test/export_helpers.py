"""Shared by test_onnx_export.py and test_backends.py: models from official-format
checkpoints and ONNX exports made once per session (cached by arguments)."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from sam2_ros.backends.metadata import file_sha256
from sam2_ros.backends.onnx_export import export_part
from sam2_ros.model.build import build_model
from sam2_ros.model.preprocess import to_model_input

_MODELS = {}
_EXPORTS = {}
_COUNTER = itertools.count()


def model_of(official_checkpoint, size="tiny", image_size=256, seed=0):
    key = (size, image_size, seed)
    if key not in _MODELS:
        ckpt = official_checkpoint(size, image_size, seed=seed)
        _MODELS[key] = (build_model(str(ckpt), size, image_size, "cpu"), file_sha256(ckpt))
    return _MODELS[key]


def exported(tmp_path_factory, official_checkpoint, size="tiny", image_size=256, part="encoder", fp16=False, seed=0, opset=18, **shape_kw):
    """Path of the ONNX export of ``part`` (made once per session per argument set)."""
    key = (size, image_size, part, fp16, seed, opset, tuple(sorted(shape_kw.items())))
    if key not in _EXPORTS:
        model, digest = model_of(official_checkpoint, size, image_size, seed)
        path = tmp_path_factory.mktemp("onnx") / f"{size}_{image_size}_{part}_{next(_COUNTER)}.onnx"
        export_part(model, part, str(path), opset=opset, fp16=fp16, checkpoint_sha256=digest, quiet=True, **shape_kw)
        _EXPORTS[key] = path
    return _EXPORTS[key]


def real_input(bunny_frames, image_size, index=0):
    """A real frame, preprocessed as the tracker does: (1, 3, S, S) float32."""
    frame = bunny_frames(index + 1, 320, 180)[index]
    return to_model_input([frame], image_size, "cpu")


def rel_err(got, ref) -> float:
    got = torch.as_tensor(np.asarray(got)) if not isinstance(got, torch.Tensor) else got
    ref = ref.detach().cpu().float()
    return float((got.cpu().float() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
