"""Errors that reach the user.

A :class:`UserError` is bad input or a request that cannot be met (a corrupt file, an unknown
model, no labeled pixels). Its message is one line naming the file (where there is one) and the
reason; the command line prints it and exits with status 2, the window shows it in a dialog.
Anything else that escapes is a fault in Maskloop (exit status 1).
"""

from __future__ import annotations

import os
import threading


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


class Cancelled(Exception):
    """The user stopped the work (the window's Cancel). Not a fault and not bad input: the
    operation that raises it has undone what it began, as it does for any failure (an import,
    a class renumbering: all or nothing), or says in its doc what stays (an export's files)."""


def raise_if_stopped(stop_event: threading.Event | None) -> None:
    """The cancel hook of long engine work: called between files, raises :class:`Cancelled`
    once ``stop_event`` (the same flag training and prediction take) is set."""
    if stop_event is not None and stop_event.is_set():
        raise Cancelled("stopped")
