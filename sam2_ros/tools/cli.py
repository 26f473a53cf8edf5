"""What the command-line tools share: their argparse help formatter and progress bar."""
from __future__ import annotations

import argparse
import math
import sys
import time

__all__ = ['HelpFormatter', 'Progress']


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once.

    argparse's own ArgumentDefaultsHelpFormatter appends "(default: X)" to every option, also
    where the help already says what the default is and where the default is None (printing
    "(default: download once) (default: None)"). This one appends it only when the help does not
    mention a default and there is one worth showing (not None, not a switch's False).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ''
        if 'default' in help_text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return help_text
        return super()._get_help_string(action)


class Progress:
    """A progress bar with rate and ETA on stderr (a line every 10 % when not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, stream=None, width: int = 28):
        self.total = max(int(total), 1)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.start = time.perf_counter()
        self._last = 0.0
        self._last_decile = -1

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(round(seconds))
        return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'

    def line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float('nan')
        filled = int(self.width * min(done, self.total) / self.total)
        bar = '#' * filled + '.' * (self.width - filled)
        eta_s = self._clock(eta) if math.isfinite(eta) else '?'
        return (f'[{bar}] {done}/{self.total} frames  {rate:.2f} frames/s  '
                f'elapsed {self._clock(elapsed)}  ETA {eta_s}')

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last >= 0.2 or done >= self.total:
                self.stream.write('\r' + self.line(done))
                self.stream.flush()
                self._last = now
        else:
            decile = 10 * done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self.line(done) + '\n')
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write('\n')
            self.stream.flush()
