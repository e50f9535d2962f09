"""A fake 4G modem answering the AT commands ``drivers.modem`` sends, on a pseudo-terminal.

Tests (and demos) open the pty's slave path with the real pyserial client; this thread plays the
modem on the master side.  It echoes commands as a modem does by default, records what it
received, and can be made to answer garbage, stay silent, or be unplugged (the pty closed).
"""

from __future__ import annotations

import os
import select
import threading

__all__ = ["FakeModemDevice"]


class FakeModemDevice:
    """Serves AT commands on a pty; ``port`` is the path a client opens."""

    def __init__(
        self,
        *,
        csq: int = 21,
        creg: int = 1,
        cereg: int | None = 1,  # None: a 2G/3G-only modem that refuses AT+CEREG?
        operator: str | None = "Viettel",
    ) -> None:
        self.csq = csq
        self.creg = creg
        self.cereg = cereg
        self.operator = operator
        # "answer"; "noise" (bytes, never OK: a wrong baud rate); "garbage" (OK after malformed
        # lines); "silent"
        self.mode = "answer"
        self.received: list[str] = []
        self._master, self._slave = os.openpty()
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="fake-modem", daemon=True)

    def start(self) -> FakeModemDevice:
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The modem is gone: its pty closes, so the client's next read or write fails."""
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if not self._closed:
            self._closed = True
            os.close(self._master)
            os.close(self._slave)

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
                    self._handle(raw.decode("ascii", "replace").strip())

    def _handle(self, command: str) -> None:
        self.received.append(command)
        if self.mode == "silent":
            return
        if self.mode == "noise":
            reply = b"\xfe\x12\x80\xff\r\n\x00\x13OK?\r\n"
        elif self.mode == "garbage":
            reply = b"\r\n+CSQ: 4\xff,\r\n+CREG: x\r\n+CEREG: 9,9\r\n+COPS: ,,\r\nOK\r\n"
        else:
            lines = [command, *self.answer(command)]  # echo first, as ATE1 (the default) does
            reply = "".join(f"{line}\r\n" for line in lines).encode("ascii")
        try:
            os.write(self._master, reply)
        except OSError:
            return

    def answer(self, command: str) -> list[str]:
        """The modem's reply lines to one command."""
        if command == "AT":
            return ["OK"]
        if command == "AT+CSQ":
            return [f"+CSQ: {self.csq},99", "OK"]
        if command == "AT+CREG?":
            return [f"+CREG: 0,{self.creg}", "OK"]
        if command == "AT+CEREG?":
            return ["ERROR"] if self.cereg is None else [f"+CEREG: 0,{self.cereg}", "OK"]
        if command == "AT+COPS?":
            return [f'+COPS: 0,0,"{self.operator}",7', "OK"] if self.operator else ["+COPS: 0", "OK"]
        return ["ERROR"]
