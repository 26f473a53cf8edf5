"""Export SAM 2's per-frame parts to ONNX: graph wrappers with static shapes, the FP16
variant, and the metadata written into every file. ``export/export_onnx.py`` is the CLI.

Parts (inputs -> outputs, B = 1, S = image size, h = w = S/16):

* ``encoder``: image (B, 3, S, S) float32 normalized -> feat (B, 256, h, w),
  high_res_0 (B, 32, 4h, 4w), high_res_1 (B, 64, 2h, 2w) (already projected by the decoder's
  conv_s0 / conv_s1). The sine position encoding of feat is a constant of S and is not an
  output: backends take it from ``model.image_encoder.position_encoding``.
* ``memory_attention``: feat, pos (B, 256, h, w), memory, memory_pos (B, M, 64) with
  M = num_mem_frames * h * w + 4 * num_ptrs -> conditioned (B, 256, h, w).
* ``decoder`` (prompt encoder + mask decoder + object-pointer head): embedding
  (B, 256, h, w), high_res_0, high_res_1, point_coords (B, N, 2) pixels of the S x S input,
  point_labels (B, N) int32, mask_input (B, 1, 4h, 4w), has_mask_input (1,) float 0/1 ->
  masks (B, 4, 4h, 4w), iou_predictions (B, 4), obj_ptrs (B, 4, 256) (pointer of every mask
  token), object_score_logits (B, 1). Choosing the mask (multimask, stability fallback) and
  gating absent objects' pointers stay outside, as in ``SAM2.predict_masks``.
* ``memory_encoder``: feat (B|1, 256, h, w), mask_logits (B, 1, S, S), object_score_logits
  (B, 1), binarize (B, 1) float 0/1 -> memory (B, 64, h, w).

FP16 (``fp16=True``): the part runs with float16 weights and activations, but every LayerNorm
(``nn.LayerNorm`` and the channel LayerNorm2d) computes in float32 (its input is cast up, its
output back down), and attention's softmax runs in float32 (the scaled scores are cast up
before the softmax, the probabilities back down). Graph inputs and outputs stay float32, so a
backend feeds both variants the same way. This is done by patching the module *instances* of a
copy of the model during export only; the model itself is untouched.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import sys
import time
import types
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.common import LayerNorm2d
from ..model.sam2 import SAM2, ImageFeatures
from .metadata import PARTS, weights_fingerprint

DEFAULT_OPSET = 18
ENCODER_OUTPUTS = ("feat", "high_res_0", "high_res_1")


# ------------------------------------------------------------------------------ graphs
class EncoderGraph(nn.Module):
    """Hiera + FPN neck + the decoder's high-res projections (what ``SAM2.encode_image``
    computes, less the constant position encoding)."""

    def __init__(self, model: SAM2) -> None:
        super().__init__()
        self.trunk = model.image_encoder.trunk
        self.neck = model.image_encoder.neck
        self.conv_s0 = model.sam_mask_decoder.conv_s0
        self.conv_s1 = model.sam_mask_decoder.conv_s1

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        s4, s8, s16 = self.neck(self.trunk(image))[:3]
        return s16, self.conv_s0(s4), self.conv_s1(s8)


class MemoryAttentionGraph(nn.Module):
    def __init__(self, model: SAM2, num_ptr_tokens: int) -> None:
        super().__init__()
        self.model = model
        self.num_ptr_tokens = num_ptr_tokens

    def forward(self, feat: Tensor, pos: Tensor, memory: Tensor, memory_pos: Tensor) -> Tensor:
        return self.model.condition_on_memory(ImageFeatures(feat, pos, []), memory, memory_pos, self.num_ptr_tokens)


class DecoderGraph(nn.Module):
    def __init__(self, model: SAM2) -> None:
        super().__init__()
        self.pe = model.sam_prompt_encoder
        self.decoder = model.sam_mask_decoder
        self.obj_ptr_proj = model.obj_ptr_proj
        # A constant of the image size: a buffer, so the export sees a plain weight.
        self.register_buffer("dense_pe", model.sam_prompt_encoder.dense_pe().detach().clone(), persistent=False)

    def forward(self, embedding, high_res_0, high_res_1, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self.pe.embed_points(point_coords, point_labels)
        no_mask = self.pe.no_mask_embed.weight.view(1, -1, 1, 1)
        has = has_mask_input.view(1, 1, 1, 1).to(embedding.dtype)
        # has in {0, 1}: x * 1 + y * 0 and x * 0 + y are exact, so this equals either branch.
        dense = has * self.pe.mask_downscaling(mask_input) + (1 - has) * no_mask
        out = self.decoder(embedding, self.dense_pe.to(embedding.dtype), sparse, dense, [high_res_0, high_res_1])
        return out.masks, out.iou, self.obj_ptr_proj(out.mask_tokens), out.object_score_logits


class MemoryEncoderGraph(nn.Module):
    def __init__(self, model: SAM2) -> None:
        super().__init__()
        self.model = model

    def forward(self, feat, mask_logits, object_score_logits, binarize):
        cfg, m = self.model.cfg, self.model
        soft = torch.sigmoid(mask_logits)
        hard = (mask_logits > 0).to(soft.dtype)
        mask = torch.where(binarize.view(-1, 1, 1, 1) > 0.5, hard, soft)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        mem = m.memory_encoder.pix_feat_proj(feat) + m.memory_encoder.mask_downsampler(mask)
        mem = m.memory_encoder.out_proj(m.memory_encoder.fuser(mem))
        if cfg.no_obj_embed_spatial:
            absent = (object_score_logits <= 0).to(mem.dtype)
            mem = mem + absent[:, :, None, None] * m.no_obj_embed_spatial[:, :, None, None]
        perceiver = getattr(m, "spatial_perceiver", None)
        if perceiver is not None:  # EdgeTAM: the map compressed to T tokens, (B, T, C_mem)
            mem = perceiver(mem, m.memory_encoder.position_encoding(mem))[0]
        return mem


@dataclass
class PartSpec:
    module: nn.Module
    inputs: Dict[str, Tensor]  # name -> example (defines the static shapes)
    outputs: Tuple[str, ...]
    extra_metadata: Dict[str, str]


def part_spec(model: SAM2, part: str, num_mem_frames: int = 7, num_ptrs: int = 16, num_points: int = 2, batch: int = 1) -> PartSpec:
    """The graph module of ``part`` with example inputs of the exported (static) shapes."""
    cfg = model.cfg
    s, h, c, m = cfg.image_size, cfg.feat_size, cfg.d_model, cfg.mem_dim
    dev = model.device
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dev)

    if part == "encoder":
        return PartSpec(EncoderGraph(model), {"image": rnd(batch, 3, s, s)}, ENCODER_OUTPUTS, {})
    if part == "memory_attention":
        if num_mem_frames < 1 or num_ptrs < 0:
            raise ValueError("memory_attention needs --num-mem-frames >= 1 and --num-ptrs >= 0")
        n_ptr_tokens = num_ptrs * (c // m)
        mem_len = num_mem_frames * model.memory_tokens_per_frame + n_ptr_tokens  # T = h*h (SAM 2) or 512 (EdgeTAM)
        ins = {"feat": rnd(batch, c, h, h), "pos": rnd(batch, c, h, h),
               "memory": rnd(batch, mem_len, m), "memory_pos": rnd(batch, mem_len, m)}
        extra = {"num_mem_frames": str(num_mem_frames), "num_ptrs": str(num_ptrs),
                 "num_ptr_tokens": str(n_ptr_tokens), "memory_tokens": str(mem_len)}
        return PartSpec(MemoryAttentionGraph(model, n_ptr_tokens), ins, ("conditioned",), extra)
    if part == "decoder":
        if num_points < 1:
            raise ValueError("decoder needs --num-points >= 1 (pad with label -1)")
        ins = {"embedding": rnd(batch, c, h, h), "high_res_0": rnd(batch, c // 8, 4 * h, 4 * h),
               "high_res_1": rnd(batch, c // 4, 2 * h, 2 * h),
               "point_coords": (torch.rand(batch, num_points, 2, generator=g) * s).to(dev),
               "point_labels": torch.ones(batch, num_points, dtype=torch.int32).to(dev),
               "mask_input": rnd(batch, 1, 4 * h, 4 * h), "has_mask_input": torch.ones(1).to(dev)}
        return PartSpec(DecoderGraph(model), ins, ("masks", "iou_predictions", "obj_ptrs", "object_score_logits"),
                        {"num_points": str(num_points)})
    if part == "memory_encoder":
        ins = {"feat": rnd(batch, c, h, h), "mask_logits": rnd(batch, 1, s, s) * 10,
               "object_score_logits": rnd(batch, 1), "binarize": torch.zeros(batch, 1).to(dev)}
        return PartSpec(MemoryEncoderGraph(model), ins, ("memory",), {})
    raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")


# ------------------------------------------------------------------------------- FP16
def _layer_norm_fp32(mod: nn.LayerNorm, x: Tensor) -> Tensor:
    w = mod.weight.float() if mod.weight is not None else None
    b = mod.bias.float() if mod.bias is not None else None
    return F.layer_norm(x.float(), mod.normalized_shape, w, b, mod.eps).to(x.dtype)


def _layer_norm2d_fp32(mod: LayerNorm2d, x: Tensor) -> Tensor:
    xf = x.float()
    mean = xf.mean(1, keepdim=True)
    var = (xf - mean).pow(2).mean(1, keepdim=True)
    y = (xf - mean) / torch.sqrt(var + mod.eps)
    return (y * mod.weight.float()[:, None, None] + mod.bias.float()[:, None, None]).to(x.dtype)


def _sdpa_fp32_softmax(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Attention with the softmax in float32 (queries scaled first, so q @ k^T stays small)."""
    if attn_mask is not None or is_causal or dropout_p:
        raise NotImplementedError("the FP16 export supports plain attention only")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q * scale) @ k.transpose(-2, -1)
    probs = scores.float().softmax(-1).to(q.dtype)
    return probs @ v


