"""SAM 2 checkpoints saved by Hugging Face transformers (``Sam2VideoModel`` / ``Sam2Model``).

``save_pretrained`` writes ``config.json`` and ``model.safetensors`` whose tensors are Meta's,
renamed (``vision_encoder.backbone.blocks.0.layer_norm1`` is Meta's
``image_encoder.trunk.blocks.0.norm1``), with two layout changes: the four point embeddings are
one (4, C) matrix, and the random-Fourier positional matrix is stored twice (model and prompt
encoder). This module reads the model size and SAM version from ``config.json`` and maps the
tensors to this package's names, completely and strictly: a key no rule maps is an error naming
it, and names can be translated back to say which transformers keys a checkpoint lacks.

No transformers code is needed at run time: the config is JSON, the weights are safetensors.
The rules below are this package's own, derived by comparing the two models' parameter lists
(names, shapes) and checked numerically against transformers in ``test/test_transformers_format.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from .config import SAM2_SIZES, SAM2Config, sam2_config
from .errors import CheckpointError, CheckpointMismatchError

__all__ = ["TransformersConfig", "read_config", "is_transformers_layout", "to_ours", "transformers_names"]

MODEL_TYPES = {"sam2_video": "Sam2VideoModel", "sam2": "Sam2Model"}
_PE = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_PE_COPIES = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")
_POINT_EMBED = "prompt_encoder.point_embed.weight"


@dataclass(frozen=True)
class TransformersConfig:
    """What a transformers ``config.json`` says about the model.

    Attributes:
        model: tiny, small, base_plus or large.
        version: "2.1" or "2.0"; None for an image-only ``Sam2Model`` (no memory, no version).
        model_type: "sam2_video" (``Sam2VideoModel``: everything) or "sam2" (``Sam2Model``:
            the image encoder, prompt encoder and mask decoder only).
    """

    model: str
    version: Optional[str]
    model_type: str

    @property
    def image_only(self) -> bool:
        """An image-only checkpoint: no memory weights, usable by the image predictors only."""
        return self.model_type == "sam2"


# --------------------------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------------------------


def _get(config: Mapping[str, Any], path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _hiera_fields(cfg: SAM2Config) -> Dict[str, Any]:
    """The backbone_config fields of transformers' Hiera that identify a model size."""
    h = cfg.hiera
    return {
        "blocks_per_stage": list(h.stages),
        "embed_dim_per_stage": [h.embed_dim * 2**i for i in range(len(h.stages))],
        "num_attention_heads_per_stage": [h.num_heads * 2**i for i in range(len(h.stages))],
        "global_attention_blocks": list(h.global_att_blocks),
        "window_size_per_stage": list(h.window_spec),
        "window_positional_embedding_background_size": list(h.window_pos_embed_bkg_spatial_size),
    }


def _semantics(cfg: SAM2Config) -> Tuple[Tuple[str, Any], ...]:
    """Settings that change the numbers without changing a weight's shape: they must equal the
    released models' (which this package implements) where config.json has them."""
    return (
        ("vision_config.fpn_top_down_levels", [2, 3]),
        ("vision_config.num_feature_levels", 3),
        ("mask_decoder_config.num_attention_heads", cfg.decoder_heads),
        ("mask_decoder_config.dynamic_multimask_via_stability", cfg.dynamic_multimask_via_stability),
        ("mask_decoder_config.dynamic_multimask_stability_delta", cfg.dynamic_multimask_stability_delta),
        ("mask_decoder_config.dynamic_multimask_stability_thresh", cfg.dynamic_multimask_stability_thresh),
        ("multimask_output_in_sam", True),
        ("multimask_output_for_tracking", True),
        ("multimask_min_pt_num", cfg.multimask_min_pt_num),
        ("multimask_max_pt_num", cfg.multimask_max_pt_num),
        ("max_object_pointers_in_encoder", cfg.max_obj_ptrs),
        ("sigmoid_scale_for_mem_enc", cfg.sigmoid_scale_for_mem_enc),
        ("sigmoid_bias_for_mem_enc", cfg.sigmoid_bias_for_mem_enc),
        ("memory_attention_num_attention_heads", 1),
        ("memory_attention_downsample_rate", 1),
        ("rope_parameters.rope_theta", cfg.rope_theta),
    )


