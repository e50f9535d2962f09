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

Relay hours are clock windows in local time (``foundation.units``: start included, end excluded, a
window may cross midnight, ``00:00-24:00`` is the whole day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time

from foundation.units import ClockWindow, covers_whole_day, in_clock_windows

__all__ = ["Decision", "should_relay"]


@dataclass(frozen=True)
class Decision:
    relay: bool
    reason: str


def should_relay(
    now_local: time,
    *,
    relay_hours: Sequence[ClockWindow],
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
    elif not in_clock_windows(relay_hours, now_local):
        return Decision(False, "outside_hours")
    if link_up:
        return Decision(True, "relay_hours")
    if fallback_on_link_down:
        return Decision(True, "link_down_fallback")
    return Decision(False, "link_down")
