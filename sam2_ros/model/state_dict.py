"""State dicts: what a loaded checkpoint holds, which model it is, and strict loading that says
why a checkpoint does not fit.

* :func:`extract_state_dict`: the ``{name: tensor}`` dict inside Meta's ``{"model": ...}`` wrapper.
* :func:`detect_checkpoint_variant`: model size and SAM version from keys and shapes.
* :func:`load_state_dict_strict`: every key used, none missing, shapes equal; when a checkpoint
  does not fit, the cause (SAM 1 file, other model size, SAM 2.0 vs 2.1) and the fix come before
  the offending keys (:func:`diagnose_state_dict_mismatch`).

Facts relied on (checked against Meta's ``sam2`` 1.1.0, models built at image_size 256 and 1024):

* The state dict does not depend on ``image_size``: every key and shape is identical at 256
  and 1024 (Hiera's ``pos_embed`` has a fixed size and is interpolated at run time).
* SAM 2.1 adds exactly three keys to SAM 2.0: ``no_obj_embed_spatial`` (1, 64) and
  ``obj_ptr_tpos_proj.weight`` (64, 256) / ``.bias`` (64,). Its configs also switch on
  ``add_tpos_enc_to_obj_ptrs`` and ``use_signed_tpos_enc_to_obj_ptrs``, which have no weights.
* Model sizes differ only in the Hiera trunk: 12 / 16 / 24 / 48 blocks
  (``image_encoder.trunk.blocks.N``) and patch-embedding width 96 / 96 / 112 / 144 for
  tiny / small / base_plus / large.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from .config import MODEL_NAMES, normalize_model_name
from .errors import CheckpointError, CheckpointMismatchError
from .official import OFFICIAL_CHECKPOINTS, SAM2_0_CHECKPOINTS

__all__ = ["HIERA_BLOCKS", "HIERA_EMBED_DIM", "extract_state_dict", "detect_checkpoint_variant",
           "diagnose_state_dict_mismatch", "load_state_dict_strict"]

HIERA_BLOCKS: Dict[str, int] = {"tiny": 12, "small": 16, "base_plus": 24, "large": 48}
"""Number of Hiera trunk blocks per model size."""

HIERA_EMBED_DIM: Dict[str, int] = {"tiny": 96, "small": 96, "base_plus": 112, "large": 144}
"""Width of the Hiera patch embedding (first stage) per model size."""

_SAM1_EMBED_DIM = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_SAM2_1_ONLY_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")


def _first_line(text: str, limit: int = 200) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[:limit] + "..."


def _preview(items: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(str(item) for item in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def extract_state_dict(obj: Any, *, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object.

    Accepts Meta's ``{"model": state_dict, ...}`` (other entries, e.g. optimizer state, are
    ignored), ``{"state_dict": ...}`` and a bare ``{name: tensor}`` dict.

    Raises:
        CheckpointError: not a dict, an empty dict, a dict without tensors, or one whose
            entries are not all tensors.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}, not a state dict; expected Meta's format "
            f"{{'model': {{name: tensor}}}} or a {{name: tensor}} dict"
        )
    state: Any = obj
    for wrapper in ("model", "state_dict"):
        if isinstance(obj.get(wrapper), Mapping):
            state, source = obj[wrapper], f"{source}[{wrapper!r}]"
            break
    if not state:
        raise CheckpointError(f"{source} is an empty dict: it holds no weights")
    not_str = [key for key in state if not isinstance(key, str)]
    tensors = [key for key, value in state.items() if isinstance(value, torch.Tensor)]
    if not tensors:
        keys = [f"{key!r} ({type(state[key]).__name__})" for key in list(state)[:8]]
        raise CheckpointError(
            f"{source} is a dict without tensors (entries: {_preview(keys, 8)}); expected Meta's "
            f"format {{'model': state_dict}} or a bare state dict of tensors"
        )
    others = [f"{key!r} ({type(value).__name__})" for key, value in state.items()
              if not isinstance(value, torch.Tensor)]
    if others or not_str:
        raise CheckpointError(
            f"{source} mixes tensors with {len(others)} other entries ({_preview(others)}); "
            f"a state dict maps parameter names to tensors"
        )
    return dict(state)


# --------------------------------------------------------------------------------------------
# Which model a state dict is
# --------------------------------------------------------------------------------------------


def _keys(state: Mapping[str, Any]) -> List[str]:
    return [key for key in state if isinstance(key, str)]


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", value)
    try:
        return tuple(int(d) for d in shape)
    except TypeError:
        return None


def _is_sam1(keys: Sequence[str]) -> bool:
    return any(k.startswith("image_encoder.blocks.") or k.startswith("image_encoder.neck.0.")
               for k in keys) and not any(k.startswith("image_encoder.trunk.") for k in keys)


def _hiera_size(state: Mapping[str, Any], keys: Sequence[str]) -> Optional[str]:
    pattern = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")
    blocks = {int(m.group(1)) for k in keys for m in [pattern.match(k)] if m}
    by_blocks = {n: size for size, n in HIERA_BLOCKS.items()}.get(len(blocks)) if blocks else None
    shape = _shape(state.get("image_encoder.trunk.patch_embed.proj.weight"))
    dim = shape[0] if shape else None
    by_dim = [size for size, d in HIERA_EMBED_DIM.items() if d == dim]
    if by_blocks is not None:
        if dim is not None and by_blocks not in by_dim:
            return None  # inconsistent: not an official layout
        return by_blocks
    if not blocks and len(by_dim) == 1:
        return by_dim[0]
    return None


def detect_checkpoint_variant(state_dict: Mapping[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """Guess ``(size, version)`` of a state dict from its keys and shapes.

    Works on a checkpoint's state dict and equally on a model's ``state_dict()``; values may be
    tensors or shapes.

    Returns:
        size: ``"tiny"``, ``"small"``, ``"base_plus"`` or ``"large"`` (from the number of Hiera
            blocks and the patch-embedding width), or for a SAM 1 checkpoint ``"vit_b"``,
            ``"vit_l"`` or ``"vit_h"``; None when unknown.
        version: ``"2.1"`` (has ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj.*``), ``"2.0"``
            (a SAM 2 state dict without them), ``"1"`` for SAM (v1); None when unknown.
    """
    keys = _keys(state_dict)
    if _is_sam1(keys):
        shape = _shape(state_dict.get("image_encoder.patch_embed.proj.weight"))
        return (_SAM1_EMBED_DIM.get(shape[0]) if shape else None), "1"
    size = _hiera_size(state_dict, keys)
    key_set = set(keys)
    has_21 = [k in key_set for k in _SAM2_1_ONLY_KEYS]
    is_sam2 = "maskmem_tpos_enc" in key_set or any(k.startswith("memory_attention.") for k in keys)
    if all(has_21):
        version: Optional[str] = "2.1"
    elif not any(has_21) and is_sam2:
        version = "2.0"
    else:
        version = None
    return size, version


def _official_name(size: Optional[str], version: Optional[str]) -> Optional[str]:
    if size not in MODEL_NAMES:
        return None
    return (OFFICIAL_CHECKPOINTS if version != "2.0" else SAM2_0_CHECKPOINTS)[size].filename


def diagnose_state_dict_mismatch(
    expected: Mapping[str, Any], state_dict: Mapping[str, Any], *, model_name: str
) -> Optional[CheckpointMismatchError]:
    """Compare a checkpoint with a model's ``state_dict()`` and explain any difference.

    Args:
        expected: the model's state dict (tensors or shapes).
        state_dict: the checkpoint's state dict.
        model_name: the model size the user asked for (used in the advice).

    Returns:
        None when every key matches with equal shapes; otherwise the error to raise, whose
        message gives the likely cause and fix first, then the offending keys (counts and the
        first few).
    """
    exp_shapes = {k: _shape(v) for k, v in expected.items()}
    got_shapes = {k: _shape(v) for k, v in state_dict.items()}
    missing = [k for k in exp_shapes if k not in got_shapes]
    unexpected = [k for k in got_shapes if k not in exp_shapes]
    mismatched = [(k, exp_shapes[k], got_shapes[k]) for k in exp_shapes
                  if k in got_shapes and exp_shapes[k] != got_shapes[k]]
    if not (missing or unexpected or mismatched):
        return None

    ck_size, ck_version = detect_checkpoint_variant(state_dict)
    model_size, model_version = detect_checkpoint_variant(expected)
    try:
        requested = normalize_model_name(model_name)
    except ValueError:
        requested = model_size
    requested = requested or model_size
    got_keys = _keys(state_dict)

    causes: List[str] = []
    if ck_version == "1":
        vit = f" ({ck_size})" if ck_size else ""
        causes.append(
            f"this is a SAM (v1) checkpoint{vit}; sam2_ros needs a SAM 2 / 2.1 checkpoint such as "
            f"{_official_name(requested, '2.1') or 'sam2.1_hiera_tiny.pt'}"
        )
    elif got_keys and all(k.startswith("module.") for k in got_keys):
        causes.append(
            "every checkpoint key starts with 'module.' (saved from a DataParallel/DDP wrapper): "
            "re-save it with the prefix removed, e.g. {k[len('module.'):]: v for k, v in sd.items()}"
        )
    elif any(k.startswith("vision_encoder.") for k in got_keys) and not any(
        k.startswith("image_encoder.") for k in got_keys
    ):
        causes.append(
            "these are a Hugging Face transformers model's names (vision_encoder.*): pass the checkpoint "
            "itself (its folder, its model.safetensors or its Hub id) to from_pretrained / build_model, "
            "which maps transformers' names to SAM 2's"
        )
    elif not set(got_shapes) & set(exp_shapes):
        causes.append(
            "no key of the checkpoint belongs to SAM 2: this is not a SAM 2 checkpoint; use one of "
            "Meta's sam2.1_hiera_{tiny,small,base_plus,large}.pt"
        )
    else:
        if ck_size and requested and ck_size != requested:
            causes.append(
                f"checkpoint is hiera {ck_size!r} but model={requested!r} was requested: pass "
                f"model:={ck_size} or the {requested} checkpoint "
                f"({_official_name(requested, ck_version) or requested})"
            )
        if ck_version and model_version and ck_version != model_version:
            only_21 = ", ".join(_SAM2_1_ONLY_KEYS)
            causes.append(
                f"checkpoint is SAM {ck_version} but the model is built for SAM {model_version} "
                f"(SAM 2.1 adds {only_21}): build the model with version={ck_version!r} "
                f"(from_pretrained detects it from the checkpoint) or pass a SAM {model_version} "
                f"checkpoint such as {_official_name(requested, model_version) or 'the ' + model_version + ' file'}"
            )

    details: List[str] = []
    if missing:
        details.append(f"{len(missing)} missing key(s) (in the model, not the checkpoint): {_preview(missing)}")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected key(s) (in the checkpoint, not the model): "
                       f"{_preview(unexpected)}")
    if mismatched:
        shown = [f"{k} model {list(e) if e else e} vs checkpoint {list(g) if g else g}"
                 for k, e, g in mismatched]
        details.append(f"{len(mismatched)} key(s) of different shape: {_preview(shown, 3)}")

    head = f"checkpoint does not fit the SAM 2 model (model={model_name!r})"
    message = head + (": " + "; ".join(causes) if causes else "") + ". " + ". ".join(details) + "."
    if not causes:
        message += (" Loading is strict (every key used, none missing, shapes equal): use an "
                    "official SAM 2 / 2.1 checkpoint of the requested size.")
    return CheckpointMismatchError(message, missing, unexpected, mismatched)


def load_state_dict_strict(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, model_name: str
) -> None:
    """Load ``state_dict`` into ``module``: every key used, none missing, shapes equal.

    ``state_dict`` may also be Meta's ``{"model": state_dict}`` wrapper. Nothing is loaded when
    the checkpoint does not fit.

    Args:
        module: the model (its ``state_dict()`` keys are those of Meta's SAM2Base).
        state_dict: the checkpoint's state dict, e.g. from :func:`load_checkpoint_file`.
        model_name: the model size the user asked for (tiny, small, ...), for the advice.

    Raises:
        CheckpointMismatchError: keys or shapes differ; the message names the likely cause (a
            SAM 1 checkpoint, another model size, SAM 2.0 vs 2.1), the fix, and the keys.
        CheckpointError: ``state_dict`` is not a state dict.
    """
    state = extract_state_dict(state_dict, source="checkpoint")
    error = diagnose_state_dict_mismatch(module.state_dict(), state, model_name=model_name)
    if error is not None:
        raise error
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:  # e.g. a dtype torch cannot copy
        raise CheckpointMismatchError(
            f"checkpoint does not fit the SAM 2 model (model={model_name!r}): {_first_line(str(error), 500)}"
        ) from error
