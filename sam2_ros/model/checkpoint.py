"""SAM 2 checkpoints: the official files, a cached download, safe loading, strict key matching.

Four jobs, each usable on its own:

* :data:`OFFICIAL_CHECKPOINTS` / :data:`SAM2_0_CHECKPOINTS`: where Meta publishes each model's
  weights, with the file's size and SHA-256.
* :func:`resolve_checkpoint`: turn the user's ``checkpoint`` argument into a local file. A path
  must exist; ``None`` (or ``""``, the ROS parameter's "unset") downloads the official SAM 2.1
  file of the model size once into a user cache and reuses it afterwards.
* :func:`load_checkpoint_file`: read a ``.pt`` file with ``torch.load(weights_only=True)``, so a
  file that would need arbitrary unpickling (and could run code) is refused, and say precisely
  why a file cannot be read (empty, truncated, HTML page, Git LFS pointer, ...).
* :func:`load_state_dict_strict`: load with every key used and none missing, and when the
  checkpoint does not fit, name the cause (SAM 1 file, other model size, SAM 2.0 vs 2.1) and the
  fix before listing the offending keys. :func:`detect_checkpoint_variant` tells a model builder
  which size and version a state dict is.

Only the standard library and torch are used (no requests, hydra or rclpy): the network goes
through :func:`_open_url` (``urllib``), the single place tests replace or point at a local server.

Facts this module relies on (checked against Meta's ``sam2`` 1.1.0 package, models built at
image_size 256 and 1024):

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

import hashlib
import http.client
import os
import pickle
import re
import struct
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple, Union

import torch

from .config import normalize_model_name

__all__ = [
    "CACHE_ENV",
    "BASE_URL_ENV",
    "SAM2_1_BASE_URL",
    "SAM2_0_BASE_URL",
    "CheckpointInfo",
    "OFFICIAL_CHECKPOINTS",
    "SAM2_0_CHECKPOINTS",
    "KNOWN_CHECKPOINT_FILES",
    "EDGETAM_CHECKPOINT",
    "EDGETAM_HUB_REPO",
    "EDGETAM_HUB_FILE",
    "HIERA_BLOCKS",
    "HIERA_EMBED_DIM",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointDownloadError",
    "CheckpointMismatchError",
    "default_cache_dir",
    "official_checkpoint",
    "checkpoint_url",
    "resolve_checkpoint",
    "download_file",
    "load_checkpoint_file",
    "extract_state_dict",
    "detect_checkpoint_variant",
    "diagnose_state_dict_mismatch",
    "load_state_dict_strict",
]

PathLike = Union[str, "os.PathLike[str]"]

CACHE_ENV = "SAM2_ROS_CACHE"
"""Environment variable naming the checkpoint cache folder (default ``$XDG_CACHE_HOME/sam2_ros``)."""

BASE_URL_ENV = "SAM2_ROS_CHECKPOINT_BASE_URL"
"""Environment variable replacing Meta's download folder URL (a mirror); size and SHA-256
are still checked, so a mirror cannot substitute other weights."""

SAM2_1_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
SAM2_0_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"


# --------------------------------------------------------------------------------------------
# The official files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file Meta publishes.

    Attributes:
        model: tiny, small, base_plus or large.
        version: "2.1" or "2.0".
        filename: the file's published name, e.g. ``sam2.1_hiera_tiny.pt``.
        url: where Meta serves it.
        size: its length in bytes, or None where unknown.
        sha256: its SHA-256 (lowercase hex), or None where unknown.
    """

    model: str
    version: str
    filename: str
    url: str
    size: Optional[int]
    sha256: Optional[str]


# Meta publishes no checksums. The sizes and SHA-256 digests below are those pinned, identically,
# by several independent public projects that download these exact URLs (for example micro-sam's
# SAM 2 loader pins all eight digests for pooch; download scripts of other projects pin the byte
# counts); the Hugging Face copies (facebook/sam2.1-hiera-*) are reported to be byte-identical.
# The byte counts agree with the parameter counts: 4 bytes per float32 parameter plus ~0.1% of
# pickle overhead (e.g. tiny 2.1: 38,962,754 parameters -> 155.85 MB of 156.01 MB).
_FILES: Tuple[Tuple[str, str, str, int, str], ...] = (
    ("2.1", "tiny", "sam2.1_hiera_tiny.pt", 156008466,
     "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    ("2.1", "small", "sam2.1_hiera_small.pt", 184416285,
     "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    ("2.1", "base_plus", "sam2.1_hiera_base_plus.pt", 323606802,
     "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    ("2.1", "large", "sam2.1_hiera_large.pt", 898083611,
     "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    ("2.0", "tiny", "sam2_hiera_tiny.pt", 155906050,
     "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125"),
    ("2.0", "small", "sam2_hiera_small.pt", 184309650,
     "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"),
    ("2.0", "base_plus", "sam2_hiera_base_plus.pt", 323493298,
     "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"),
    ("2.0", "large", "sam2_hiera_large.pt", 897952466,
     "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"),
)


