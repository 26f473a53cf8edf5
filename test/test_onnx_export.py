"""ONNX export of SAM 2's parts: onnxruntime CPU against PyTorch, the FP16 graph, metadata,
and the export CLI. Models come from official-format checkpoints with random "alive" weights.

Tolerances (max |onnx - torch| / max |torch| per output):
* float32 graphs: 1e-4 (measured ~1e-6 for the encoder, below 1e-6 for the other parts).
* FP16 encoder: 1e-2 (measured ~1e-3 on onnxruntime CPU, tiny and small at 256 px). On the CPU,
  onnxruntime computes float16 nodes it has no kernel for in float32 between casts, so this
  measures float16 weight and activation rounding; TensorRT's float16 arithmetic on a GPU adds
  its own rounding and is checked on the device (export/README.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

from helpers.export import exported, model_of, real_input, rel_err
from sam2_ros import __version__
from sam2_ros.backends.onnx_export import choose_exporter, run_onnxruntime

FP32_TOL = 1e-4
FP16_TOL = 1e-2
ROOT = Path(__file__).resolve().parents[1]


def _metadata(path):
    return {m.key: m.value for m in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_encoder_fp32_matches_torch(size, tmp_path_factory, official_checkpoint, bunny_frames):
    model, digest = model_of(official_checkpoint, size, 256)
    path = exported(tmp_path_factory, official_checkpoint, size, 256)
    x = real_input(bunny_frames, 256)
    got = run_onnxruntime(str(path), {"image": x})
    with torch.no_grad():
        ref = model.encode_image(x)
    errs = [rel_err(g, r) for g, r in zip(got, [ref.feat, *ref.high_res])]
    assert max(errs) < FP32_TOL, errs
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["feat", "high_res_0", "high_res_1"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 256, 256]  # static
    meta = _metadata(path)
    assert meta["model"] == size and meta["image_size"] == "256" and meta["part"] == "encoder"
    assert meta["opset"] == "18" and meta["precision"] == "fp32" and meta["sam2_ros_version"] == __version__
    assert meta["checkpoint_sha256"] == digest
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_encoder_fp16_within_tolerance_and_norms_in_fp32(tmp_path_factory, official_checkpoint, bunny_frames):
    model, _ = model_of(official_checkpoint, "tiny", 256)
    path = exported(tmp_path_factory, official_checkpoint, "tiny", 256, fp16=True)
    x = real_input(bunny_frames, 256)
    got = run_onnxruntime(str(path), {"image": x})
    with torch.no_grad():
        ref = model.encode_image(x)
    errs = [rel_err(g, r) for g, r in zip(got, [ref.feat, *ref.high_res])]
    assert max(errs) < FP16_TOL, errs
    assert max(errs) > 1e-6, "the graph does not look float16 at all"
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = proto.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(types[i.name] == F32 for i in g.input) and all(types[o.name] == F32 for o in g.output)
    norms = [n for n in g.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert norms and all(types[n.input[0]] == F32 for n in norms), "a LayerNorm or softmax runs in float16"
    matmuls = [n for n in g.node if n.op_type == "MatMul"]
    assert sum(types.get(n.input[0]) == F16 for n in matmuls) > len(matmuls) // 2  # the bulk is float16
    assert _metadata(path)["precision"] == "fp16"


def test_memory_attention_matches_torch(tmp_path_factory, official_checkpoint, bunny_frames):
    model, _ = model_of(official_checkpoint, "tiny", 256)
    path = exported(tmp_path_factory, official_checkpoint, "tiny", 256, part="memory_attention", num_mem_frames=2, num_ptrs=3)
    meta = _metadata(path)
    assert meta["num_ptr_tokens"] == "12" and meta["memory_tokens"] == str(2 * 16 * 16 + 12)
    with torch.no_grad():
        f = model.encode_image(real_input(bunny_frames, 256))
        g = torch.Generator().manual_seed(1)
        memory = torch.randn(1, 2 * 256 + 12, 64, generator=g)
        memory_pos = torch.randn(1, 2 * 256 + 12, 64, generator=g)
        ref = model.condition_on_memory(f, memory, memory_pos, 12)
    (got,) = run_onnxruntime(str(path), {"feat": f.feat, "pos": f.pos, "memory": memory, "memory_pos": memory_pos})
    assert rel_err(got, ref) < FP32_TOL


@pytest.mark.parametrize("with_mask", [False, True])
def test_decoder_matches_torch(with_mask, tmp_path_factory, official_checkpoint, bunny_frames):
    model, _ = model_of(official_checkpoint, "tiny", 256)
    path = exported(tmp_path_factory, official_checkpoint, "tiny", 256, part="decoder", num_points=2)
    with torch.no_grad():
        f = model.encode_image(real_input(bunny_frames, 256))
        emb = model.image_embedding(f)
        coords = torch.tensor([[[100.0, 120.0], [30.0, 200.0]]])
        labels = torch.tensor([[1, 0]], dtype=torch.int32)
        mask = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(2)) * 5
        sparse, dense = model.sam_prompt_encoder(coords, labels, mask if with_mask else None)
        out = model.sam_mask_decoder(emb, model.sam_prompt_encoder.dense_pe(), sparse, dense, f.high_res)
        ptrs = model.obj_ptr_proj(out.mask_tokens)
    got = run_onnxruntime(str(path), {
        "embedding": emb, "high_res_0": f.high_res[0], "high_res_1": f.high_res[1], "point_coords": coords,
        "point_labels": labels, "mask_input": mask, "has_mask_input": torch.tensor([1.0 if with_mask else 0.0])})
    for g, r in zip(got, (out.masks, out.iou, ptrs, out.object_score_logits)):
        assert g.shape == tuple(r.shape)
        assert rel_err(g, r) < FP32_TOL


def test_memory_encoder_matches_torch(tmp_path_factory, official_checkpoint, bunny_frames):
    model, _ = model_of(official_checkpoint, "tiny", 256)
    path = exported(tmp_path_factory, official_checkpoint, "tiny", 256, part="memory_encoder")
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 256, 256, generator=g) * 8
    scores = torch.tensor([[2.0], [-1.0]])  # one present, one absent object
    with torch.no_grad():
        feat = model.encode_image(real_input(bunny_frames, 256)).feat
        for binarize in (False, True):
            for i in range(2):
                ref, _ = model.encode_memory(feat, logits[i : i + 1], scores[i : i + 1], binarize)
                (got,) = run_onnxruntime(str(path), {"feat": feat, "mask_logits": logits[i : i + 1],
                                                     "object_score_logits": scores[i : i + 1],
                                                     "binarize": torch.tensor([[float(binarize)]])})
                assert rel_err(got, ref) < FP32_TOL


def test_exporter_choice():
    assert choose_exporter(17) == "torchscript"
    with pytest.raises(ValueError, match="opset >= 18"):
        choose_exporter(17, "dynamo")
    with pytest.raises(ValueError, match="LayerNormalization"):
        choose_exporter(16)


def test_cli_opset17_legacy_exporter(tmp_path, official_checkpoint):
    """The CLI end to end (opset 17 -> the TorchScript exporter), on the small decoder part."""
    ckpt = official_checkpoint("tiny", 256)
    out = tmp_path / "dec.onnx"
    r = subprocess.run([sys.executable, str(ROOT / "export" / "export_onnx.py"), "--checkpoint", str(ckpt),
                        "--model", "tiny", "--image-size", "256", "--part", "decoder", "--output", str(out),
                        "--opset", "17", "--verify"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "onnx.checker passed" in r.stderr and "[export] done" in r.stderr
    errs = [float(x) for x in r.stderr.split("max |diff| / max |ref| per output: ")[1].splitlines()[0].split(", ")]
    assert max(errs) < FP32_TOL
    meta = _metadata(out)
    assert meta["opset"] == "17" and meta["exporter"] == "torchscript" and meta["part"] == "decoder"
    proto = onnx.load(str(out))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17


def test_cli_refuses_bad_arguments(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "export" / "export_onnx.py"), "--checkpoint", str(tmp_path / "nope.pt"),
                        "--output", str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "checkpoint file not found" in r.stderr and "nope.pt" in r.stderr
