"""SAM 2 checkpoints: where they come from and how they are read, never running code from them.

The user's ``checkpoint`` argument (the node's ``checkpoint`` parameter, every tool's
``--checkpoint``, ``from_pretrained``'s first argument) is one of:

* ``None`` / ``""``: the official checkpoint of ``model`` (SAM 2.1 for tiny ... large), fetched
  from its Hugging Face Hub repository through ``huggingface_hub`` and its cache;
* a Hub model id: Meta's (``facebook/sam2.1-hiera-tiny``, ``facebook/sam2-hiera-large``,
  ``facebook/EdgeTAM``; see :mod:`.official`), or a SAM 2 saved by transformers
  (``Sam2VideoModel.save_pretrained`` / ``push_to_hub``: ``config.json`` + ``model.safetensors``);
* a local file: Meta's ``.pt`` or a ``.safetensors`` of Meta's or of transformers' layout;
* a local folder: one holding one of Meta's files (``hf download ... --local-dir``), a
  transformers model, or a single checkpoint file.

:func:`load_checkpoint` turns it into a state dict with Meta's key names plus the model size and
SAM version it declares; ``.pt`` files are read with ``torch.load(weights_only=True)`` and
``.safetensors`` with safetensors, so no file can run code. Official file names, Hub ids and
``config.json`` declare their model size; a file without one is taken as the ``model`` asked for
(and a mismatch is a clear error, :func:`load_state_dict_strict`).

This module re-exports the names of :mod:`.errors`, :mod:`.official` and :mod:`.state_dict`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from .config import normalize_model_name
from .errors import CheckpointDownloadError, CheckpointError, CheckpointMismatchError, CheckpointNotFoundError
from .hub import fetch, is_hub_id
from .official import (HUB_CHECKPOINTS, KNOWN_CHECKPOINT_FILES, OFFICIAL_CHECKPOINTS, SAM2_0_CHECKPOINTS,
                       CheckpointInfo, official_by_repo, official_checkpoint)
from .state_dict import (HIERA_BLOCKS, HIERA_EMBED_DIM, _first_line, detect_checkpoint_variant,
                         diagnose_state_dict_mismatch, extract_state_dict, load_state_dict_strict)
from .transformers_format import is_transformers_layout, read_config, to_ours

__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "CheckpointDownloadError", "CheckpointMismatchError",
    "CheckpointInfo", "OFFICIAL_CHECKPOINTS", "SAM2_0_CHECKPOINTS", "KNOWN_CHECKPOINT_FILES", "HUB_CHECKPOINTS",
    "HIERA_BLOCKS", "HIERA_EMBED_DIM", "official_checkpoint",
    "Located", "locate_checkpoint", "resolve_checkpoint", "LoadedCheckpoint", "load_checkpoint",
    "load_checkpoint_file", "extract_state_dict", "detect_checkpoint_variant", "diagnose_state_dict_mismatch",
    "load_state_dict_strict",
]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

_WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")
_TRANSFORMERS_FILES = ("config.json", "model.safetensors")
_HUB_HINT = ("sam2_ros loads from the Hub Meta's repositories ("
             + ", ".join(sorted({i.repo_id for i in HUB_CHECKPOINTS.values()}))
             + ") and SAM 2 models saved by transformers (config.json + model.safetensors, as "
             "Sam2VideoModel.save_pretrained / push_to_hub write them); for another file of a repository, "
             "`hf download REPO FILE` and pass the file's path")


# --------------------------------------------------------------------------------------------
# Where the weights are
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """A checkpoint found on this machine.

    Attributes:
        weights: the weights file (``.pt`` or ``.safetensors``).
        config: a transformers ``config.json`` belonging to it, or None.
        model, version: what the source declares (an official file or Hub id), else None.
    """

    weights: Path
    config: Optional[Path] = None
    model: Optional[str] = None
    version: Optional[str] = None


def _official(path: Path, config: Optional[Path] = None) -> Located:
    """A local file; Meta's file names declare their model."""
    info = KNOWN_CHECKPOINT_FILES.get(path.name)
    return Located(path, config, info.model if info else None, info.version if info else None)