def _info(version: str, model: str, filename: str, size: int, sha256: str) -> CheckpointInfo:
    base = SAM2_1_BASE_URL if version == "2.1" else SAM2_0_BASE_URL
    return CheckpointInfo(model, version, filename, base + filename, size, sha256)


OFFICIAL_CHECKPOINTS: Dict[str, CheckpointInfo] = {
    f[1]: _info(*f) for f in _FILES if f[0] == "2.1"
}
"""The SAM 2.1 checkpoints (what ``checkpoint=None`` downloads), by model size."""

SAM2_0_CHECKPOINTS: Dict[str, CheckpointInfo] = {
    f[1]: _info(*f) for f in _FILES if f[0] == "2.0"
}
"""The SAM 2.0 checkpoints (July 2024), by model size: pass them as paths."""

KNOWN_CHECKPOINT_FILES: Dict[str, CheckpointInfo] = {
    info.filename: info for info in (*OFFICIAL_CHECKPOINTS.values(), *SAM2_0_CHECKPOINTS.values())
}
"""Every official SAM 2 / 2.1 checkpoint, by file name."""

# --- EdgeTAM (issue 20) ------------------------------------------------------------------------
# Hugging Face Hub repo facebook/EdgeTAM, file edgetam.pt (Apache-2.0). Size and SHA-256 are the
# Hub's LFS facts of that file (its page: huggingface.co/facebook/EdgeTAM/blob/main/edgetam.pt,
# revisions f3a09791b2343c0733d456d08d73771d9363b69a / 14b1b75185fee05a4e4ee1c797b2761d035c7ccf),
# read from the independent public projects that pin them (BoxMOT's EdgeTAM loader and several
# EdgeTAM export/benchmark repositories agree on digest and size); the page itself could not be
# fetched from where this was written. The same file is checkpoints/edgetam.pt in
# facebookresearch/EdgeTAM at commit 7711e012a30a2402c4eaab637bdb00a521302c91.
EDGETAM_HUB_REPO = "facebook/EdgeTAM"
EDGETAM_HUB_FILE = "edgetam.pt"
EDGETAM_CHECKPOINT = CheckpointInfo(
    "edgetam", "edgetam", EDGETAM_HUB_FILE,
    f"https://huggingface.co/{EDGETAM_HUB_REPO}/resolve/main/{EDGETAM_HUB_FILE}", 56116523,
    "ed2d4850b8792c239689b043c47046ec239b6e808a3d9b6ae676c803fd8780df",
)
# --- end EdgeTAM ------------------------------------------------------------------------------

HIERA_BLOCKS: Dict[str, int] = {"tiny": 12, "small": 16, "base_plus": 24, "large": 48}
"""Number of Hiera trunk blocks per model size."""

HIERA_EMBED_DIM: Dict[str, int] = {"tiny": 96, "small": 96, "base_plus": 112, "large": 144}
"""Width of the Hiera patch embedding (first stage) per model size."""

_SAM1_EMBED_DIM = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_SAM2_1_ONLY_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, downloaded, read or loaded; the message says what to do."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path given does not exist (also a :class:`FileNotFoundError`)."""


