"""A line-speaking serial device played on a pseudo-terminal, for the fakes of the devices that speak
AT (``drivers.fake_modem``, ``fm_receiver.fake_tuner``).

Tests and demos open ``port`` (the pty's slave path) with the real pyserial client; a thread of the
fake plays the device on the master side and hands each non-blank line (ended by CR or LF) to
``handle``.
"""

from __future__ import annotations

import os
import select
import threading
from typing import Self

__all__ = ["PtyDevice"]


class PtyDevice:
    """Serves lines on a pty until :meth:`stop`; subclasses answer them in :meth:`handle`."""

    def __init__(self, thread_name: str) -> None:
        self.received: list[str] = []
        self._master, self._slave = os.openpty()
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty (the client's next read or write fails); once is enough."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if not self._closed:
            self._closed = True
            os.close(self._master)
            os.close(self._slave)

    def handle(self, command: str) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                pending += os.read(self._master, 1024)
            except OSError:
                return
            *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                if raw.strip():
                    self.handle(raw.decode("ascii", "replace").strip())
