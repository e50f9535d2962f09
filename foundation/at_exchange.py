"""One AT command and its answer over a serial line, for the devices that speak AT (the 4G modem in
``drivers``, the FM tuner module in ``fm_receiver``).

The port is handed in: pyserial's ``Serial`` (each room's wrapper opens it; this module imports no
serial library) or anything with the same three methods.  An answer is information lines ending in a
final ``OK`` or an error line; blank lines and the device echoing the command are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Answer", "LineTooLong", "SerialLines", "exchange"]


class SerialLines(Protocol):
    def reset_input_buffer(self) -> None: ...

    def write(self, data: bytes, /) -> Any: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class LineTooLong(ValueError):
    """More than the allowed bytes without a line end: noise (a wrong baud rate reads as noise)."""


@dataclass(frozen=True)
class Answer:
    final: str | None  # "OK", the error line, or None when no final line came in time
    info: list[str]


def exchange(
    port: SerialLines,
    command: str,
    *,
    ending: str,
    timeout_s: float,
    is_error: Callable[[str], bool],
    max_line: int | None = None,
) -> Answer:
    """Send ``command`` + ``ending`` and read until a final line or ``timeout_s``; the port's own
    exceptions pass through.  ``max_line``: LineTooLong for a longer line (None: no limit)."""
    port.reset_input_buffer()  # drop a late answer to an earlier, timed-out attempt
    port.write(f"{command}{ending}".encode("ascii"))
    info: list[str] = []
    partial = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        partial += port.readline() if max_line is None else port.readline(max_line + 1)
        if max_line is not None and len(partial) > max_line:
            raise LineTooLong(f"a line of more than {max_line} bytes")
        if not partial.endswith(b"\n"):  # read timed out mid-line: keep what came
            continue
        text, partial = partial.decode("ascii", "replace").strip(), b""
        if not text or text == command:  # blank line, or the device echoing the command
            continue
        if text == "OK" or is_error(text):
            return Answer(text, info)
        info.append(text)
    return Answer(None, info)