class CheckpointDownloadError(CheckpointError):
    """Downloading an official checkpoint failed (offline, server error, size or hash mismatch)."""

    def __init__(self, message: str, reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys or shapes do not match the model.

    Attributes:
        missing: model keys the checkpoint lacks.
        unexpected: checkpoint keys the model does not have.
        mismatched: (key, model shape, checkpoint shape) for keys of different shapes.
    """

    def __init__(
        self,
        message: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = (),
    ) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


# --------------------------------------------------------------------------------------------
# Resolving the user's `checkpoint` argument
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The checkpoint cache: ``$SAM2_ROS_CACHE``, else ``$XDG_CACHE_HOME/sam2_ros``, else
    ``~/.cache/sam2_ros`` (the folder need not exist yet)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(os.path.expanduser(explicit))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(os.path.expanduser(xdg)) if xdg else Path.home() / ".cache"
    return base / "sam2_ros"


def official_checkpoint(model: str, version: str = "2.1") -> CheckpointInfo:
    """The official checkpoint of a model size (aliases such as ``t`` or ``b+`` accepted)."""
    name = normalize_model_name(model)
    if name == EDGETAM_CHECKPOINT.model:  # EdgeTAM (issue 20): one file, no versions
        return EDGETAM_CHECKPOINT
    if version == "2.1":
        return OFFICIAL_CHECKPOINTS[name]
    if version == "2.0":
        return SAM2_0_CHECKPOINTS[name]
    raise ValueError(f"unknown SAM 2 version {version!r}; choose 2.1 or 2.0")


def checkpoint_url(info: CheckpointInfo) -> str:
    """Where to download ``info`` from: Meta's URL, or ``$SAM2_ROS_CHECKPOINT_BASE_URL/<file>``."""
    base = os.environ.get(BASE_URL_ENV, "").strip()
    if base:
        return base.rstrip("/") + "/" + info.filename
    return info.url


def _manual_hint(filename: str) -> str:
    return (
        f"pass checkpoint:=/path/to/{filename} (ROS) or checkpoint='/path/to/{filename}' (Python)"
    )


def resolve_checkpoint(
    checkpoint: Optional[PathLike],
    model: str,
    cache_dir: Optional[PathLike] = None,
    *,
    version: str = "2.1",
    progress: bool = True,
) -> Path:
    """Turn the user's ``checkpoint`` argument into a local checkpoint file.

    Args:
        checkpoint: a path to a ``.pt`` file (``~`` and ``$VARS`` are expanded), which must
            exist; or None / ``""`` to use the official checkpoint of ``model``, downloaded once
            into the cache and reused on later calls without touching the network.
        model: tiny, small, base_plus or large (aliases t, s, b+, l): which file to download.
        cache_dir: the cache folder; default :func:`default_cache_dir`.
        version: "2.1" (default) or "2.0": which release to download.
        progress: print a progress line on stderr while downloading.

    Returns:
        The checkpoint file's path.

    Raises:
        CheckpointNotFoundError: the path given does not exist or is a folder.
        CheckpointDownloadError: the download failed; the message says how to get the file by hand.
        ValueError: unknown model or version.
    """
    if checkpoint is not None and str(checkpoint).strip():
        path = Path(os.path.expandvars(os.path.expanduser(str(checkpoint).strip())))
        if path.is_dir():
            found = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth"))
            listing = f" (it holds: {', '.join(found[:8])})" if found else " (it holds no .pt file)"
            raise CheckpointNotFoundError(
                f"checkpoint {str(path)!r} is a folder{listing}; pass the path of the .pt file itself"
            )
        if not path.is_file():
            hint = ""
            if path.name in KNOWN_CHECKPOINT_FILES:
                info = KNOWN_CHECKPOINT_FILES[path.name]
                hint = f" It is Meta's official file, downloadable from {info.url}."
            raise CheckpointNotFoundError(
                f"checkpoint file not found: {str(path)!r}.{hint} Check the path, or leave "
                f"checkpoint empty (None) to download the official SAM 2.1 {model!r} checkpoint "
                f"into {default_cache_dir() if cache_dir is None else cache_dir}."
            )
        return path

    info = official_checkpoint(model, version)
    cache = Path(os.path.expanduser(str(cache_dir))) if cache_dir is not None else default_cache_dir()
    dest = cache / info.filename
    if dest.is_file():
        actual = dest.stat().st_size
        if info.size is None or actual == info.size:
            return dest
        _say(
            f"sam2_ros: cached {dest} has {actual} bytes, expected {info.size}: downloading it again",
            sys.stderr,
        )
        dest.unlink()

    url = checkpoint_url(info)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointDownloadError(
            f"cannot create the checkpoint cache {str(cache)!r} ({error.strerror or error}). "
            f"Set {CACHE_ENV} to a writable folder, or {_manual_hint(info.filename)}",
            reason=str(error),
        ) from error
    try:
        download_file(url, dest, expected_size=info.size, sha256=info.sha256, progress=progress)
    except CheckpointDownloadError as error:
        part = dest.with_name(dest.name + ".part")
        kept = (
            f" The partial download {str(part)!r} is kept and resumes on the next try."
            if part.is_file() and part.stat().st_size > 0
            else ""
        )
        raise CheckpointDownloadError(
            f"could not download {info.filename} from {url} ({error.reason}). Download it on a "
            f"machine with internet access and {_manual_hint(info.filename)}; or copy it to "
            f"{str(dest)!r}.{kept}",
            reason=error.reason,
        ) from error
    return dest


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------

_CHUNK = 1 << 20
_RETRY_DELAY_S = 1.0  # doubled after each failed attempt; tests set it to 0


def _open_url(url: str, headers: Mapping[str, str], timeout: float) -> Any:
    """Open ``url`` with ``headers``; the single network call of this module.

    Returns a response with ``.status``, ``.headers`` and ``.read(n)`` usable as a context
    manager (``http.client.HTTPResponse``). Raises ``urllib.error.HTTPError`` for HTTP error
    statuses and ``urllib.error.URLError`` / ``OSError`` when the server cannot be reached.
    """
    request = urllib.request.Request(url, headers=dict(headers))
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs only)


