"""What an exported ONNX file or a TensorRT engine says about itself, and the checks that
refuse a file built for another model, image size, TensorRT version or GPU.

An ONNX export carries its facts in ``metadata_props`` (all strings); a TensorRT engine
carries them in ``<engine>.json`` beside it (written by ``export/build_engine.py``). The
checks compare those facts with the running model and machine and raise
:class:`BackendMismatchError` naming every difference.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Tuple

import torch

# Parameters (state-dict prefixes) each exported part is made of: the weight fingerprint
# stored in a file is the hash of exactly these tensors.
PART_PREFIXES: Dict[str, Tuple[str, ...]] = {
    "encoder": ("image_encoder.", "sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1."),
    "memory_attention": ("memory_attention.",),
    "decoder": ("sam_prompt_encoder.", "sam_mask_decoder.", "obj_ptr_proj."),
    "memory_encoder": ("memory_encoder.", "no_obj_embed_spatial", "spatial_perceiver."),
    # The whole frame step but the image encoder (sam2_ros.backends.step_export).
    "step": ("memory_attention.", "memory_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.", "obj_ptr_proj.",
             "obj_ptr_tpos_proj.", "mask_downsample.", "maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr",
             "no_obj_embed_spatial", "spatial_perceiver."),
}
PARTS = tuple(PART_PREFIXES)


class BackendError(RuntimeError):
    """A backend cannot be used (missing package, unreadable or invalid file)."""


class BackendMismatchError(BackendError):
    """A file was made for another model, image size, TensorRT version or GPU."""


def file_sha256(path: os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(model: torch.nn.Module, part: str) -> str:
    """SHA-256 (first 16 hex digits) of the part's weights as float32 bytes, in state-dict
    order. The same checkpoint gives the same fingerprint on any device."""
    if part not in PART_PREFIXES:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    prefixes = PART_PREFIXES[part]
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if name.startswith(prefixes):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_readable(path: os.PathLike, what: str) -> Path:
    """The file exists, is a regular file, is readable and not empty; else BackendError."""
    p = Path(path).expanduser()
    if not str(path):
        raise BackendError(f"no {what} file given")
    if not p.exists():
        raise BackendError(f"{what} file {p} does not exist")
    if not p.is_file():
        raise BackendError(f"{what} path {p} is not a file")
    if not os.access(p, os.R_OK):
        raise BackendError(f"{what} file {p} is not readable (permissions)")
    if p.stat().st_size == 0:
        raise BackendError(f"{what} file {p} is empty")
    return p


def read_onnx_metadata(path: os.PathLike, check: bool = True) -> Dict[str, str]:
    """Parse an ONNX file (and run ``onnx.checker`` when ``check``) and return its
    metadata_props; a file that does not parse or check is a BackendError."""
    p = check_readable(path, "ONNX")
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is installed with onnxruntime's users
        raise BackendError("the 'onnx' package is needed to check ONNX files: pip install onnx") from e
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise BackendError(f"{p} is not a readable ONNX model: {e}") from e
    if check:
        try:
            onnx.checker.check_model(str(p))
        except Exception as e:
            raise BackendError(f"{p} fails onnx.checker: {e}") from e
    return {m.key: m.value for m in proto.metadata_props}


def read_engine_metadata(engine_path: os.PathLike) -> Dict:
    """The JSON written beside an engine by ``export/build_engine.py``."""
    check_readable(engine_path, "TensorRT engine")
    meta = Path(str(engine_path) + ".json")
    if not meta.is_file():
        raise BackendError(
            f"{meta} is missing: sam2_ros only runs engines whose metadata it can check. Build the engine "
            "with export/build_engine.py, or for an engine built by trtexec write the metadata with "
            "`python export/build_engine.py --onnx F.onnx --output F.engine --metadata-only` on the same machine"
        )
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise BackendError(f"{meta} is not valid JSON: {e}") from e


def expected_facts(model, part: str = "encoder") -> Dict[str, str]:
    """What a file must say to be used with ``model`` for ``part``."""
    cfg = model.cfg
    return {
        "part": part,
        "model": cfg.name,
        "image_size": str(cfg.image_size),
        "weights_fingerprint": weights_fingerprint(model, part),
    }


def differences(found: Mapping[str, object], expected: Mapping[str, object]) -> List[str]:
    """Human-readable differences between a file's facts and the expected ones."""
    out = []
    for key, want in expected.items():
        have = found.get(key)
        if have is None:
            out.append(f"{key}: the file does not say (expected {want})")
        elif str(have) != str(want):
            what = "weights (another checkpoint)" if key == "weights_fingerprint" else key
            out.append(f"{what}: file has {have}, expected {want}")
    return out


def raise_if_different(path: os.PathLike, found: Mapping[str, object], expected: Mapping[str, object], hint: str) -> None:
    diffs = differences(found, expected)
    if diffs:
        raise BackendMismatchError(f"{path} does not match: " + "; ".join(diffs) + f". {hint}")


def describe(items: Iterable[Tuple[str, object]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in items)
