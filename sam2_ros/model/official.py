"""Meta's official checkpoints: one table of Hub repository, file name, size and SHA-256.

Every official file sam2_ros downloads is a row of :data:`_FILES`, and only there: a new model
(EdgeTAM, a SAM 2.2 ...) is one new row. ``checkpoint=None`` with ``model=M`` means the row of
``M`` (SAM 2.1 for the SAM 2 sizes), and a Hub id of a row means that row's file, as Meta's
``sam2`` package maps ``facebook/sam2.1-hiera-tiny`` to ``sam2.1_hiera_tiny.pt``.

Meta publishes no checksums. The digests are those pinned, identically, by several independent
projects that download these files (from Meta's ``dl.fbaipublicfiles.com`` folders and from the
Hub repositories below, at pinned revisions: the Hub copies are the same bytes). The byte counts
agree with the parameter counts: 4 bytes per float32 parameter plus ~0.1 % of pickle overhead
(tiny 2.1: 38,962,754 parameters -> 155.85 MB of 156.01 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .config import normalize_model_name

__all__ = ["CheckpointInfo", "OFFICIAL_CHECKPOINTS", "SAM2_0_CHECKPOINTS", "KNOWN_CHECKPOINT_FILES",
           "HUB_CHECKPOINTS", "official_checkpoint", "official_by_repo"]

HUB_URL = "https://huggingface.co"


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file Meta publishes.

    Attributes:
        model: the model name (tiny, small, base_plus, large, edgetam).
        version: the SAM release whose layout the file has ("2.1" or "2.0"; EdgeTAM is built on 2.1).
        filename: the file's published name, e.g. ``sam2.1_hiera_tiny.pt``.
        repo_id: the Hugging Face Hub repository holding it, e.g. ``facebook/sam2.1-hiera-tiny``.
        size: its length in bytes.
        sha256: its SHA-256 (lowercase hex), checked after every download.
    """

    model: str
    version: str
    filename: str
    repo_id: str
    size: int
    sha256: str

    @property
    def url(self) -> str:
        """The file's address on huggingface.co (for a browser or wget; downloads honour HF_ENDPOINT)."""
        return f"{HUB_URL}/{self.repo_id}/resolve/main/{self.filename}"


# (version, model, Hub repository, file, bytes, SHA-256)
_FILES: Tuple[Tuple[str, str, str, str, int, str], ...] = (
    ("2.1", "tiny", "facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt", 156008466,
     "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    ("2.1", "small", "facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt", 184416285,
     "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    ("2.1", "base_plus", "facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt", 323606802,
     "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    ("2.1", "large", "facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt", 898083611,
     "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
    ("2.0", "tiny", "facebook/sam2-hiera-tiny", "sam2_hiera_tiny.pt", 155906050,
     "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125"),
    ("2.0", "small", "facebook/sam2-hiera-small", "sam2_hiera_small.pt", 184309650,
     "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"),
    ("2.0", "base_plus", "facebook/sam2-hiera-base-plus", "sam2_hiera_base_plus.pt", 323493298,
     "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"),
    ("2.0", "large", "facebook/sam2-hiera-large", "sam2_hiera_large.pt", 897952466,
     "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"),
    # EdgeTAM (arXiv:2501.07256): the same bytes as checkpoints/edgetam.pt of
    # github.com/facebookresearch/EdgeTAM (v1.0), 56,116,523 bytes.
    ("2.1", "edgetam", "facebook/EdgeTAM", "edgetam.pt", 56116523,
     "ed2d4850b8792c239689b043c47046ec239b6e808a3d9b6ae676c803fd8780df"),
)

_ALL = tuple(CheckpointInfo(model, version, filename, repo, size, sha)
             for version, model, repo, filename, size, sha in _FILES)

OFFICIAL_CHECKPOINTS: Dict[str, CheckpointInfo] = {i.model: i for i in _ALL if i.version == "2.1"}
"""What ``checkpoint=None`` fetches, by model name: SAM 2.1 for the SAM 2 sizes, and EdgeTAM."""

SAM2_0_CHECKPOINTS: Dict[str, CheckpointInfo] = {i.model: i for i in _ALL if i.version == "2.0"}
"""The SAM 2.0 checkpoints (July 2024), by model size (``version="2.0"``, or their Hub ids)."""

KNOWN_CHECKPOINT_FILES: Dict[str, CheckpointInfo] = {i.filename: i for i in _ALL}
"""Every official file, by file name."""

HUB_CHECKPOINTS: Dict[str, CheckpointInfo] = {i.repo_id.lower(): i for i in _ALL}
"""Every official file, by Hub repository id (lowercase: the Hub's ids are case-insensitive)."""


def official_checkpoint(model: str, version: str = "2.1") -> CheckpointInfo:
    """The official checkpoint of a model (aliases such as ``t`` or ``b+`` accepted).

    Raises:
        ValueError: an unknown model or version, naming the choices.
    """
    try:
        name = normalize_model_name(model)
    except ValueError:
        name = str(model).strip().lower()
        if name not in OFFICIAL_CHECKPOINTS:
            raise
    if version not in ("2.1", "2.0"):
        raise ValueError(f"unknown SAM 2 version {version!r}; choose 2.1 or 2.0")
    table = OFFICIAL_CHECKPOINTS if version == "2.1" else SAM2_0_CHECKPOINTS
    if name not in table:
        raise ValueError(f"there is no official SAM {version} checkpoint of {name!r}; "
                         f"SAM {version} has {', '.join(table)}")
    return table[name]


def official_by_repo(repo_id: str) -> Optional[CheckpointInfo]:
    """The official file of a Hub repository id (``facebook/sam2.1-hiera-tiny``), or None."""
    return HUB_CHECKPOINTS.get(repo_id.strip().lower())
