"""The one error type users see: a path and what is wrong with it, printed as a single line."""

from __future__ import annotations

from pathlib import Path


class MriganxError(Exception):
    """A problem with an input or output that the user can fix.

    The CLI prints ``error: <path>: <message>`` and exits with code 2, without a traceback.

    >>> str(MriganxError("scan", "file does not exist"))
    'scan: file does not exist'
    """

    def __init__(self, path: str | Path | None, message: str) -> None:
        self.path = None if path is None else Path(path)
        # One line, always: messages often quote library errors that span several.
        message = " ".join(str(message).split())
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)
