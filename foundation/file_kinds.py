"""What a path is, in words, when it is not a regular file.

Readers of outside files (schedule and config files, audio files) look with ``stat`` before they
open anything: opening a FIFO for reading blocks until some writer comes, and a directory or a
device is never what a technician meant.  A leaf module: it imports nothing of ours.
"""

from __future__ import annotations

import stat

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(mode: int) -> str | None:
    """``"a FIFO"``, ``"a directory"``, ... for a ``st_mode`` that is not a regular file's, else None."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def shown_path(path: object, limit: int = 160) -> str:
    """A path for a message: whole if it is short, else its start and its end."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit - 40]}...{text[-30:]}"