def read_config(path: Path) -> TransformersConfig:
    """Model size, SAM version and kind of a transformers ``config.json``.

    Raises:
        CheckpointError: not JSON, not a SAM 2 model of transformers, a Hiera trunk that is none
            of the released sizes, or settings that differ from the released models' (named).
    """
    where = f"transformers config {str(path)!r}"
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {where}: {error}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in MODEL_TYPES:
        kinds = ", ".join(f"{t!r} ({c})" for t, c in MODEL_TYPES.items())
        raise CheckpointError(f"{where} is model_type {model_type!r}, not a SAM 2 model of transformers "
                              f"(model_type {kinds})")
    backbone = _get(config, "vision_config.backbone_config") or {}
    found = {k: backbone.get(k) for k in _hiera_fields(sam2_config("tiny"))}
    model = next((name for name in SAM2_SIZES if _hiera_fields(sam2_config(name)) == found), None)
    if model is None:
        sizes = "; ".join(f"{n}: blocks_per_stage {list(sam2_config(n).hiera.stages)}" for n in SAM2_SIZES)
        raise CheckpointError(f"{where} describes a Hiera trunk that is none of SAM 2's released sizes "
                              f"({', '.join(f'{k} {v}' for k, v in found.items())}); sam2_ros builds {sizes}")
    tpos = config.get("enable_temporal_pos_encoding_for_object_pointers")
    spatial = config.get("enable_occlusion_spatial_embedding")
    if model_type == "sam2":
        version = None
    elif tpos is not False and spatial is not False:  # transformers' defaults are SAM 2.1's
        version = "2.1"
    elif tpos is False and spatial is False:
        version = "2.0"
    else:
        raise CheckpointError(f"{where} mixes SAM 2.0 and 2.1 (enable_temporal_pos_encoding_for_object_pointers "
                              f"{tpos}, enable_occlusion_spatial_embedding {spatial}): no released model does")
    cfg = sam2_config(model, version=version or "2.1")
    differ = [f"{key} {value!r} (released: {want!r})" for key, want in _semantics(cfg)
              for value in [_get(config, key)] if value is not None and value != want]
    if differ:
        raise CheckpointError(f"{where} changes settings that sam2_ros implements only as released: "
                              f"{'; '.join(differ)}")
    return TransformersConfig(model, version, model_type)


# --------------------------------------------------------------------------------------------
# The key map
# --------------------------------------------------------------------------------------------

# Placeholders of the rules: each matches one name segment (or a few alternatives).
_WORDS = {
    "i": r"\d+", "j": r"\d+", "p": r"weight|bias",
    "attn": r"self_attn|cross_attn_image|cross_attn_token_to_image|cross_attn_image_to_token",
    "qkv": r"q_proj|k_proj|v_proj",
    "pe": r"pos_embed|pos_embed_window",
    "hproj": r"qkv|proj",
    "token": r"iou_token|mask_tokens|obj_score_token",
    "conv": r"conv_s0|conv_s1",
    "head": r"iou_prediction_head|pred_obj_score_head|output_hypernetworks_mlps\.\d+",
    "embed": r"not_a_point_embed|no_mask_embed",
    "lin": r"linear1|linear2",
}

