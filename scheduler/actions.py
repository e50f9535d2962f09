"""What the engine asks the agent to do, and the outcomes it records in the play log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from scheduler.items import Outcome
from scheduler.recurrence import Occurrence

__all__ = ["Action", "Interrupt", "Outcome", "Record", "Start", "format_duration"]


@dataclass(frozen=True)
class Start:
    """Start playing ``occurrence`` now; ``late_by`` is how long after its scheduled start."""

    occurrence: Occurrence
    late_by: timedelta


@dataclass(frozen=True)
class Interrupt:
    """Stop the playing ``occurrence`` now (a ``Record`` of it follows; do not log it twice)."""

    occurrence: Occurrence
    reason: str


@dataclass(frozen=True)
class Record:
    """Write one play-log record: the engine emits one per occurrence, whatever its outcome."""

    occurrence: Occurrence
    outcome: Outcome
    reason: str = ""


Action = Start | Interrupt | Record


def format_duration(span: timedelta) -> str:
    """``3m12s``, ``1h0m5s``, ``0s``: whole seconds, for log reasons a technician reads."""
    seconds = max(0, int(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
