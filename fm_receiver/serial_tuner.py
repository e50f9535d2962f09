"""Client for a serial FM tuner module speaking Loa's AT command set; the only module importing pyserial.

The module demodulates by itself; its analog output reaches the amplifier through an audio-source
relay the agent drives.  We tune it, read its RSSI / SNR for the carrier decision, and mute it.
Command set (docs/FM.md): lines end in CR LF; every command ends with a final ``OK`` or ``ERROR``
line, optionally preceded by ``+NAME: value`` information lines.

    AT                  ping                      → OK
    AT+VER?             firmware                  → +VER: text / OK
    AT+FREQ=<n>         tune, n in 10 kHz units   → OK (ERROR outside 8750..10800)
    AT+FREQ?            tuned frequency           → +FREQ: <n> / OK
    AT+RSSI?            level in dBµV (0..127)    → +RSSI: <n> / OK
    AT+SNR?             SNR in dB                 → +SNR: <n> / OK
    AT+MUTE=<0|1>       mute the analog output    → OK
    AT+VOL=<0..15>      output volume             → OK
    AT+DEEMPH=<50|75>   de-emphasis in µs         → OK
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from fm_receiver.source_health import SourceFault
from foundation import at_exchange

__all__ = ["FM_BAND_HZ", "SerialTuner", "TunerError", "TunerNotAnswering"]

logger = logging.getLogger(__name__)

FM_BAND_HZ = (87_500_000, 108_000_000)
_UNIT_HZ = 10_000


class TunerError(SourceFault):
    """The tuner module cannot be opened, did not answer, or refused a command."""


class TunerNotAnswering(TunerError):
    """No final ``OK`` / ``ERROR`` came for a command, even after the retries."""


_PORT_MISSING = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO})  # unplugged USB-serial adapter


class SerialTuner:
    """AT-command client with per-command timeout and retries (a timed-out command is re-sent)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        timeout_s: float = 0.5,
        retries: int = 2,
        serial_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._factory = serial_factory
        self._serial: Any = None

    def open(self) -> None:
        factory = self._factory
        if factory is None:
            import serial

            factory = serial.Serial
        try:
            self._serial = factory(self.port, baudrate=self.baudrate, timeout=min(self.timeout_s, 0.1))
        except Exception as exc:
            raise self._open_fault(exc) from exc
        try:
            self.command("AT")
        except TunerNotAnswering as exc:
            raise TunerError(
                f"FM tuner on {self.port} does not answer - check its power, its wiring and "
                f"the baud rate ({self.baudrate})"
            ) from exc
        logger.info("FM tuner on %s opened", self.port)

    def _open_fault(self, exc: Exception) -> TunerError:
        code = getattr(exc, "errno", None)  # pyserial's SerialException carries the OSError's errno
        if code in _PORT_MISSING:
            return TunerError(f"FM tuner port {self.port} not found - check the USB-serial cable", "missing")
        if code == errno.EACCES:
            return TunerError(f"FM tuner port {self.port}: permission denied - add the user to 'dialout'")
        return TunerError(f"FM tuner on {self.port}: cannot open: {exc}")

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None

    def command(self, line: str) -> list[str]:
        """Send one command; return its information lines.  TunerError on ERROR or no answer."""
        for attempt in range(self.retries + 1):
            answer = self._exchange(line)
            if answer is not None:
                return answer
            logger.warning("FM tuner on %s: no answer to %r (attempt %d)", self.port, line, attempt + 1)
        raise TunerNotAnswering(
            f"FM tuner on {self.port}: no answer to {line!r} after {self.retries + 1} attempts"
            " - check its power and wiring"
        )

    def tune(self, frequency_hz: float) -> None:
        units = round(frequency_hz / _UNIT_HZ)
        if not FM_BAND_HZ[0] <= units * _UNIT_HZ <= FM_BAND_HZ[1]:
            raise TunerError(f"FM tuner on {self.port}: {frequency_hz / 1e6:.2f} MHz is outside the FM band")
        self.command(f"AT+FREQ={units}")

    def frequency_hz(self) -> int:
        return self._query_int("FREQ") * _UNIT_HZ

    def rssi(self) -> int:
        """Received level in dBµV as the module reports it."""
        return self._query_int("RSSI")

    def snr(self) -> int:
        return self._query_int("SNR")

    def set_mute(self, muted: bool) -> None:
        self.command(f"AT+MUTE={int(muted)}")

    def set_volume(self, volume: int) -> None:
        if not 0 <= volume <= 15:
            raise TunerError(f"FM tuner on {self.port}: volume {volume} is not in 0..15")
        self.command(f"AT+VOL={volume}")

    def set_deemphasis(self, microseconds: int) -> None:
        if microseconds not in (50, 75):
            raise TunerError(f"FM tuner on {self.port}: de-emphasis {microseconds} µs is not 50 or 75")
        self.command(f"AT+DEEMPH={microseconds}")

    def _query_int(self, name: str) -> int:
        prefix = f"+{name}:"
        for info in self.command(f"AT+{name}?"):
            if info.startswith(prefix):
                try:
                    return int(info[len(prefix) :].strip())
                except ValueError:
                    break
        raise TunerError(f"FM tuner on {self.port}: AT+{name}? gave no valid '{prefix} <n>' line")

    def _exchange(self, line: str) -> list[str] | None:
        """One attempt: the information lines, or None when no final result came in time."""
        port = self._serial
        if port is None:
            raise TunerError(f"FM tuner on {self.port}: not open")
        try:
            answer = at_exchange.exchange(
                port,
                line,
                ending="\r\n",
                timeout_s=self.timeout_s,
                is_error=lambda text: text.startswith("ERROR"),
            )
        except Exception as exc:  # pyserial's SerialException or an OSError from the tty
            raise TunerError(f"FM tuner on {self.port}: I/O error on {line!r}: {exc}") from exc
        if answer.final is None:
            return None
        if answer.final != "OK":
            raise TunerError(f"FM tuner on {self.port}: {line!r} refused ({answer.final})")
        return answer.info