def locate_checkpoint(
    checkpoint: Optional[PathLike], model: str = "tiny", cache_dir: Optional[PathLike] = None, *,
    version: str = "2.1",
) -> Located:
    """Find (downloading through the Hub cache where needed) the checkpoint the user named.

    Args:
        checkpoint: None / ``""`` (the official checkpoint of ``model``), a Hub model id, a file
            or a folder (``~`` and ``$VARS`` are expanded).
        model: the model asked for: which official file None means, and which of several
            official files a folder's is.
        cache_dir: the Hub cache; default huggingface_hub's (``HF_HUB_CACHE`` / ``HF_HOME``).
        version: "2.1" (default) or "2.0": which release None means.

    Raises:
        CheckpointNotFoundError: a path that does not exist (and is no Hub id), or a folder
            holding no checkpoint that can be picked.
        CheckpointDownloadError: the Hub could not deliver the file; the message says how to get it.
        ValueError: unknown model or version.
    """
    if checkpoint is None or not str(checkpoint).strip():
        return _from_hub_official(official_checkpoint(model, version), cache_dir)
    text = str(checkpoint).strip()
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    if path.is_file():
        sibling = path.with_name("config.json")
        return _official(path, sibling if path.suffix == ".safetensors" and sibling.is_file() else None)
    if path.is_dir():
        return _in_folder(path, model, version)
    if is_hub_id(text):
        info = official_by_repo(text)
        if info is not None:
            return _from_hub_official(info, cache_dir)
        files = " ".join(_TRANSFORMERS_FILES)
        config = fetch(text, "config.json", cache_dir=cache_dir, missing_hint=_HUB_HINT, files_hint=files)
        return Located(fetch(text, "model.safetensors", cache_dir=cache_dir, files_hint=files), config)
    info = KNOWN_CHECKPOINT_FILES.get(path.name)
    hint = (f" It is Meta's official file, on the Hugging Face Hub as {info.repo_id}: pass that id as the "
            f"checkpoint to download it into the Hub cache." if info else "")
    raise CheckpointNotFoundError(
        f"checkpoint file not found: {str(path)!r}.{hint} Check the path; a checkpoint is a file, a "
        f"folder or a Hub model id (such as facebook/sam2.1-hiera-tiny); leave it empty (None) for "
        f"the official SAM 2.1 {model!r} checkpoint, fetched through the Hugging Face Hub cache"
    )


def resolve_checkpoint(
    checkpoint: Optional[PathLike], model: str = "tiny", cache_dir: Optional[PathLike] = None, *,
    version: str = "2.1",
) -> Path:
    """The local weights file of ``checkpoint`` (see :func:`locate_checkpoint`, same arguments).

    For a transformers checkpoint this is its ``model.safetensors``, with ``config.json`` beside
    it: passing the returned path back as ``checkpoint`` loads the same model.
    """
    return locate_checkpoint(checkpoint, model, cache_dir, version=version).weights


def _from_hub_official(info: CheckpointInfo, cache_dir: Optional[PathLike]) -> Located:
    path = fetch(info.repo_id, info.filename, cache_dir=cache_dir, sha256=info.sha256, size=info.size)
    return Located(path, None, info.model, info.version)


def _in_folder(path: Path, model: str, version: str) -> Located:
    names = sorted(p.name for p in path.iterdir() if p.is_file())
    official = [n for n in names if n in KNOWN_CHECKPOINT_FILES]
    try:
        wanted = official_checkpoint(model, version).filename
    except ValueError:
        wanted = None
    if wanted in official:
        return _official(path / wanted)
    if len(official) == 1:
        return _official(path / official[0])
    if all(n in names for n in _TRANSFORMERS_FILES):
        return Located(path / "model.safetensors", path / "config.json")
    weights = [n for n in names if n.endswith(_WEIGHT_SUFFIXES)]
    if len(weights) == 1 and not official:
        return _official(path / weights[0])
    listing = ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "") or "nothing"
    raise CheckpointNotFoundError(
        f"checkpoint folder {str(path)!r} holds no checkpoint sam2_ros can pick: it looks for Meta's file of "
        f"model={model!r} ({wanted or 'none'}), a transformers model (config.json + model.safetensors) or a "
        f"single .pt / .safetensors file; it holds {listing}. Pass the path of the file itself"
    )


