"""Text prompts: what a user types ("person . red cup") -> the phrases a detector looks for.

Plain Python (no transformers, no rclpy): the node checks a ``~/text_prompt`` message with
:func:`parse_text_prompt` in its callback and refuses a malformed one at once.

Rules:

* phrases are separated by ``.`` (the format Grounding DINO was trained on: ``"person . red cup"``,
  ``"person. red cup."``); each is stripped, its inner whitespace collapsed and lower-cased (the
  detector's tokenizer is uncased and the phrase becomes the objects' class label, so "Cup" and
  "cup" must be one class); a phrase given twice counts once;
* an empty text (or only whitespace) means "stop detecting": :func:`parse_text_prompt` returns None;
* refused with :class:`TextPromptError`, saying what was wrong: an empty phrase (``"person . . cup"``,
  ``". cup"``), a text over :data:`MAX_TEXT_CHARS` characters, bytes that are not UTF-8, control
  characters (tab, newline and carriage return are taken as spaces);
* the normalised text (:attr:`TextQuery.text`) is the phrases joined by ``". "`` and ending with
  ``"."``: ``"person. red cup."``, as Grounding DINO expects it.

A detector may refuse a valid text that it cannot read whole (Grounding DINO reads at most 256
tokens): :meth:`sam2_ros.model.text_detector.TextDetector.check`.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Optional, Tuple, Union

MAX_TEXT_CHARS = 2000  # Grounding DINO reads 256 tokens (~1000 characters); a longer text is a mistake
_SPACES = {"\t", "\n", "\r"}


class TextPromptError(ValueError):
    """A text prompt that cannot be used; the message says what was wrong and what is accepted."""


@dataclass(frozen=True)
class TextQuery:
    """The phrases of one text prompt, normalised (see the module doc)."""

    phrases: Tuple[str, ...]

    @property
    def text(self) -> str:
        """The phrases as Grounding DINO reads them: ``"person. red cup."``."""
        return ". ".join(self.phrases) + "."

    def spans(self) -> Tuple[Tuple[int, int], ...]:
        """(start, end) character span of each phrase in :attr:`text`."""
        out, start = [], 0
        for phrase in self.phrases:
            out.append((start, start + len(phrase)))
            start += len(phrase) + 2  # ". "
        return tuple(out)


def parse_text_prompt(text: Union[str, bytes, bytearray]) -> Optional[TextQuery]:
    """Parse a text prompt (see the module doc). Returns None for an empty text ("stop
    detecting"), else the :class:`TextQuery`; raises :class:`TextPromptError` when malformed."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise TextPromptError(f"the text prompt is not valid UTF-8 (byte {error.start}: "
                                  f"{bytes(text)[error.start:error.start + 1]!r}); send UTF-8 text") from None
    if not isinstance(text, str):
        raise TextPromptError(f"a text prompt is a string of phrases separated by ' . ', got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise TextPromptError(f"the text prompt has {len(text)} characters, at most {MAX_TEXT_CHARS} are accepted "
                              "(a detector reads a few short phrases: 'person . red cup')")
    for i, ch in enumerate(text):
        if ch not in _SPACES and unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            raise TextPromptError(f"the text prompt has a control character (U+{ord(ch):04X}) at position {i}; "
                                  "send plain text: phrases separated by ' . '")
    if not text.strip():
        return None
    pieces = text.split(".")
    if not pieces[-1].strip():  # a final "." ends the last phrase
        pieces.pop()
    phrases = []
    for k, piece in enumerate(pieces):
        phrase = " ".join(piece.split()).lower()
        if not phrase:
            raise TextPromptError(f"phrase {k + 1} of the text prompt {text[:80]!r} is empty; separate phrases "
                                  "by ' . ', e.g. 'person . red cup'")
        if phrase not in phrases:
            phrases.append(phrase)
    return TextQuery(tuple(phrases))
