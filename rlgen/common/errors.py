"""User-facing errors.

A :class:`UserError` is raised for anything the user can fix (a bad flag, a missing file, an unknown env).
The CLI catches it and prints its message as one line, with exit code 2 and no traceback; library callers
get an ordinary exception they can catch.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message names the problem and how to fix it."""

    exit_code = 2