# --------------------------------------------------------------------------------------------
# Reading a checkpoint file
# --------------------------------------------------------------------------------------------


def _sniff(head: bytes) -> str:
    """What a file's first bytes say it is."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's format since 1.6
    if head[:1] == b"\x80":
        return "pickle"  # torch.save's legacy format (pickle protocol >= 2)
    if head.startswith(b"version https://git-lfs"):
        return "lfs"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<")):
        return "html"
    if stripped.startswith((b"{", b"[")):
        return "json"
    return "unknown"


def _size_hint(path: Path, size: int) -> str:
    info = KNOWN_CHECKPOINT_FILES.get(path.name)
    if info is not None and size != info.size:
        return f" The official {info.filename} has {info.size} bytes, this file {size}."
    return ""


def load_checkpoint_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a state dict (tensors on the CPU), never executing code.

    A ``.pt`` file is read with ``torch.load(path, map_location="cpu", weights_only=True)``:
    only tensors, numbers, strings and containers are unpickled, and a file that references any
    other Python object (a class, a function such as ``os.system``) is refused. Meta's format
    ``{"model": state_dict, ...}`` and a bare state dict are accepted. A safetensors file (found
    by its content, whatever its name) holds tensors only and is read with safetensors. The keys
    are returned as stored (transformers' names stay transformers'; see :func:`load_checkpoint`).

    Raises:
        CheckpointNotFoundError: no such file.
        CheckpointError: the file is empty, truncated, corrupt, not a checkpoint (HTML page, Git
            LFS pointer, ...), would need arbitrary unpickling, or does not hold a state dict; the
            message says which and what to do.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint file not found: {str(path)!r}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder, not a .pt or .safetensors file")
    size = path.stat().st_size
    redownload = "delete it and download it again"
    if size == 0:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is empty (0 bytes): an interrupted download or copy; {redownload}"
        )
    with open(path, "rb") as stream:
        head = stream.read(64)
    kind = _sniff(head)
    where = f"checkpoint {str(path)!r}"
    if kind == "lfs":
        raise CheckpointError(
            f"{where} is a Git LFS pointer ({size} bytes), not the weights: run `git lfs pull` in "
            f"its repository, or download the .pt file itself"
        )
    if kind == "safetensors":
        return _read_safetensors(path, where, redownload)
    if kind in ("html", "json"):
        raise CheckpointError(
            f"{where} is a text/{kind.upper()} file ({size} bytes), not a PyTorch checkpoint: "
            f"probably an error or login page saved instead of the weights; {redownload}"
        )
    if kind == "unknown":
        raise CheckpointError(
            f"{where} is not a PyTorch checkpoint (it starts with {head[:8]!r}; corrupt, or "
            f"another format).{_size_hint(path, size)} Use Meta's .pt file, e.g. sam2.1_hiera_tiny.pt"
        )

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        found = re.search(r"GLOBAL\s+([\w.]+)", text)
        if found or re.search(r"unsupported global", text, re.IGNORECASE):
            what = found.group(1) if found else "a Python object"
            raise CheckpointError(
                f"refusing to load {where}: it needs arbitrary Python objects unpickled "
                f"({what}), and unpickling can run code. sam2_ros loads only plain tensors "
                f"(torch.load weights_only=True). Use Meta's official file, or, if you trust this "
                f"one, re-save its state dict: torch.save({{'model': state_dict}}, 'clean.pt')"
            ) from error
        refused = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        if refused:
            raise CheckpointError(
                f"refusing to load {where}: the safe loader (torch.load weights_only=True, which never "
                f"runs code from a file) does not accept it ({_first_line(refused.group(1))}); full "
                f"unpickling can run code, so sam2_ros does not fall back to it. torch.save writes files "
                f"the safe loader reads: use Meta's official file, or, if you trust this one, re-save its "
                f"state dict: torch.save({{'model': state_dict}}, 'clean.pt')"
            ) from error
        raise CheckpointError(
            f"{where} is corrupt ({_first_line(text)}).{_size_hint(path, size)} {redownload.capitalize()}"
        ) from error
    except (EOFError, RuntimeError, ValueError, OSError, struct.error) as error:
        text = str(error)
        truncated = isinstance(error, EOFError) or re.search(
            r"central directory|unexpected EOF|truncated|end of file|expected \d+ more bytes",
            text,
            re.IGNORECASE,
        )
        if truncated:
            raise CheckpointError(
                f"{where} is truncated ({size} bytes; the end of the file is missing)."
                f"{_size_hint(path, size)} An interrupted download or copy: {redownload}"
            ) from error
        raise CheckpointError(
            f"{where} is corrupt and cannot be read ({type(error).__name__}: {_first_line(text)})."
            f"{_size_hint(path, size)} {redownload.capitalize()}"
        ) from error
    return extract_state_dict(obj, source=where)


def _read_safetensors(path: Path, where: str, redownload: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001 - safetensors' Rust errors have no common Python base
        raise CheckpointError(
            f"{where} is a safetensors file that cannot be read ({type(error).__name__}: "
            f"{_first_line(str(error))}): truncated or corrupt; {redownload}"
        ) from None
    return extract_state_dict(state, source=where)


# --------------------------------------------------------------------------------------------
# Loading: the state dict in Meta's names, and what model it is
# --------------------------------------------------------------------------------------------


@dataclass
class LoadedCheckpoint:
    """A checkpoint read for building a model.

    Attributes:
        state: the state dict, in Meta's (this package's) key names.
        model: the model size to build: what the checkpoint declares, else the one asked for.
        version: "2.1" / "2.0" when declared, None to detect from the keys.
        path: the weights file read.
        from_transformers: saved by transformers (its keys were mapped to Meta's).
    """

    state: Dict[str, torch.Tensor]
    model: str
    version: Optional[str]
    path: Path
    from_transformers: bool = False

    @property
    def image_only(self) -> bool:
        """A transformers ``Sam2Model`` checkpoint: no memory weights, for the image predictors only."""
        return self.from_transformers and not any(k.startswith("memory_attention.") for k in self.state)


def load_checkpoint(
    checkpoint: Optional[PathLike], model: str = "tiny", cache_dir: Optional[PathLike] = None, *,
    version: str = "2.1",
) -> LoadedCheckpoint:
    """Locate (see :func:`locate_checkpoint`, same arguments) and read a checkpoint, mapping a
    transformers checkpoint's keys to Meta's (:func:`.transformers_format.to_ours`).

    The model size is the checkpoint's own where it declares one (Hub id, official file name,
    ``config.json``, or for transformers weights without a config their keys), else ``model``.

    Raises:
        CheckpointError: (and its subclasses) the checkpoint cannot be found, fetched or read, or
            a transformers checkpoint does not map to SAM 2.
    """
    located = locate_checkpoint(checkpoint, model, cache_dir, version=version)
    state = load_checkpoint_file(located.weights)
    declared, declared_version = located.model, located.version
    transformers = is_transformers_layout(state)
    if transformers:
        config = read_config(located.config) if located.config is not None else None
        state = to_ours(state, source=f"checkpoint {str(located.weights)!r}")
        if config is not None:
            declared, declared_version = config.model, config.version
        else:
            declared = detect_checkpoint_variant(state)[0]
    if declared is None:
        declared = normalize_model_name(model)
    elif declared != _normalized_or_none(model):
        log.info("checkpoint %s is SAM 2 %s: building that (model=%r does not apply)", located.weights.name,
                 declared, model)
    return LoadedCheckpoint(state, declared, declared_version, located.weights, transformers)


def _normalized_or_none(model: str) -> Optional[str]:
    try:
        return normalize_model_name(model)
    except ValueError:
        return None