class _Retry(Exception):
    """A transient failure: try again (resuming where a partial file exists)."""


class _Fatal(Exception):
    """A failure retrying cannot fix."""


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _say(line: str, stream: Optional[TextIO]) -> None:
    if stream is not None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


class _Progress:
    """A progress line on stderr: rewritten in place on a terminal, every 10 % otherwise."""

    def __init__(self, name: str, total: Optional[int], enabled: bool) -> None:
        self.name = name
        self.total = total
        self.stream: Optional[TextIO] = sys.stderr if enabled else None
        self.tty = bool(self.stream is not None and getattr(self.stream, "isatty", lambda: False)())
        self.start_time = time.monotonic()
        self.start_bytes: Optional[int] = None
        self.last_time = 0.0
        self.last_decile = -1

    def _line(self, done: int) -> str:
        mib = done / 2**20
        elapsed = max(time.monotonic() - self.start_time, 1e-6)
        rate = (done - (self.start_bytes or 0)) / 2**20 / elapsed
        if self.total:
            return (
                f"sam2_ros: downloading {self.name}: {mib:7.1f} / {self.total / 2**20:.1f} MiB "
                f"({100 * done / self.total:3.0f}%) {rate:5.1f} MiB/s"
            )
        return f"sam2_ros: downloading {self.name}: {mib:7.1f} MiB {rate:5.1f} MiB/s"

    def update(self, done: int, final: bool = False) -> None:
        if self.stream is None:
            return
        if self.start_bytes is None:
            self.start_bytes = done
        now = time.monotonic()
        try:
            if self.tty:
                if final or now - self.last_time >= 0.25:
                    self.last_time = now
                    self.stream.write("\r" + self._line(done) + ("\n" if final else ""))
                    self.stream.flush()
            else:
                decile = int(10 * done / self.total) if self.total else -1
                if final or decile > self.last_decile or now - self.last_time >= 30:
                    self.last_decile, self.last_time = decile, now
                    self.stream.write(self._line(done) + "\n")
                    self.stream.flush()
        except (OSError, ValueError):
            self.stream = None


def _parse_content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL); TOTAL None when ``*``."""
    match = re.match(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", value or "")
    if not match:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _content_length(headers: Any) -> Optional[int]:
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _download_once(
    url: str, part: Path, name: str, expected_size: Optional[int], timeout: float, progress: bool
) -> None:
    """One HTTP request appending to (or restarting) ``part``; returns when it holds the file.

    Raises _Retry for failures worth retrying (the connection dropped mid-file; a resume the
    server refused) and _Fatal for the others (unreachable server, HTTP error, wrong size).
    """
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()  # longer than the real file: not a prefix of it
        offset = 0
    if expected_size is not None and offset == expected_size:
        return  # a previous attempt got every byte; the caller verifies them

    headers = {"User-Agent": "sam2_ros (python-urllib)", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = _open_url(url, headers, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Range Not Satisfiable: the partial file is complete or not a prefix; the caller
            # verifies a complete one, anything else starts over.
            error.close()
            if expected_size is None:
                return
            part.unlink()
            raise _Retry("the server refused to resume (HTTP 416); starting over") from error
        raise _Fatal(_describe(error)) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        raise _Fatal(_describe(error)) from error

    with response:
        status = getattr(response, "status", None) or response.getcode()
        if offset and status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Retry(f"the server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        elif status == 200:
            if offset:
                _say(
                    f"sam2_ros: the server does not resume downloads; restarting {name} from zero",
                    sys.stderr if progress else None,
                )
            offset, mode = 0, "wb"
            total = _content_length(response.headers)
        else:
            raise _Fatal(f"unexpected HTTP status {status}")

        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise _Fatal(
                f"the server announced {total} bytes but {name} has {expected_size}: "
                f"this is not the official file (a proxy or error page?)"
            )
        total = total if total is not None else expected_size

        bar = _Progress(name, total, progress)
        done = offset
        with open(part, mode) as out:
            bar.update(done)
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    out.flush()
                    raise _Retry(f"connection lost after {done} bytes ({_describe(error)})") from error
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if total is not None and done > total:
                    out.close()
                    part.unlink()
                    raise _Fatal(f"the server sent more than the announced {total} bytes")
                bar.update(done)
            out.flush()
            os.fsync(out.fileno())
        bar.update(done, final=True)
    if total is not None and done < total:
        raise _Retry(f"connection closed after {done} of {total} bytes")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _FileLock:
    """An exclusive advisory lock (``flock``) so that two processes do not download at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> "_FileLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        self.handle = open(self.path, "a+b")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()


