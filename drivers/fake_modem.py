"""A fake 4G modem answering the AT commands ``drivers.modem`` sends, on a pseudo-terminal.

Tests (and demos) open the pty's slave path with the real pyserial client; this thread plays the
modem on the master side.  It echoes commands as a modem does by default, records what it
received, and can be made to answer garbage, stay silent, or be unplugged (the pty closed).
"""

from __future__ import annotations

import os

from foundation.pty_device import PtyDevice

__all__ = ["FakeModemDevice"]


class FakeModemDevice(PtyDevice):
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
        super().__init__("fake-modem")

    def unplug(self) -> None:
        """The modem is gone: its pty closes, so the client's next read or write fails."""
        self.stop()

    def handle(self, command: str) -> None:
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
