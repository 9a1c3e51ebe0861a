"""The one exception family the CLI turns into a one-line message (no traceback)."""

from __future__ import annotations


class StreammoodError(Exception):
    """Base of every error a user can cause (bad file, unknown device, wrong model, Redis down).

    The message must be one line, name the thing at fault and say why; it must never contain
    secrets such as Redis passwords.
    """
