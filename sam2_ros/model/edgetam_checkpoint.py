"""Which model family a checkpoint holds (SAM 2 or EdgeTAM).

A SAM 2 file given with ``model="edgetam"`` (or EdgeTAM's with a SAM 2 size) is refused before
any key is compared, with a message naming what the file holds and what to pass instead.

Facts (``edgetam.pt`` as released, and EdgeTAM's code building it): the trunk's keys are timm's
RepViT names under ``image_encoder.trunk.body.`` (``stem.``, ``stages_0.`` .. ``stages_3.``, with
BatchNorm running statistics), the perceiver's under ``spatial_perceiver.``; there is no Hiera
key (``image_encoder.trunk.blocks.``, ``patch_embed``) and none of SAM 2.1's three additions.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .errors import CheckpointMismatchError
from .official import OFFICIAL_CHECKPOINTS
from .state_dict import detect_checkpoint_variant
from .config import EDGETAM, normalize_model_name

EDGETAM_CHECKPOINT = OFFICIAL_CHECKPOINTS["edgetam"]  # Hub facebook/EdgeTAM, edgetam.pt (sam2_ros.model.official)
_EDGETAM_MARKERS = ("spatial_perceiver.", "image_encoder.trunk.body.")


def is_edgetam_state_dict(state: Mapping[str, Any]) -> bool:
    """True if the state dict has EdgeTAM's perceiver and RepViT trunk keys."""
    return all(any(str(k).startswith(m) for k in state) for m in _EDGETAM_MARKERS)


def describe_checkpoint(state: Mapping[str, Any]) -> Optional[str]:
    """The model a state dict holds, in words ("EdgeTAM", "SAM 2.1 hiera tiny", "SAM (v1)
    vit_b"), or None when it is neither."""
    if is_edgetam_state_dict(state):
        return "EdgeTAM"
    size, version = detect_checkpoint_variant(state)
    if version == "1":
        return "SAM (v1)" + (f" {size}" if size else "")
    if version in ("2.0", "2.1") and size:
        return f"SAM {version} hiera {size}"
    return None


def check_model_family(state: Mapping[str, Any], model: str) -> None:
    """Refuse a checkpoint of the other family than ``model`` (EdgeTAM vs SAM 2).

    Raises:
        CheckpointMismatchError: the message names what the file holds and the fix.
    """
    name = normalize_model_name(model)
    held = describe_checkpoint(state)
    if name == EDGETAM and held is not None and held != "EdgeTAM":
        size, _ = detect_checkpoint_variant(state)
        fix = f"pass model='{size}' to use it" if size and not held.startswith("SAM (v1)") else "it is not a SAM 2 family file"
        raise CheckpointMismatchError(
            f"checkpoint holds {held}, not EdgeTAM, but model='edgetam' was asked for: {fix}, or give "
            f"EdgeTAM's own checkpoint {EDGETAM_CHECKPOINT.filename} (Hugging Face Hub facebook/EdgeTAM)"
        )
    if name != EDGETAM and held == "EdgeTAM":
        raise CheckpointMismatchError(
            f"checkpoint holds EdgeTAM (RepViT-M1 trunk, spatial perceiver), not SAM 2 hiera {name}: pass "
            f"model='edgetam' to use it, or give a SAM 2 / 2.1 checkpoint of size {name}"
        )
