"""The interface every IQ source offers to the receiver, and the events sources and receivers raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fm_receiver.source_health import SourceHealth
from foundation.errors import LoaError

__all__ = ["EventSink", "FmEvent", "IqSource", "SourceFinished", "ignore_event"]


@dataclass(frozen=True)
class FmEvent:
    """Something the agent should know: ``kind`` is e.g. ``fm.carrier_present`` (docs/FM.md)."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[FmEvent], None]


class SourceFinished(LoaError, EOFError):
    """A finite source (an IQ file without looping) has delivered its last block."""


class IqSource(Protocol):
    """A stream of complex64 baseband blocks at ``sample_rate``; the station sits at ``offset_hz``."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def offset_hz(self) -> float: ...

    @property
    def health(self) -> SourceHealth:
        """Whether it delivers, and if not why (:mod:`fm_receiver.source_health`)."""
        ...

    def open(self) -> None:
        """Open the device or file; raises SourceFault (missing, failed) saying what is wrong."""
        ...

    def read(self, timeout: float) -> npt.NDArray[np.complex64] | None:
        """The next block, or None when nothing came within ``timeout`` seconds.

        Raises SourceFinished at the end of a finite source, HardwareError when the device fails.
        (A source with its own watchdog, as the RTL-SDR's, recovers by itself and shows it in
        :attr:`health` instead.)
        """
        ...

    def close(self) -> None: ...


def ignore_event(event: FmEvent) -> None:
    """Default event sink."""