# (transformers, ours); feed-forward stacks are already numbered layers.0..n-1 on both sides
# (see _FF): the first matching rule wins, in both directions.
_RULES: List[Tuple[str, str]] = [
    ("no_memory_embedding", "no_mem_embed"),
    ("no_memory_positional_encoding", "no_mem_pos_enc"),
    ("memory_temporal_positional_encoding", "maskmem_tpos_enc"),
    ("no_object_pointer", "no_obj_ptr"),
    ("occlusion_spatial_embedding_parameter", "no_obj_embed_spatial"),
    ("mask_downsample.{p}", "mask_downsample.{p}"),
    ("temporal_positional_encoding_projection_layer.{p}", "obj_ptr_tpos_proj.{p}"),
    ("object_pointer_proj.layers.{i}.{p}", "obj_ptr_proj.layers.{i}.{p}"),
    # image encoder: Hiera trunk and FPN neck
    ("vision_encoder.backbone.{pe}", "image_encoder.trunk.{pe}"),
    ("vision_encoder.backbone.patch_embed.projection.{p}", "image_encoder.trunk.patch_embed.proj.{p}"),
    ("vision_encoder.backbone.blocks.{i}.layer_norm{j}.{p}", "image_encoder.trunk.blocks.{i}.norm{j}.{p}"),
    ("vision_encoder.backbone.blocks.{i}.attn.{hproj}.{p}", "image_encoder.trunk.blocks.{i}.attn.{hproj}.{p}"),
    ("vision_encoder.backbone.blocks.{i}.proj.{p}", "image_encoder.trunk.blocks.{i}.proj.{p}"),
    ("vision_encoder.backbone.blocks.{i}.mlp.layers.{j}.{p}", "image_encoder.trunk.blocks.{i}.mlp.layers.{j}.{p}"),
    ("vision_encoder.neck.convs.{i}.{p}", "image_encoder.neck.convs.{i}.conv.{p}"),
    # prompt encoder (point_embed and the positional matrix: see to_ours)
    ("prompt_encoder.{embed}.weight", "sam_prompt_encoder.{embed}.weight"),
    ("prompt_encoder.mask_embed.conv1.{p}", "sam_prompt_encoder.mask_downscaling.0.{p}"),
    ("prompt_encoder.mask_embed.layer_norm1.{p}", "sam_prompt_encoder.mask_downscaling.1.{p}"),
    ("prompt_encoder.mask_embed.conv2.{p}", "sam_prompt_encoder.mask_downscaling.3.{p}"),
    ("prompt_encoder.mask_embed.layer_norm2.{p}", "sam_prompt_encoder.mask_downscaling.4.{p}"),
    ("prompt_encoder.mask_embed.conv3.{p}", "sam_prompt_encoder.mask_downscaling.6.{p}"),
    # mask decoder
    ("mask_decoder.{token}.weight", "sam_mask_decoder.{token}.weight"),
    ("mask_decoder.{conv}.{p}", "sam_mask_decoder.{conv}.{p}"),
    ("mask_decoder.{head}.layers.{i}.{p}", "sam_mask_decoder.{head}.layers.{i}.{p}"),
    ("mask_decoder.upscale_conv1.{p}", "sam_mask_decoder.output_upscaling.0.{p}"),
    ("mask_decoder.upscale_layer_norm.{p}", "sam_mask_decoder.output_upscaling.1.{p}"),
    ("mask_decoder.upscale_conv2.{p}", "sam_mask_decoder.output_upscaling.3.{p}"),
    ("mask_decoder.transformer.layers.{i}.{attn}.{qkv}.{p}",
     "sam_mask_decoder.transformer.layers.{i}.{attn}.{qkv}.{p}"),
    ("mask_decoder.transformer.layers.{i}.{attn}.o_proj.{p}",
     "sam_mask_decoder.transformer.layers.{i}.{attn}.out_proj.{p}"),
    ("mask_decoder.transformer.layers.{i}.layer_norm{j}.{p}", "sam_mask_decoder.transformer.layers.{i}.norm{j}.{p}"),
    ("mask_decoder.transformer.layers.{i}.mlp.layers.{j}.{p}",
     "sam_mask_decoder.transformer.layers.{i}.mlp.layers.{j}.{p}"),
    ("mask_decoder.transformer.final_attn_token_to_image.{qkv}.{p}",
     "sam_mask_decoder.transformer.final_attn_token_to_image.{qkv}.{p}"),
    ("mask_decoder.transformer.final_attn_token_to_image.o_proj.{p}",
     "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.{p}"),
    ("mask_decoder.transformer.layer_norm_final_attn.{p}", "sam_mask_decoder.transformer.norm_final_attn.{p}"),
    # memory attention
    ("memory_attention.layers.{i}.{attn}.{qkv}.{p}", "memory_attention.layers.{i}.{attn}.{qkv}.{p}"),
    ("memory_attention.layers.{i}.{attn}.o_proj.{p}", "memory_attention.layers.{i}.{attn}.out_proj.{p}"),
    ("memory_attention.layers.{i}.{lin}.{p}", "memory_attention.layers.{i}.{lin}.{p}"),
    ("memory_attention.layers.{i}.layer_norm{j}.{p}", "memory_attention.layers.{i}.norm{j}.{p}"),
    ("memory_attention.layer_norm.{p}", "memory_attention.norm.{p}"),
    # memory encoder; Meta's mask downsampler is one Sequential of (conv, norm, GELU) x 4 + conv
    *[(f"memory_encoder.mask_downsampler.layers.{k}.{part}.{{p}}",
       f"memory_encoder.mask_downsampler.encoder.{3 * k + offset}.{{p}}")
      for k in range(4) for part, offset in (("conv", 0), ("layer_norm", 1))],
    ("memory_encoder.mask_downsampler.final_conv.{p}", "memory_encoder.mask_downsampler.encoder.12.{p}"),
    ("memory_encoder.feature_projection.{p}", "memory_encoder.pix_feat_proj.{p}"),
    ("memory_encoder.memory_fuser.layers.{i}.scale", "memory_encoder.fuser.layers.{i}.gamma"),
    ("memory_encoder.memory_fuser.layers.{i}.depthwise_conv.{p}", "memory_encoder.fuser.layers.{i}.dwconv.{p}"),
    ("memory_encoder.memory_fuser.layers.{i}.layer_norm.{p}", "memory_encoder.fuser.layers.{i}.norm.{p}"),
    ("memory_encoder.memory_fuser.layers.{i}.pointwise_conv{j}.{p}", "memory_encoder.fuser.layers.{i}.pwconv{j}.{p}"),
    ("memory_encoder.projection.{p}", "memory_encoder.out_proj.{p}"),
]