class _FP16Graph(nn.Module):
    """Float32 in, float16 inside, float32 out."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        args = [a.half() if a.is_floating_point() else a for a in args]
        out = self.inner(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        outs = tuple(o.float() for o in outs)
        return outs if isinstance(out, (tuple, list)) else outs[0]


def make_fp16(graph: nn.Module) -> nn.Module:
    """A float16 copy of ``graph`` with LayerNorms in float32 (instance-level patches)."""
    g = copy.deepcopy(graph).half()
    for mod in g.modules():
        if isinstance(mod, nn.LayerNorm):
            mod.forward = types.MethodType(_layer_norm_fp32, mod)
        elif isinstance(mod, LayerNorm2d):
            mod.forward = types.MethodType(_layer_norm2d_fp32, mod)
    return _FP16Graph(g)


@contextlib.contextmanager
def fp32_softmax_attention():
    """While active, ``F.scaled_dot_product_attention`` (which the model calls) computes its
    softmax in float32: the exported graph then has Cast -> Softmax(float32) -> Cast."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _sdpa_fp32_softmax
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


# ----------------------------------------------------------------------------- export
def choose_exporter(opset: int, exporter: str = "auto") -> str:
    """``dynamo`` (torch.export-based, torch's default since 2.9; needs onnxscript and emits
    opset >= 18) or ``torchscript`` (the legacy tracer, deprecated in torch 2.9+ but still
    shipped in 2.13; the only one that writes opset 17)."""
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"unknown exporter {exporter!r}; choose auto, dynamo or torchscript")
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: LayerNormalization needs opset >= 17")
    has_onnxscript = importlib.util.find_spec("onnxscript") is not None
    if exporter == "auto":
        exporter = "dynamo" if opset >= 18 and has_onnxscript else "torchscript"
    if exporter == "dynamo":
        if not has_onnxscript:
            raise RuntimeError("the dynamo ONNX exporter needs onnxscript: pip install onnxscript (or --exporter torchscript)")
        if opset < 18:
            raise ValueError("the dynamo exporter writes opset >= 18 (its opset-17 conversion fails on Pad); "
                             "use --opset 18 or --exporter torchscript for opset 17")
    return exporter


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[export] {msg}", file=sys.stderr, flush=True)


