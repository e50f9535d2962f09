"""What the outputs do now: one pure decision per pass of the main loop.

From the scheduler's state, the FM relay's wish, clock trust (and, with the central link, link
state), :func:`plan_outputs` decides together which amplifier relays are closed, what the player
plays and what the status LED shows.  The loop only carries the plan out, so relays and audio can
never disagree: audio starts only into zones whose relays have been closed for the settling time
(``gpio.preroll``), and relays stay closed for as long as the audio they carry plays.

The rules:

- What plays comes first from the scheduler (a bulletin, a crew's ``loa play``), then FM, else
  nothing.  An item that started on a trusted clock plays to its end with its relays closed even
  if trust is lost meanwhile; nothing new starts on an untrusted clock (the engine holds it).
- A source starts only once all its zones have been closed for ``settle``: a scheduled item's
  relays closed ``preroll`` ahead, so it starts on time; FM, a command or a pre-empting item whose
  zones were open waits ``settle`` for the amplifiers.  A source already playing keeps playing.
- An item about to start closes its zones ``preroll`` ahead only if its audio is there: one whose
  audio is known missing (not in the verified cache, an unreadable file) will fail at its start
  ("audio not cached") and must not switch the amplifiers on for nothing, nor cut FM short.
- After FM stops, its zones stay closed ``postroll`` (as after a scheduled item), so the next
  source soon after does not make the relays chatter.
- LED, first match (docs/OPERATIONS.md, "Status LED"): a hardware or player alarm (player hung,
  no audio device, amplifier fault, storage full or read-only, mains lost, in that order), another
  fault, an untrusted clock, playing, relaying FM, then the warnings a crew sees on an idle box
  (modem dead, no link, cache behind schedule, no FM carrier), idle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.gpio import LedCode


@dataclass(frozen=True)
class Silence:
    """The player plays nothing."""


@dataclass(frozen=True)
class PlayItem:
    """The player plays the occurrence ``key`` of the schedule (or of a command)."""

    key: str


@dataclass(frozen=True)
class RelayFm:
    """The FM station is relayed (through the player, or the tuner's own audio relay)."""


Target = Silence | PlayItem | RelayFm
SILENCE = Silence()
RELAY_FM = RelayFm()


@dataclass(frozen=True)
class Upcoming:
    """An occurrence in its pre-roll: its zones, and whether its audio is there to play."""

    zones: frozenset[str]
    audio_ready: bool = True


@dataclass(frozen=True)
class PlanInputs:
    now: datetime
    clock_trusted: bool
    item: PlayItem | None  # what the scheduler says plays now
    item_zones: frozenset[str]
    scheduled_zones: frozenset[str]  # the engine's wanted zones: playing, queued, post-roll (pre-roll)
    zones_in_use: frozenset[str]  # the engine's playing and post-roll zones only
    fm_wanted: bool  # the FM policy's answer
    fm_zones: frozenset[str]
    fm_released_at: datetime | None  # when FM last stopped relaying
    closed_since: Mapping[str, datetime]  # zones whose relays are closed, since when
    current: Target  # what the player was last told to play
    settle: timedelta
    postroll: timedelta
    faults: tuple[str, ...] = ()  # plain words of each fault the LED must show
    link_up: bool = True  # the central link (always up when none is configured)
    alarms: frozenset[str] = frozenset()  # raised alarm codes (agent/alarms.py)
    upcoming: tuple[Upcoming, ...] = ()  # items in their pre-roll, not in scheduled_zones


@dataclass(frozen=True)
class OutputPlan:
    zones: frozenset[str]
    player: Target
    led: LedCode
    wake_at: datetime | None  # when this plan changes by time alone (settling or FM's post-roll ends)
    faults: tuple[str, ...] = ()


def plan_outputs(inputs: PlanInputs) -> OutputPlan:
    """The relays, player target and LED for this pass; see the module's rules."""
    zones = inputs.scheduled_zones if inputs.clock_trusted else inputs.zones_in_use
    if inputs.clock_trusted:
        for upcoming in inputs.upcoming:
            zones |= upcoming.zones if upcoming.audio_ready else frozenset()
    wanted: Target = SILENCE
    source_zones: frozenset[str] = frozenset()
    if inputs.item is not None:
        wanted, source_zones = inputs.item, inputs.item_zones
    elif inputs.fm_wanted:
        wanted, source_zones = RELAY_FM, inputs.fm_zones
    zones |= source_zones
    player, wake_at = _settled(wanted, source_zones, inputs)
    held_until = _fm_held_until(inputs, player)
    if held_until is not None and inputs.now < held_until:
        zones |= inputs.fm_zones
        wake_at = min(wake_at, held_until) if wake_at is not None else held_until
    return OutputPlan(zones, player, _led(inputs, player), wake_at, inputs.faults)


def _fm_held_until(inputs: PlanInputs, player: Target) -> datetime | None:
    """Until when FM's zones stay closed after FM stopped: ``postroll`` after it stopped.

    FM that stops on this very pass counts as released now (the loop notes ``fm_released_at``
    only after carrying the plan out): its relays must not open under its last audio and close
    again on the next pass.
    """
    if player == RELAY_FM:
        return None
    released = inputs.now if inputs.current == RELAY_FM else inputs.fm_released_at
    return released + inputs.postroll if released is not None else None


def _settled(wanted: Target, zones: frozenset[str], inputs: PlanInputs) -> tuple[Target, datetime | None]:
    """``wanted`` once its zones have been closed for ``settle`` (or if it already plays)."""
    if wanted == SILENCE or wanted == inputs.current:
        return wanted, None
    # Relays this pass closes are closed from now on.
    ready_at = max((inputs.closed_since.get(zone, inputs.now) for zone in zones), default=inputs.now)
    ready_at += inputs.settle
    if ready_at <= inputs.now:
        return wanted, None
    return SILENCE, ready_at


# Alarm codes (or, ending in '.', code families) and their LED codes, most urgent first.
FAULT_LEDS: tuple[tuple[str, LedCode], ...] = (
    ("player.hung", LedCode.PLAYER_HUNG),
    ("audio.no_device", LedCode.NO_AUDIO_DEVICE),
    ("amp.fault.", LedCode.AMP_FAULT),
    ("storage.readonly", LedCode.STORAGE),
    ("storage.low", LedCode.STORAGE),
    ("mains.lost", LedCode.MAINS_LOST),
)
WARNING_LEDS: tuple[tuple[str, LedCode], ...] = (  # shown only when nothing plays
    ("modem.dead", LedCode.MODEM_DEAD),
    ("link.down", LedCode.NO_LINK),  # from link_up, not an alarm
    ("cache.behind", LedCode.CACHE_BEHIND),
    ("fm.no_carrier", LedCode.NO_FM_CARRIER),
)


def _first(table: tuple[tuple[str, LedCode], ...], codes: frozenset[str]) -> LedCode | None:
    for code, led in table:
        if code in codes or (code.endswith(".") and any(raised.startswith(code) for raised in codes)):
            return led
    return None


def _led(inputs: PlanInputs, player: Target) -> LedCode:
    fault = _first(FAULT_LEDS, inputs.alarms)
    if fault is not None:
        return fault
    if inputs.faults:
        return LedCode.FAULT
    if not inputs.clock_trusted:
        return LedCode.CLOCK_UNTRUSTED
    if isinstance(player, PlayItem) or inputs.item is not None:
        return LedCode.PLAYING
    if isinstance(player, RelayFm):
        return LedCode.FM_RELAY
    # below playing and FM: a box that plays should say so
    warnings = inputs.alarms if inputs.link_up else inputs.alarms | {"link.down"}
    return _first(WARNING_LEDS, warnings) or LedCode.OK_IDLE
