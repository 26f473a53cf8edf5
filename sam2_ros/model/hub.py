"""Files from the Hugging Face Hub, through ``huggingface_hub`` and its cache.

Everything users already set up for the Hub applies: the cache (``HF_HOME`` / ``HF_HUB_CACHE``,
shared with transformers and Meta's ``sam2``), its locks and resumable downloads, a mirror
(``HF_ENDPOINT``), offline mode (``HF_HUB_OFFLINE=1``) and tokens for private or gated
repositories (``HF_TOKEN`` or ``hf auth login``). This module adds two things:

* Meta's official files are checked against their SHA-256 (:mod:`.official`). A file already in
  the cache whose blob is named by that digest and has the official size is used without any
  network request; anything else is hashed after the download, and a file with another digest
  is deleted from the cache and refused.
* Every failure becomes one :class:`~.errors.CheckpointDownloadError` whose message names the
  repository, the file, why it failed and how to get it (``hf download`` on a connected machine,
  then copy the cache; or a mirror through ``HF_ENDPOINT``).

``huggingface_hub`` is imported on first use only, so that loading a local file never pays for it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional, Union

from ..version import __version__
from .errors import CheckpointDownloadError

__all__ = ["is_hub_id", "fetch", "hub_cache_dir"]

PathLike = Union[str, "os.PathLike[str]"]

# A Hub model id is "namespace/name": letters, digits, '-', '_' and '.', no '--' or '..' (the
# Hub's own rule); a string that names a weights file is a path, never an id.
_HUB_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".json", ".yaml", ".onnx", ".engine")
_CHUNK = 1 << 20


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the form of a Hub model id (``facebook/sam2.1-hiera-tiny``).

    A name ending like a file (``checkpoints/sam2.1_hiera_tiny.pt``) is a path, not an id.
    """
    text = text.strip()
    return (_HUB_ID.fullmatch(text) is not None and ".." not in text and "--" not in text
            and not text.lower().endswith(_FILE_SUFFIXES))


def hub_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """The Hub cache folder in use: ``cache_dir``, else huggingface_hub's (``$HF_HUB_CACHE``,
    default ``$HF_HOME/hub``, i.e. ``~/.cache/huggingface/hub``)."""
    if cache_dir is not None:
        return Path(os.path.expanduser(str(cache_dir)))
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def fetch(
    repo_id: str,
    filename: str,
    *,
    cache_dir: Optional[PathLike] = None,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    missing_hint: str = "",
    files_hint: Optional[str] = None,
) -> Path:
    """The local path of ``filename`` of Hub repository ``repo_id`` (revision ``main``),
    downloaded into the Hub cache unless it is there.

    Args:
        repo_id: a Hub model id, e.g. ``facebook/sam2.1-hiera-tiny``.
        filename: the file in the repository, e.g. ``sam2.1_hiera_tiny.pt``.
        cache_dir: the Hub cache to use; default huggingface_hub's.
        sha256, size: the official file's digest and length: a cached file with both is used
            without touching the network (as is any cached file in offline mode); a downloaded
            one must have that digest.
        missing_hint: what to say when the repository has no such file.
        files_hint: the files to name in ``hf download REPO FILES`` advice (default ``filename``).

    Raises:
        CheckpointDownloadError: offline or unreachable with nothing cached, no access, no such
            repository or file, a cache that cannot be written, or a digest that is not ``sha256``.
    """
    from huggingface_hub import constants  # cheap: the settings only

    cache = str(hub_cache_dir(cache_dir))
    if sha256 is not None or constants.is_offline_mode():
        cached = _cached(cache, repo_id, filename)
        if cached is not None and (sha256 is None or _named_by_digest(cached, sha256, size)):
            return Path(cached)
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, filename, cache_dir=cache, library_name="sam2_ros",
                               library_version=__version__)
    except Exception as error:  # noqa: BLE001 - huggingface_hub's errors, one message each
        message = _explain(error, repo_id, filename, cache, missing_hint, files_hint or filename)
        raise CheckpointDownloadError(message) from None
    if sha256 is not None:
        _check_digest(Path(path), repo_id, filename, sha256, size)
    return Path(path)


