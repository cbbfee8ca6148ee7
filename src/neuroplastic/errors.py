"""Error classes shared by every layer (importing this module imports nothing heavy)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input — a config, a file, an argument — found before work starts; the message names it. The command
    line prints it as one line and exits with status 2 (any other exception is an internal error: exit 1, its
    traceback kept in a log file)."""
