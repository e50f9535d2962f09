"""Whether an FM source can deliver at all, as distinct from whether the band is quiet.

Every backend (RTL-SDR dongle, serial tuner module, IQ file) reports a :class:`SourceHealth`: a
state, and for a fault the plain words a maintenance crew reads in ``loa status``.  A missing
dongle is not "no carrier": ``no carrier`` means the source works and the station is silent.

States:

- ``opening``: being opened, or reopened after a stall; no samples yet;
- ``ok``: delivering;
- ``missing`` (fault): no such device, port or file;
- ``failed`` (fault): it is there but cannot be used (busy, permission, refuses its settings,
  does not answer);
- ``stalled`` (fault): opened but sends nothing, or an open that never finishes;
- ``finished``: a recording without ``loop`` has ended;
- ``closed``: stopped.

Stdlib only: :mod:`fm_receiver.serial_tuner` uses it without numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from foundation.errors import HardwareError

__all__ = [
    "CLOSED",
    "FAULT_STATES",
    "OK",
    "OPENING",
    "SourceFault",
    "SourceHealth",
    "SourceState",
    "health_of",
]

SourceState = Literal["opening", "ok", "missing", "failed", "stalled", "finished", "closed"]
FaultState = Literal["missing", "failed", "stalled"]
FAULT_STATES: frozenset[str] = frozenset({"missing", "failed", "stalled"})


@dataclass(frozen=True)
class SourceHealth:
    """A source's state; ``error`` says what is wrong in plain words, and is set only for a fault."""

    state: SourceState
    error: str | None = None

    @property
    def fault(self) -> bool:
        return self.state in FAULT_STATES


OPENING = SourceHealth("opening")
OK = SourceHealth("ok")
CLOSED = SourceHealth("closed")


class SourceFault(HardwareError):
    """A source cannot be opened or used; ``state`` is ``missing``, ``failed`` or ``stalled``.

    The message is what ``loa status`` shows: it names the device and says what to check.
    """

    def __init__(self, message: str, state: FaultState = "failed") -> None:
        super().__init__(message)
        self.state: FaultState = state


def health_of(exc: BaseException) -> SourceHealth:
    """The fault an exception from a source stands for (any unexpected exception is ``failed``)."""
    if isinstance(exc, SourceFault):
        return SourceHealth(exc.state, str(exc))
    return SourceHealth("failed", str(exc) or type(exc).__name__)
