"""Errors a user can act on.

A :class:`UserError` is printed as one line (``reviewlake <stage>: <message>``) with a
non-zero exit code and no traceback. Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_GATE_FAILED = 3


class UserError(Exception):
    """A problem the user can fix: bad path, bad argument, missing jar, malformed data."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
