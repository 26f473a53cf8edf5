"""Shared by test_onnx_export.py and test_backends.py: models from official-format
checkpoints and ONNX exports made once per session (cached by arguments)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

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


class Payload:
    """Unpickling this calls ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def fake_engine(tmp_path, model, engine_bytes=b'\x00engine' * 100, **changes):
    from sam2_ros.backends.metadata import expected_facts, file_sha256

    engine = tmp_path / 'enc.engine'
    engine.write_bytes(engine_bytes)
    meta = {'tensorrt_version': '10.0', 'gpu_name': 'X', 'compute_capability': '8.7',
            'engine_sha256': file_sha256(engine), 'onnx_metadata': dict(expected_facts(model), producer='sam2_ros')}
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    Path(str(engine) + '.json').write_text(json.dumps(meta))
    return engine


def tiny_onnx_file(path, **metadata):
    """A small valid ONNX graph with the given metadata (what a mismatched export looks like to
    the checks; the graph itself is never run)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node('Identity', ['image'], ['feat'])
    graph = helper.make_graph([node], 'g', [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info('feat', TensorProto.FLOAT, [1, 3, 64, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.save(model, str(path))
    return path
