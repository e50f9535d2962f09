"""A 4G modem's health over its AT port (3GPP TS 27.007); the drivers' only module importing pyserial.

We never dial or configure the modem (the operating system's ModemManager or the modem's own
firmware keeps the data link up): we only ask it how it is.  Lines end in CR LF; every command ends
with a final ``OK`` or ``ERROR`` (``+CME ERROR: n``) line, optionally preceded by information
lines, and unsolicited lines (``RING``, ``+CREG: 1``) may come in between.

    AT          ping                   → OK
    AT+CSQ      signal quality         → +CSQ: <rssi>,<ber> / OK   (rssi 0..31, 99 unknown)
    AT+CREG?    circuit registration   → +CREG: <n>,<stat>[,...] / OK
    AT+CEREG?   EPS (LTE) registration → +CEREG: <n>,<stat>[,...] / OK (ERROR on a 2G/3G-only modem)
    AT+COPS?    operator               → +COPS: <mode>[,<format>,"<name>"[,<AcT>]] / OK

Every failure (unplugged, silent, garbage, refused) is a :class:`ModemError` with the port in its
words; the caller (``agent.health``) turns it into an alarm, never a crash.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foundation import at_exchange
from foundation.errors import HardwareError

__all__ = ["Modem", "ModemError", "ModemReading", "csq_to_dbm", "parse_cops", "parse_csq", "parse_reg"]

logger = logging.getLogger(__name__)

MAX_LINE = 512  # a longer line is garbage (a wrong baud rate reads as a stream of noise)
_PORT_MISSING = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO})  # unplugged USB modem
# 3GPP TS 27.007 <stat> of +CREG / +CEREG
_REGISTRATION = {
    0: "not registered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
}
_ACCESS = {0: "GSM", 2: "UMTS", 3: "EDGE", 4: "HSDPA", 5: "HSUPA", 6: "HSPA", 7: "LTE"}


class ModemError(HardwareError):
    """The modem cannot be opened, does not answer, answers garbage, or refused a command."""


@dataclass(frozen=True)
class ModemReading:
    """One answer to "how is the modem": signal, registration and operator."""

    csq: int  # the raw AT+CSQ rssi index, 0..31 or 99
    rssi_dbm: int | None  # None when the modem does not know (99)
    registration: str  # home, roaming, searching, denied, not registered, unknown
    operator: str | None
    access: str | None  # LTE, UMTS, GSM, ... when the modem says

    @property
    def registered(self) -> bool:
        return self.registration in ("home", "roaming")


def csq_to_dbm(index: int) -> int | None:
    """27.007 rssi index to dBm: 0 is -113 dBm or less, 2 dBm a step, 31 is -51 dBm or more, 99 unknown."""
    if index == 99:
        return None
    if not 0 <= index <= 31:
        raise ValueError(f"CSQ rssi {index} is not 0..31 or 99")
    return -113 + 2 * index


def _fields(line: str, prefix: str) -> list[str]:
    if not line.startswith(prefix):
        raise ValueError(f"expected '{prefix} ...'")
    return [field.strip() for field in line[len(prefix) :].split(",")]


def parse_csq(line: str) -> int:
    """The rssi index of ``+CSQ: <rssi>,<ber>``; ValueError for anything else."""
    fields = _fields(line, "+CSQ:")
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
        raise ValueError("expected '+CSQ: <rssi>,<ber>'")
    index = int(fields[0])
    csq_to_dbm(index)  # range check
    return index


def parse_reg(line: str, prefix: str) -> str:
    """The registration of ``+CREG: <n>,<stat>`` (a query answer) or ``+CREG: <stat>`` (unsolicited)."""
    fields = _fields(line, prefix)
    stat = fields[1] if len(fields) >= 2 else fields[0]
    if not stat.isdigit() or int(stat) not in _REGISTRATION:
        raise ValueError(f"expected '{prefix} <n>,<stat>' with stat 0..5")
    return _REGISTRATION[int(stat)]


def parse_cops(line: str) -> tuple[str | None, str | None]:
    """Operator name and access technology of ``+COPS: <mode>[,<format>,"<oper>"[,<AcT>]]``."""
    fields = _fields(line, "+COPS:")
    if not fields[0].isdigit() or len(fields) not in (1, 3, 4):
        raise ValueError("expected '+COPS: <mode>[,<format>,\"<operator>\"[,<AcT>]]'")
    if len(fields) == 1:
        return None, None
    name = fields[2].strip('"') or None
    access = _ACCESS.get(int(fields[3])) if len(fields) == 4 and fields[3].isdigit() else None
    return name, access


class Modem:
    """AT client of one modem port; reopens the port after an I/O error (a modem plugged back)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 1.0,
        retries: int = 1,
        serial_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._factory = serial_factory
        self._serial: Any = None

    def read(self) -> ModemReading:
        """Signal, registration and operator; ModemError when the modem cannot say (the port is then
        closed, so the next read opens it again: the modem may have been plugged back)."""
        try:
            csq = self._parsed("AT+CSQ", "+CSQ:", parse_csq)
            registration = self._registration()
            operator, access = self._parsed("AT+COPS?", "+COPS:", parse_cops)
        except ModemError:
            self.close()
            raise
        return ModemReading(csq, csq_to_dbm(csq), registration, operator, access)

    def open(self) -> None:
        factory = self._factory
        if factory is None:
            import serial

            factory = serial.Serial
        try:
            self._serial = factory(self.port, baudrate=self.baudrate, timeout=min(self.timeout_s, 0.1))
        except Exception as exc:  # pyserial's SerialException, OSError, ValueError for a bad baud rate
            raise self._open_fault(exc) from exc
        logger.info("modem on %s opened", self.port)

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # an unplugged tty may fail to close; it is gone either way
                logger.debug("modem on %s: close failed: %s", self.port, exc)

    def command(self, line: str) -> list[str]:
        """Send one command (opening the port first if needed); its information lines.  ModemError on
        ERROR, garbage or no answer."""
        if self._serial is None:
            self.open()
        heard: list[str] = []
        for attempt in range(self.retries + 1):
            done, info = self._exchange(line)
            if done:
                return info
            heard += info
            logger.debug("modem on %s: no answer to %r (attempt %d)", self.port, line, attempt + 1)
        if heard:  # lines came, but never a final result: noise (a wrong baud rate) or a confused modem
            raise ModemError(
                f"modem on {self.port} answered garbage to {line!r}: {heard[0]!r:.60} and no OK"
                f" - check the baud rate ({self.baudrate})"
            )
        raise ModemError(f"modem on {self.port} does not answer {line!r} - check its power and USB cable")

    def _registration(self) -> str:
        """EPS (LTE) registration when the modem has it, else the circuit-switched one."""
        circuit = self._parsed("AT+CREG?", "+CREG:", lambda text: parse_reg(text, "+CREG:"))
        try:
            eps = self._parsed("AT+CEREG?", "+CEREG:", lambda text: parse_reg(text, "+CEREG:"))
        except ModemError as exc:
            if "refused" not in str(exc):  # a 2G/3G-only modem refuses CEREG: not a fault
                raise
            return circuit
        return eps if eps in ("home", "roaming") or circuit not in ("home", "roaming") else circuit

    def _parsed(self, line: str, prefix: str, parse: Callable[[str], Any]) -> Any:
        info = self.command(line)
        answers = [text for text in info if text.startswith(prefix)]
        if not answers:
            raise ModemError(
                f"modem on {self.port} answered {line!r} without a {prefix!r} line: {info!r:.80}"
            )
        try:
            return parse(answers[-1])  # an unsolicited +CREG: before the answer is older
        except ValueError as exc:
            raise ModemError(
                f"modem on {self.port} answered garbage to {line!r}: {answers[-1]!r:.80} ({exc})"
            ) from exc

    def _open_fault(self, exc: Exception) -> ModemError:
        code = getattr(exc, "errno", None)  # pyserial's SerialException carries the OSError's errno
        if code in _PORT_MISSING:
            return ModemError(f"modem port {self.port} not found - is the modem plugged in?")
        if code == errno.EACCES:
            return ModemError(f"modem port {self.port}: permission denied - add the user to 'dialout'")
        return ModemError(f"modem on {self.port}: cannot open: {exc}")

    def _exchange(self, line: str) -> tuple[bool, list[str]]:
        """One attempt: whether a final ``OK`` came in time, and the information lines."""
        port = self._serial
        if port is None:
            raise ModemError(f"modem on {self.port}: not open")
        try:
            answer = at_exchange.exchange(
                port, line, ending="\r", timeout_s=self.timeout_s, is_error=_refusal, max_line=MAX_LINE
            )
        except at_exchange.LineTooLong as exc:
            raise ModemError(f"modem on {self.port} answered garbage to {line!r}: a line of noise") from exc
        except Exception as exc:  # pyserial's SerialException or an OSError from an unplugged tty
            raise ModemError(f"modem on {self.port}: I/O error on {line!r}: {exc} - unplugged?") from exc
        if answer.final is None:
            return False, answer.info
        if answer.final != "OK":
            raise ModemError(f"modem on {self.port}: {line!r} refused ({answer.final})")
        return True, answer.info


def _refusal(text: str) -> bool:
    return text == "ERROR" or text.startswith(("+CME ERROR", "+CMS ERROR"))
