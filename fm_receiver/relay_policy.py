"""Whether the FM station may be relayed now: a pure decision, given every input.

FM sits below every scheduled level: a scheduled item pre-empts it, and FM resumes when the
scheduler reports nothing busy (post-roll included, which is the scheduler's business).

Rules, first match wins:

1. a scheduled item is busy                 → no  (``scheduled``)
2. no carrier on the configured station     → no  (``no_carrier``): never relay noise
3. clock untrusted and the relay hours do not cover the whole day
                                            → no  (``clock_untrusted``): a box that does not know
   the time cannot know it is inside its hours (the 3:15 am lesson)
4. outside the relay hours (clock trusted)  → no  (``outside_hours``)
5. link up                                  → yes (``relay_hours``)
6. link down and fallback enabled           → yes (``link_down_fallback``)
7. link down and fallback disabled          → no  (``link_down``): the province cannot stop a
   relay on a box it cannot reach, so only relay without a link when configured to

Relay hours are windows ``(start, end)`` in local time, start inclusive, end exclusive; a window
whose end is not after its start crosses midnight, and ``start == end`` is the whole day.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time

from agent.errors import LoaError

__all__ = ["Decision", "RelayWindowError", "covers_whole_day", "in_windows", "parse_window", "should_relay"]

Window = tuple[time, time]
_DAY_S = 86_400
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class RelayWindowError(LoaError, ValueError):
    """A relay-hours window is not ``HH:MM-HH:MM``."""

    exit_code = 2


@dataclass(frozen=True)
class Decision:
    relay: bool
    reason: str


def should_relay(
    now_local: time,
    *,
    relay_hours: Sequence[Window],
    link_up: bool,
    fallback_on_link_down: bool,
    carrier_present: bool,
    scheduled_busy: bool,
    clock_trusted: bool,
) -> Decision:
    """Apply the rules in the module docstring."""
    if scheduled_busy:
        return Decision(False, "scheduled")
    if not carrier_present:
        return Decision(False, "no_carrier")
    if not clock_trusted:
        if not covers_whole_day(relay_hours):
            return Decision(False, "clock_untrusted")
    elif not in_windows(now_local, relay_hours):
        return Decision(False, "outside_hours")
    if link_up:
        return Decision(True, "relay_hours")
    if fallback_on_link_down:
        return Decision(True, "link_down_fallback")
    return Decision(False, "link_down")


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _spans(window: Window) -> list[tuple[int, int]]:
    """A window as half-open second ranges within one day."""
    start, end = _seconds(window[0]), _seconds(window[1])
    if start == end:
        return [(0, _DAY_S)]
    if start < end:
        return [(start, end)]
    return [(start, _DAY_S), (0, end)]


def in_windows(now_local: time, windows: Sequence[Window]) -> bool:
    now = _seconds(now_local)
    return any(lo <= now < hi for window in windows for lo, hi in _spans(window))


def covers_whole_day(windows: Sequence[Window]) -> bool:
    """True when the union of the windows leaves no second of the day uncovered."""
    covered = 0
    for lo, hi in sorted(span for window in windows for span in _spans(window)):
        if lo > covered:
            return False
        covered = max(covered, hi)
    return covered >= _DAY_S


def parse_window(text: str) -> Window:
    """Parse ``"HH:MM-HH:MM"`` (``24:00`` allowed as an end, meaning midnight)."""
    match = _WINDOW_RE.match(text)
    if match is None:
        raise RelayWindowError(f"relay window {text!r}: expected HH:MM-HH:MM, e.g. 05:00-22:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2 == 0:
        h2 = 0
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise RelayWindowError(f"relay window {text!r}: hours must be 00-23 (24:00 as an end), minutes 00-59")
    start, end = time(h1, m1), time(h2, m2)
    if start == end and text.strip().split("-")[0].strip() not in ("0:00", "00:00"):
        raise RelayWindowError(
            f"relay window {text!r}: start equals end; write 00:00-24:00 for the whole day"
        )
    return start, end
