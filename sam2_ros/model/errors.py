"""The errors of finding, fetching and loading a checkpoint: each message says what to do."""

from __future__ import annotations

from typing import Sequence, Tuple

__all__ = ["CheckpointError", "CheckpointNotFoundError", "CheckpointDownloadError", "CheckpointMismatchError"]


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, downloaded, read or loaded; the message says what to do."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path given does not exist (also a :class:`FileNotFoundError`)."""


class CheckpointDownloadError(CheckpointError):
    """Fetching a checkpoint from the Hugging Face Hub failed (offline with nothing cached, network
    error, no access, no such repository or file, or a file whose SHA-256 is not the official one).

    The message is the whole story (what was asked for, why it failed, how to get it), so that
    a log line ``cannot configure: CheckpointDownloadError: <message>`` needs nothing else.
    """


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