def export_part(
    model: SAM2,
    part: str,
    output: str,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    exporter: str = "auto",
    checkpoint_sha256: str = "",
    num_mem_frames: int = 7,
    num_ptrs: int = 16,
    num_points: int = 2,
    quiet: bool = False,
) -> Dict[str, str]:
    """Export one part of ``model`` (on the CPU, float32 weights) to ``output``; returns the
    metadata written into the file."""
    import onnx

    from ..version import __version__

    exporter = choose_exporter(opset, exporter)
    model = model.eval()
    spec = part_spec(model, part, num_mem_frames, num_ptrs, num_points)
    graph = make_fp16(spec.module) if fp16 else spec.module
    names, example = list(spec.inputs), tuple(spec.inputs.values())
    _log(f"exporting {model.cfg.name} {part} at {model.cfg.image_size} px ({'fp16' if fp16 else 'fp32'}, "
         f"opset {opset}, {exporter} exporter)", quiet)
    t0 = time.perf_counter()
    softmax_ctx = fp32_softmax_attention() if fp16 else contextlib.nullcontext()
    with torch.no_grad(), softmax_ctx, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter; errors still raise
        if exporter == "dynamo":
            kwargs = dict(dynamo=True, external_data=False, verbose=False)
        else:
            kwargs = dict(dynamo=False, do_constant_folding=True)
        torch.onnx.export(graph, example, output, input_names=names, output_names=list(spec.outputs),
                          opset_version=opset, **kwargs)
    _log(f"graph written in {time.perf_counter() - t0:.1f} s; adding metadata and checking", quiet)
    proto = onnx.load(output)
    meta = {
        "producer": "sam2_ros",
        "sam2_ros_version": __version__,
        "torch_version": torch.__version__,
        "exporter": exporter,
        "model": model.cfg.name,
        "sam2_version": model.cfg.version,
        "image_size": str(model.cfg.image_size),
        "opset": str(opset),
        "part": part,
        "precision": "fp16" if fp16 else "fp32",
        "checkpoint_sha256": checkpoint_sha256 or "random-weights",
        "weights_fingerprint": weights_fingerprint(model, part),
        "inputs": ",".join(f"{n}:{'x'.join(map(str, t.shape))}" for n, t in spec.inputs.items()),
        **spec.extra_metadata,
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, output)
    onnx.checker.check_model(output)
    _log(f"{output}: onnx.checker passed ({len(proto.graph.node)} nodes)", quiet)
    return meta


def run_onnxruntime(path: str, inputs: Dict[str, Tensor]) -> List:
    """Run a graph on onnxruntime's CPU provider (for checks and tests)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.detach().cpu().numpy() for k, v in inputs.items()})


def verify(model: SAM2, part: str, path: str, spec_inputs: Optional[Dict[str, Tensor]] = None, **shape_kw) -> List[float]:
    """Max |onnx - torch| / max |torch| per output, onnxruntime CPU against the torch graph."""
    spec = part_spec(model, part, **shape_kw)
    inputs = spec_inputs or spec.inputs
    with torch.no_grad():
        ref = spec.module(*inputs.values())
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    got = run_onnxruntime(path, inputs)
    return [float((torch.from_numpy(g) - r.cpu()).abs().max() / r.abs().max().clamp_min(1e-12)) for g, r in zip(got, ref)]
