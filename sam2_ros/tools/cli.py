"""What the command-line tools share: their argparse help formatter."""
from __future__ import annotations

import argparse

__all__ = ['HelpFormatter']


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
