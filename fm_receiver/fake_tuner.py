"""A fake serial FM tuner module answering Loa's AT command set on a pseudo-terminal.

Tests (and the demo) open the pty's slave path with the real pyserial client; this thread plays
the module on the master side.  It records the commands it received and can be scripted to stay
silent for a number of commands (to exercise timeouts and retries).
"""

from __future__ import annotations

import os
import threading

from foundation.pty_device import PtyDevice

__all__ = ["FakeTunerDevice"]


class FakeTunerDevice(PtyDevice):
    """Serves AT commands on a pty; ``port`` is the path a client opens."""

    def __init__(self, *, rssi: int = 45, snr: int = 30, ignore_commands: int = 0) -> None:
        self.rssi = rssi
        self.snr = snr
        self._ignore_lock = threading.Lock()  # tests set ignore_commands while _serve counts it down
        self._ignore_commands = ignore_commands
        self.frequency_units = 10_000
        self.muted = False
        self.volume = 8
        self.deemphasis_us = 75
        super().__init__("fake-tuner")

    @property
    def ignore_commands(self) -> int:
        """How many of the next commands get no answer at all."""
        return self._ignore_commands

    @ignore_commands.setter
    def ignore_commands(self, count: int) -> None:
        with self._ignore_lock:
            self._ignore_commands = count

    def handle(self, command: str) -> None:
        self.received.append(command)
        with self._ignore_lock:
            ignore = self._ignore_commands > 0
            if ignore:
                self._ignore_commands -= 1
        if ignore:
            return
        reply = self.answer(command)
        os.write(self._master, "".join(f"{line}\r\n" for line in reply).encode("ascii"))

    def answer(self, command: str) -> list[str]:
        """The module's reply lines to one command."""
        queries = {
            "AT": [],
            "AT+VER?": ["+VER: fake-tuner 1.0"],
            "AT+FREQ?": [f"+FREQ: {self.frequency_units}"],
            "AT+RSSI?": [f"+RSSI: {self.rssi}"],
            "AT+SNR?": [f"+SNR: {self.snr}"],
        }
        if command in queries:
            return [*queries[command], "OK"]
        name, _, value = command.partition("=")
        setters = {
            "AT+FREQ": (8750, 10800, "frequency_units"),
            "AT+MUTE": (0, 1, "muted"),
            "AT+VOL": (0, 15, "volume"),
            "AT+DEEMPH": (50, 75, "deemphasis_us"),
        }
        if name not in setters or not value.isdigit():
            return ["ERROR"]
        low, high, attribute = setters[name]
        number = int(value)
        if not low <= number <= high or (name == "AT+DEEMPH" and number not in (50, 75)):
            return ["ERROR"]
        setattr(self, attribute, bool(number) if attribute == "muted" else number)
        return ["OK"]