def _download_locked(
    url: str, dest: Path, expected_size: Optional[int], sha256: Optional[str], progress: bool,
    timeout: float, attempts: int,
) -> None:
    """The body of :func:`download_file`, run while holding the lock of ``dest``."""
    part = dest.with_name(dest.name + ".part")
    if dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        return  # another process finished it while we waited
    reason = "no attempt made"
    delay = _RETRY_DELAY_S
    for attempt in range(max(1, attempts)):
        try:
            _download_once(url, part, dest.name, expected_size, timeout, progress)
            break
        except _Fatal as error:
            raise CheckpointDownloadError(str(error), reason=str(error)) from error
        except _Retry as error:
            reason = str(error)
            if attempt + 1 < attempts:
                _say(f"sam2_ros: {reason}; retrying", sys.stderr if progress else None)
                time.sleep(delay)
                delay *= 2
    else:
        raise CheckpointDownloadError(f"{reason} (gave up after {attempts} attempts)",
                                      reason=f"{reason}, after {attempts} attempts")

    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise CheckpointDownloadError(
            f"size mismatch: got {size} bytes, expected {expected_size}; the file was deleted",
        )
    if sha256 is not None:
        actual = _sha256_of(part)
        if actual.lower() != sha256.lower():
            part.unlink()
            raise CheckpointDownloadError(
                f"SHA-256 mismatch: got {actual}, expected {sha256.lower()}; the file was "
                f"deleted (corrupted in transit, or not the official file)",
            )
    os.replace(part, dest)


def download_file(
    url: str,
    dest: PathLike,
    *,
    expected_size: Optional[int] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 30.0,
    attempts: int = 4,
) -> Path:
    """Download ``url`` to ``dest`` safely and resumably.

    The bytes stream into ``dest + ".part"``; an existing ``.part`` is resumed with an HTTP
    ``Range`` request (a server answering 200 instead of 206 restarts from zero). Only a file
    of the expected size (``expected_size``, else the announced Content-Length) and, when
    ``sha256`` is given, of that digest is renamed atomically to ``dest``; a wrong one is
    deleted. A connection lost mid-file is retried, resuming, up to ``attempts`` times; an
    unreachable server fails at once. Concurrent calls for the same ``dest`` (other processes
    included) wait for each other.

    Returns:
        ``dest`` as a Path.

    Raises:
        CheckpointDownloadError: with ``.reason`` saying what failed.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _FileLock(dest.with_name(dest.name + ".lock")):
            _download_locked(url, dest, expected_size, sha256, progress, timeout, attempts)
    except OSError as error:  # network errors are mapped inside: these are local files
        reason = f"cannot write {str(dest.parent)!r}: {error.strerror or error}"
        raise CheckpointDownloadError(reason, reason=reason) from error
    return dest


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
    if info is not None and info.size is not None and size != info.size:
        return f" The official {info.filename} has {info.size} bytes, this file {size}."
    return ""


def load_checkpoint_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a state dict (tensors on the CPU), never executing code.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``: only
    tensors, numbers, strings and containers are unpickled, and a file that references any other
    Python object (a class, a function such as ``os.system``) is refused. Meta's format
    ``{"model": state_dict, ...}`` and a bare state dict are accepted.

    Raises:
        CheckpointNotFoundError: no such file.
        CheckpointError: the file is empty, truncated, corrupt, not a PyTorch checkpoint (HTML
            page, Git LFS pointer, safetensors, ...), would need arbitrary unpickling, or does
            not hold a state dict; the message says which and what to do.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint file not found: {str(path)!r}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder, not a .pt file")
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
        raise CheckpointError(
            f"{where} is a safetensors file (e.g. Hugging Face transformers' model.safetensors); "
            f"sam2_ros reads Meta's original .pt checkpoints such as sam2.1_hiera_tiny.pt"
        )
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
    if size not in OFFICIAL_CHECKPOINTS:
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
            "this looks like a Hugging Face transformers checkpoint (vision_encoder.*); sam2_ros "
            "reads Meta's original .pt files such as sam2.1_hiera_tiny.pt"
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