def _cached(cache: str, repo_id: str, filename: str) -> Optional[str]:
    """The file of ``main`` in the Hub cache, or None: what ``try_to_load_from_cache`` finds, read
    from the cache's documented layout (``models--{namespace}--{name}/refs/main`` holds the commit,
    ``snapshots/{commit}/{filename}`` the file) without importing huggingface_hub's download
    machinery (a third of a second, on every start of a node whose checkpoint is cached)."""
    folder = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    try:
        with open(os.path.join(folder, "refs", "main"), encoding="utf-8") as ref:
            commit = ref.read().strip()
    except OSError:
        return None
    path = os.path.join(folder, "snapshots", commit, filename)
    return path if commit and os.path.isfile(path) else None


def _named_by_digest(path: str, sha256: str, size: Optional[int]) -> bool:
    """The Hub cache stores a large file as ``blobs/<its SHA-256>``, the name the Hub gave it
    (``X-Linked-Etag``): a blob of that name and the official size is a file this module
    already verified, or one the Hub vouches for; checking it costs no hashing."""
    blob = os.path.realpath(path)
    try:
        return os.path.basename(blob) == sha256.lower() and (size is None or os.path.getsize(blob) == size)
    except OSError:
        return False


def _check_digest(path: Path, repo_id: str, filename: str, sha256: str, size: Optional[int]) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual == sha256.lower():
        return
    got = path.stat().st_size
    blob = Path(os.path.realpath(path))
    for stale in {blob, path}:  # the blob and the snapshot's link to it (or its copy)
        stale.unlink(missing_ok=True)
    sizes = f"{got} bytes, the official file has {size}" if size is not None and got != size else f"{got} bytes"
    raise CheckpointDownloadError(
        f"{filename} of {repo_id} from the Hugging Face Hub ({_endpoint()}) is not Meta's official file: "
        f"its SHA-256 is {actual} ({sizes}), the official one is {sha256.lower()}. It was deleted from the "
        f"Hub cache. The download was corrupted or a mirror/proxy served other bytes: try again; if it "
        f"persists, check HF_ENDPOINT, or fetch the file elsewhere and pass its path as the checkpoint"
    )


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _cause(error: BaseException) -> str:
    """The innermost reason of a chained error, in a few words (``ConnectError: ...``)."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


def _explain(error: Exception, repo_id: str, filename: str, cache: str, missing_hint: str, files: str) -> str:
    """One message for a failed ``hf_hub_download``: what, why, and how to get the file."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    what = f"cannot get {filename} of {repo_id} from the Hugging Face Hub ({constants.ENDPOINT})"
    folder = f"models--{repo_id.replace('/', '--')}"
    elsewhere = (
        f"On a machine with internet access run `hf download {repo_id} {files}` and copy its Hub "
        f"cache folder {folder} (in ~/.cache/huggingface/hub, or $HF_HOME/hub) into {cache}; or "
        f"download through a mirror of the Hub by setting HF_ENDPOINT (e.g. HF_ENDPOINT=https://your-mirror); "
        f"or pass the path of a local copy of the file as the checkpoint"
    )
    if isinstance(error, LocalEntryNotFoundError):
        if constants.is_offline_mode():
            why = "offline mode is on (HF_HUB_OFFLINE=1)"
        else:
            why = (f"the Hub cannot be reached ({_cause(error)}; on a machine without network set "
                   f"HF_HUB_OFFLINE=1 to use the cache without waiting for the Hub)")
        return f"{what}: {why} and the file is not in the Hub cache ({cache}). {elsewhere}."
    if isinstance(error, GatedRepoError):
        return (f"{what}: the repository is gated. Accept its conditions at https://huggingface.co/{repo_id} "
                f"and log in with `hf auth login` (or set HF_TOKEN to a token with read access)")
    if isinstance(error, RepositoryNotFoundError):
        status = error.response.status_code if error.response is not None else "?"
        return (f"{what}: the Hub answered (HTTP {status}) that there is no repository {repo_id}, or that it is "
                f"private and this machine has no token with access to it. Check the id; for a private "
                f"repository log in with `hf auth login` or set HF_TOKEN to a token with read access")
    if isinstance(error, RemoteEntryNotFoundError):
        return f"{what}: repository {repo_id} has no file {filename}" + (f". {missing_hint}" if missing_hint else "")
    if isinstance(error, RevisionNotFoundError):
        return f"{what}: repository {repo_id} has no branch 'main'"
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        return (f"{what}: the Hub answered HTTP {status} ({_cause(error)}). Try again later, "
                f"or: {elsewhere}")
    if isinstance(error, OSError):
        return (f"{what}: {_cause(error)}. If the Hub cache ({cache}) cannot be written, set HF_HOME or "
                f"HF_HUB_CACHE to a writable folder; if the connection broke, try again (the download resumes)")
    return f"{what}: {_cause(error)}"
