"""Alarms that raise and clear with hysteresis, each with a stable code.

A condition (the mains input reads "lost", the modem fails) must hold for its rule's
``raise_after`` before its alarm raises, and be gone for ``clear_after`` before it clears, so an
input that chatters or a reading that hovers at a threshold never makes the alarm flap.  Pure:
given the monotonic ``now``; ``agent.health`` feeds it and records each change as an event.

The codes are part of what the box reports (events, ``loa status --json``): add codes, never
rename them.  docs/OPERATIONS.md, "Alarms", is the table a crew reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    raise_after: float  # seconds the condition must hold before the alarm raises
    clear_after: float  # seconds it must be gone before the alarm clears
    words: str  # what it means, for a crew


RULES: dict[str, Rule] = {
    "player.hung": Rule(0, 5, "the audio player is hung or being restarted"),
    "audio.no_device": Rule(10, 10, "no sound card: the player has nowhere to play"),
    "amp.fault": Rule(2, 10, "the amplifier's fault output is on"),  # amp.fault.<zone>
    "storage.readonly": Rule(0, 30, "the storage is read-only"),
    "storage.low": Rule(0, 60, "the storage is (nearly) full"),
    "mains.lost": Rule(5, 30, "mains power lost: running on the 12-24 V backup"),
    "modem.dead": Rule(60, 30, "the 4G modem does not answer (or answers garbage)"),
    "modem.no_network": Rule(120, 30, "the 4G modem is not registered on a network"),
    "cpu.hot": Rule(30, 60, "the CPU is too hot"),
    "cpu.throttled": Rule(10, 60, "the board is throttled or under-voltage"),
    "clock.untrusted": Rule(120, 0, "the clock is not trusted: nothing scheduled starts"),
    "fm.no_carrier": Rule(60, 10, "FM should be relayed now, but its station is not received"),
    "cache.behind": Rule(60, 0, "audio needed soon is not downloaded yet"),
}


def rule_of(code: str) -> Rule:
    """The rule of a code; ``amp.fault.zone-1`` has the rule of ``amp.fault``."""
    if code in RULES:
        return RULES[code]
    family = code.rpartition(".")[0]
    if family in RULES:
        return RULES[family]
    raise KeyError(f"no alarm rule for {code!r}")


@dataclass(frozen=True)
class Change:
    code: str
    raised: bool
    detail: str


@dataclass
class _Track:
    raised: bool = False
    pending_since: float | None = None  # when the condition started to differ from `raised`
    detail: str = ""


class Alarms:
    """The alarm states; :meth:`observe` each condition on every look, it answers the changes."""

    def __init__(self, rules: dict[str, Rule] | None = None) -> None:
        self._rules = rules if rules is not None else RULES
        self._tracks: dict[str, _Track] = {}

    def _rule(self, code: str) -> Rule:
        rules = self._rules
        return rules[code] if code in rules else rules[code.rpartition(".")[0]]

    def observe(self, code: str, active: bool, detail: str, now: float) -> Change | None:
        """The condition ``code`` is ``active`` at ``now``; the alarm's change, if this makes one."""
        track = self._tracks.setdefault(code, _Track())
        if active:
            track.detail = detail
        if active == track.raised:
            track.pending_since = None
            return None
        if track.pending_since is None:
            track.pending_since = now
        rule = self._rule(code)
        if now - track.pending_since < (rule.raise_after if active else rule.clear_after):
            return None
        track.raised, track.pending_since = active, None
        return Change(code, active, track.detail)

    def raised(self, code: str) -> bool:
        track = self._tracks.get(code)
        return track is not None and track.raised

    def active(self) -> dict[str, str]:
        """Raised alarms: code -> detail, in code order."""
        return {code: track.detail for code, track in sorted(self._tracks.items()) if track.raised}
