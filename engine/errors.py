"""Errors that reach the user.

A :class:`UserError` is bad input or a request that cannot be met (a corrupt file, an unknown
model, no labeled pixels). Its message is one line naming the file (where there is one) and the
reason; the command line prints it and exits with status 2, the window shows it in a dialog.
Anything else that escapes is a fault in Maskloop (exit status 1).
"""

from __future__ import annotations

import os


class UserError(Exception):
    """Bad input or an impossible request, explained in one line."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.reason = message
        text = f"{self.path}: {message}" if self.path else message
        super().__init__(text)


class ProjectLockedError(UserError):
    """Another process has the project open for writing."""


class NewerProjectError(UserError):
    """The project was written by a newer Maskloop; we refuse to touch it."""


class WeightsUnavailableError(UserError):
    """Pretrained weights cannot be had (offline, no cache); train from scratch or pick a file."""