def _compile(template: str) -> Tuple["re.Pattern[str]", str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(part) if n % 2 == 0 else f"(?P<{part}>{_WORDS[part]})" for n, part in enumerate(parts))
    return re.compile(regex), template


_FORWARD = [(_compile(hf)[0], ours) for hf, ours in _RULES]
_BACKWARD = [(_compile(ours)[0], hf) for hf, ours in _RULES]

# transformers numbers a feed-forward stack proj_in, layers.0 .. layers.n-3, proj_out; Meta's
# MLP is layers.0 .. layers.n-1. These are the stacks (transformers' names).
_FF = re.compile(r"(?P<stack>.*\.mlp|.*_head|.*hypernetworks_mlps\.\d+|object_pointer_proj)"
                 r"\.(?P<layer>proj_in|proj_out|layers\.\d+)\.(?P<p>weight|bias)")


def _translate(name: str, rules) -> Optional[str]:
    for pattern, template in rules:
        match = pattern.fullmatch(name)
        if match:
            return template.format(**match.groupdict())
    return None


def _stack_depths(names: Iterable[str]) -> Dict[str, int]:
    """Layers per feed-forward stack (by transformers' stack name), in either numbering."""
    layers: Dict[str, set] = {}
    for name in names:
        match = _FF.fullmatch(name)
        if match:
            layers.setdefault(match["stack"], set()).add(match["layer"])
    return {stack: len(found) for stack, found in layers.items()}


def _ff_to_meta(name: str, depths: Mapping[str, int]) -> str:
    match = _FF.fullmatch(name)
    if not match:
        return name
    layer, n = match["layer"], depths[match["stack"]]
    index = 0 if layer == "proj_in" else n - 1 if layer == "proj_out" else int(layer.split(".")[1]) + 1
    return f"{match['stack']}.layers.{index}.{match['p']}"


def _ff_to_transformers(name: str, depths: Mapping[str, int]) -> str:
    match = _FF.fullmatch(name)
    if not match or match["stack"] not in depths:
        return name
    index, n = int(match["layer"].split(".")[1]), depths[match["stack"]]
    layer = "proj_in" if index == 0 else "proj_out" if index == n - 1 else f"layers.{index - 1}"
    return f"{match['stack']}.{layer}.{match['p']}"


def is_transformers_layout(keys: Iterable[str]) -> bool:
    """Whether state-dict keys are transformers' SAM 2 names (``vision_encoder.backbone.*``)."""
    return any(k.startswith(("vision_encoder.backbone.", "mask_decoder.transformer.")) for k in keys)


def to_ours(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """Rename a transformers SAM 2 state dict to this package's (Meta's) names.

    Every key is used: a key no rule maps, or two copies of the positional matrix that differ,
    raise :class:`~.errors.CheckpointMismatchError` naming them. Whether every key of the model
    is present is checked by the strict load that follows.
    """
    depths = _stack_depths(state)
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []
    for name, value in state.items():
        if name == _POINT_EMBED:  # (4, C) -> point_embeddings.{0..3}.weight (1, C)
            for k, row in enumerate(value.unbind(0)):
                out[f"sam_prompt_encoder.point_embeddings.{k}.weight"] = row[None]
            continue
        if name in _PE_COPIES:
            if _PE in out and not torch.equal(out[_PE], value):
                raise CheckpointMismatchError(
                    f"{source}: the two copies of the prompt encoder's positional matrix "
                    f"({' and '.join(_PE_COPIES)}) differ; SAM 2 has one (transformers keeps them equal)",
                    unexpected=list(_PE_COPIES))
            out[_PE] = value
            continue
        ours = _translate(_ff_to_meta(name, depths), _FORWARD)
        if ours is None:
            unmapped.append(name)
        else:
            out[ours] = value
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f", ... ({len(unmapped) - 8} more)" if len(unmapped) > 8 else "")
        raise CheckpointMismatchError(
            f"{source}: {len(unmapped)} transformers key(s) have no counterpart in SAM 2: {shown}. "
            f"sam2_ros loads Sam2VideoModel / Sam2Model checkpoints of the released SAM 2 / 2.1 layouts",
            unexpected=unmapped)
    return out


def transformers_names(keys: Sequence[str], all_keys: Sequence[str]) -> Dict[str, str]:
    """transformers' names of some of this package's state-dict keys (for messages).

    ``all_keys``: the model's keys, which give the depth of each feed-forward stack.
    """
    depths = _stack_depths(_translate(k, _BACKWARD) or k for k in all_keys)
    names = {}
    for key in keys:
        if key == _PE:
            names[key] = _PE_COPIES[0]
        elif key.startswith("sam_prompt_encoder.point_embeddings."):
            names[key] = _POINT_EMBED
        else:
            hf = _translate(key, _BACKWARD)
            names[key] = _ff_to_transformers(hf, depths) if hf is not None else key
    return names
