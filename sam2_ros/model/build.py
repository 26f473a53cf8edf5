"""Build a ready-to-run SAM 2 or EdgeTAM model from a checkpoint (or random weights, for tests and demos)."""

from __future__ import annotations

import contextlib
import logging
from typing import Optional, Union

import torch

from .checkpoint import (CheckpointError, CheckpointMismatchError, detect_checkpoint_variant, load_checkpoint,
                         load_state_dict_strict)
from .config import EDGETAM, edgetam_config, normalize_model_name, sam2_config
from .edgetam import EdgeTAM
from .edgetam_checkpoint import check_model_family
from .sam2 import SAM2

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable CUDA is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was asked for but this torch ({torch.__version__}) sees no CUDA device; "
                         "use device='cpu' or 'auto'")
    return dev


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    """Compute dtype: ``auto`` is bfloat16 on GPUs that support it, float16 on older ones, float32 on CPU.

    On the CPU, float32 gives the official model's numbers exactly; ``bfloat16`` is an opt-in
    mixed-precision mode (matmuls and convolutions in bf16) that trades that for speed.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, {', '.join(sorted(DTYPES))}")
    if device.type == "cpu" and DTYPES[dtype] == torch.float16:
        raise ValueError(
            "dtype='float16' is for CUDA; on the CPU use float32 (exact) or bfloat16 (faster on CPUs "
            "with native bf16, e.g. AVX512-BF16 or AMX; not bit-identical to the official model)"
        )
    return DTYPES[dtype]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision (weights stay float32; LayerNorm/softmax run in float32 under
    autocast); a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_model(
    checkpoint: Optional[str],
    model: str = "tiny",
    image_size: int = 1024,
    device: Union[str, torch.device, None] = "auto",
    version: Optional[str] = None,
    *,
    image_only: bool = False,
    fuse: bool = False,
) -> SAM2:
    """Load a checkpoint into a SAM 2 model, or with ``model="edgetam"`` into an
    :class:`~sam2_ros.model.edgetam.EdgeTAM`: Meta's file, a Hugging Face Hub id, a folder, a
    transformers-format SAM 2, or None for the official checkpoint of ``model`` (fetched through
    the Hub cache); see :mod:`sam2_ros.model.checkpoint`.

    The model size is the checkpoint's own where it declares one (Hub id, official file name,
    transformers ``config.json``), else ``model``; the family (SAM 2 or EdgeTAM) must be the one
    ``model`` names: a file of the other family is refused, naming what it holds. The SAM 2.0 /
    2.1 variant is read from the checkpoint unless ``version`` is given. Loading is strict; a
    checkpoint of another size or family raises a
    :class:`~sam2_ros.model.errors.CheckpointMismatchError` that names the fix.

    ``image_only``: for the image predictors, which use no memory: also accept an image-only
    checkpoint (transformers' ``Sam2Model``), strictly for the image encoder, prompt encoder and
    mask decoder; the memory weights it lacks are NaN, so that tracking with it cannot go unnoticed.
    ``fuse`` (EdgeTAM only): fold the trunk's BatchNorms into its convs after loading.
    """
    name = normalize_model_name(model)
    if name != EDGETAM and fuse:
        raise ValueError("fuse=True folds EdgeTAM's BatchNorms; SAM 2's Hiera has none (use fuse=False)")
    if name == EDGETAM and version is not None:
        raise ValueError(f"version={version!r} selects a SAM 2 release; EdgeTAM has one (leave version=None)")
    loaded = load_checkpoint(checkpoint, name)
    check_model_family(loaded.state, name)
    if name == EDGETAM:
        net = EdgeTAM(edgetam_config(image_size))
        load_state_dict_strict(net, loaded.state, model_name=name)
        if fuse:
            net.fuse()
        log.info("loaded EdgeTAM from %s", loaded.path)
        return net.to(resolve_device(device)).eval()
    if version is None:
        detected = loaded.version or detect_checkpoint_variant(loaded.state)[1]
        version = detected if detected in ("2.0", "2.1") else "2.1"
    net = SAM2(sam2_config(loaded.model, image_size, version))
    if loaded.image_only:
        if not image_only:
            raise CheckpointError(
                f"checkpoint {str(loaded.path)!r} is an image-only SAM 2 (transformers' Sam2Model): it has no "
                f"memory weights, which tracking needs. Use it with ImagePredictor / AutomaticMaskGenerator, "
                f"or track with a Sam2VideoModel checkpoint")
        _load_image_parts(net, loaded.state, loaded.model)
    else:
        _load_strict(net, loaded.state, loaded.model, loaded.from_transformers)
    log.info("loaded SAM %s %s from %s", version, loaded.model, loaded.path)
    return net.to(resolve_device(device)).eval()


_IMAGE_PARTS = ("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.", "no_mem_embed")


def _load_strict(net: SAM2, state, model: str, from_transformers: bool) -> None:
    try:
        load_state_dict_strict(net, state, model_name=model)
    except CheckpointMismatchError as error:
        if not from_transformers or not error.missing:
            raise
        from .transformers_format import transformers_names

        names = transformers_names(error.missing, list(net.state_dict()))
        shown = ", ".join(dict.fromkeys(names.values()))
        raise CheckpointMismatchError(f"{error} In transformers' names, the checkpoint lacks: {shown}",
                                      error.missing, error.unexpected, error.mismatched) from None


def _load_image_parts(net: SAM2, state, model: str) -> None:
    """Strict over the image path; the rest of the model (memory) is set to NaN."""
    image = torch.nn.Module()
    for part in ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder"):
        image.add_module(part, getattr(net, part))
    image.no_mem_embed = net.no_mem_embed
    _load_strict(image, state, model, True)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if not name.startswith(_IMAGE_PARTS):
                param.fill_(float("nan"))


def build_random_model(
    model: str = "tiny", image_size: int = 1024, device: Union[str, torch.device, None] = "auto",
    version: str = "2.1", seed: int = 0,
) -> SAM2:
    """A model with random weights: runs the whole pipeline, but its masks mean nothing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if normalize_model_name(model) == EDGETAM:
            net = EdgeTAM(edgetam_config(image_size))
        else:
            net = SAM2(sam2_config(model, image_size, version))
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    return net.to(resolve_device(device)).eval()
