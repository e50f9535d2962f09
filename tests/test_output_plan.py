"""The output plan (``agent.output_plan.plan_outputs``): relays, player and LED decided together.

Examples first, one per rule of the module docstring, then properties over any inputs and over
runs of passes in which the loop carries each plan out as ``Agent._apply`` does (relays closed
since the pass that first wanted them, the player told the plan's target, FM released when it
stops) and sleeps until the plan's ``wake_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.output_plan import (
    RELAY_FM,
    SILENCE,
    OutputPlan,
    PlanInputs,
    PlayItem,
    Target,
    Upcoming,
    plan_outputs,
)
from drivers.gpio import LedCode

T0 = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
SETTLE = timedelta(seconds=2)
POSTROLL = timedelta(seconds=10)
NEWS = PlayItem("news@2026-11-26T06:30:00+00:00")
STORM = PlayItem("storm@2026-11-26T06:31:00+00:00")
ZONES = ("zone-1", "zone-2", "zone-3")


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def inputs(**changes: object) -> PlanInputs:
    """An idle box on a trusted clock, FM off, nothing closed; ``changes`` override fields."""
    base = PlanInputs(
        now=T0,
        clock_trusted=True,
        item=None,
        item_zones=frozenset(),
        scheduled_zones=frozenset(),
        zones_in_use=frozenset(),
        fm_wanted=False,
        fm_zones=frozenset({"zone-2"}),
        fm_released_at=None,
        closed_since={},
        current=SILENCE,
        settle=SETTLE,
        postroll=POSTROLL,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def playing_news(**changes: object) -> PlanInputs:
    """The scheduler plays NEWS on zone-1, whose relay closed ``SETTLE`` ago."""
    zone_1 = frozenset({"zone-1"})
    fields: dict[str, object] = {
        "item": NEWS,
        "item_zones": zone_1,
        "scheduled_zones": zone_1,
        "zones_in_use": zone_1,
        "closed_since": {"zone-1": T0 - SETTLE},
    }
    return inputs(**{**fields, **changes})


# -- the rules, by example -------------------------------------------------------------------------


def test_idle_box_is_silent_with_relays_open() -> None:
    plan = plan_outputs(inputs())
    assert plan == OutputPlan(frozenset(), SILENCE, LedCode.OK_IDLE, None)


def test_a_scheduled_item_starts_into_relays_closed_by_its_preroll() -> None:
    plan = plan_outputs(playing_news())
    assert plan.player == NEWS and plan.zones == {"zone-1"} and plan.led is LedCode.PLAYING
    assert plan.wake_at is None


def test_a_source_into_open_relays_closes_them_first_and_waits_the_settling_time() -> None:
    first = plan_outputs(playing_news(closed_since={}))
    assert first.zones == {"zone-1"} and first.player == SILENCE and first.wake_at == T0 + SETTLE
    assert first.led is LedCode.PLAYING  # what is about to play shows, not idle
    closed = {"zone-1": T0}
    assert plan_outputs(playing_news(now=T0 + s(1.999), closed_since=closed)).player == SILENCE
    assert plan_outputs(playing_news(now=T0 + SETTLE, closed_since=closed)).player == NEWS


def test_what_already_plays_keeps_playing_whatever_its_relays_say() -> None:
    # The relay was closed a moment ago (a restarted driver, say): the audio is not cut for it.
    plan = plan_outputs(playing_news(current=NEWS, closed_since={"zone-1": T0}))
    assert plan.player == NEWS and plan.wake_at is None


def test_a_preempting_item_waits_only_for_its_own_zones() -> None:
    both = frozenset({"zone-1", "zone-2"})
    storm = playing_news(
        item=STORM, item_zones=both, current=NEWS, closed_since={"zone-1": T0 - s(60)}, scheduled_zones=both
    )
    plan = plan_outputs(storm)
    assert plan.zones == both and plan.player == SILENCE and plan.wake_at == T0 + SETTLE
    settled = plan_outputs(replace(storm, closed_since={"zone-1": T0 - s(60), "zone-2": T0 - SETTLE}))
    assert settled.player == STORM


def test_fm_is_relayed_after_its_zones_settle_and_only_when_nothing_is_scheduled() -> None:
    wanted = inputs(fm_wanted=True)
    assert plan_outputs(wanted).player == SILENCE
    assert plan_outputs(wanted).zones == {"zone-2"}
    relayed = plan_outputs(replace(wanted, closed_since={"zone-2": T0 - SETTLE}))
    assert relayed.player == RELAY_FM and relayed.led is LedCode.FM_RELAY
    # a scheduled item wins over FM even while its own relays settle
    both = plan_outputs(playing_news(fm_wanted=True, closed_since={}))
    assert both.player == SILENCE and "zone-1" in both.zones


def test_fm_zones_are_held_for_the_postroll_after_fm_stops() -> None:
    stopped = inputs(fm_released_at=T0 - s(9.9), closed_since={"zone-2": T0 - s(60)})
    assert plan_outputs(stopped).zones == {"zone-2"}
    assert plan_outputs(replace(stopped, now=T0 + s(0.1))).zones == frozenset()


def test_fm_stopping_on_this_pass_keeps_its_relays_closed() -> None:
    """The pass that stops FM (the loop notes ``fm_released_at`` only after it) must not open the
    relays under FM's last audio, to close them again for the post-roll on the next pass."""
    stopping = inputs(current=RELAY_FM, fm_wanted=False, closed_since={"zone-2": T0 - s(60)})
    plan = plan_outputs(stopping)
    assert plan.player == SILENCE and plan.zones == {"zone-2"} and plan.wake_at == T0 + POSTROLL
    # FM giving way to a bulletin on another zone: FM's zone is held, the bulletin's closes
    news = plan_outputs(playing_news(current=RELAY_FM, closed_since={"zone-2": T0 - s(60)}))
    assert news.zones == {"zone-1", "zone-2"} and news.player == SILENCE


def test_fm_postroll_end_is_a_wake_up() -> None:
    """The loop sleeps until ``wake_at``: the end of FM's post-roll must be one, or the relays stay
    closed until some other event or the heartbeat happens to come."""
    plan = plan_outputs(inputs(fm_released_at=T0 - s(4), closed_since={"zone-2": T0 - s(60)}))
    assert plan.wake_at == T0 - s(4) + POSTROLL


def test_an_untrusted_clock_powers_only_what_is_in_use() -> None:
    # the engine wants zone-3 for an item due soon; with no trusted clock it cannot start, so its
    # pre-roll is not powered, but the item that plays keeps its zone.
    untrusted = playing_news(
        clock_trusted=False, current=NEWS, scheduled_zones=frozenset({"zone-1", "zone-3"})
    )
    plan = plan_outputs(untrusted)
    assert plan.zones == {"zone-1"} and plan.player == NEWS
    assert plan.led is LedCode.CLOCK_UNTRUSTED
    post_roll = plan_outputs(inputs(clock_trusted=False, zones_in_use=frozenset({"zone-1"})))
    assert post_roll.zones == {"zone-1"} and post_roll.player == SILENCE


def test_led_order_fault_clock_playing_fm_idle() -> None:
    fault = ("the audio player is not healthy",)
    assert plan_outputs(playing_news(clock_trusted=False, faults=fault)).led is LedCode.FAULT
    assert plan_outputs(playing_news(faults=fault)).faults == fault
    assert plan_outputs(playing_news(clock_trusted=False)).led is LedCode.CLOCK_UNTRUSTED
    fm_too = {"fm_wanted": True, "closed_since": {"zone-1": T0 - SETTLE, "zone-2": T0 - SETTLE}}
    assert plan_outputs(playing_news(**fm_too)).led is LedCode.PLAYING
    assert plan_outputs(inputs(**fm_too)).led is LedCode.FM_RELAY
    assert plan_outputs(inputs()).led is LedCode.OK_IDLE


def test_led_priority_is_the_documented_one() -> None:
    """docs/OPERATIONS.md, "Status LED": take away the most urgent condition, the next one shows."""
    alarms = ["player.hung", "audio.no_device", "amp.fault.zone-2", "storage.readonly", "mains.lost"]
    warnings = ["modem.dead", "cache.behind", "fm.no_carrier"]
    given = {"alarms": frozenset(alarms + warnings), "faults": ("FM: no dongle",), "clock_trusted": False}
    shown = []
    while True:
        shown.append(plan_outputs(playing_news(**given)).led)
        if given["alarms"] - set(warnings):
            given["alarms"] = given["alarms"] - {alarms[len(shown) - 1]}
        elif given["faults"]:
            given["faults"] = ()
        elif not given["clock_trusted"]:
            given["clock_trusted"] = True
        else:
            break
    assert shown == [
        LedCode.PLAYER_HUNG, LedCode.NO_AUDIO_DEVICE, LedCode.AMP_FAULT, LedCode.STORAGE, LedCode.MAINS_LOST,
        LedCode.FAULT, LedCode.CLOCK_UNTRUSTED, LedCode.PLAYING,
    ]  # fmt: skip
    idle = []
    left, link_up = list(warnings), False
    while True:
        idle.append(plan_outputs(inputs(alarms=frozenset(left), link_up=link_up)).led)
        if left and left[0] == "modem.dead":
            left.pop(0)
        elif not link_up:
            link_up = True
        elif left:
            left.pop(0)
        else:
            break
    assert idle == [
        LedCode.MODEM_DEAD, LedCode.NO_LINK, LedCode.CACHE_BEHIND, LedCode.NO_FM_CARRIER, LedCode.OK_IDLE
    ]  # fmt: skip


def test_alarms_without_an_led_pattern_leave_the_led_alone() -> None:
    quiet = frozenset({"cpu.hot", "cpu.throttled", "modem.no_network", "clock.untrusted"})
    assert plan_outputs(inputs(alarms=quiet)).led is LedCode.OK_IDLE


def test_an_item_whose_audio_is_missing_does_not_close_its_relays_at_preroll() -> None:
    missing = Upcoming(frozenset({"zone-3"}), audio_ready=False)
    ready = Upcoming(frozenset({"zone-1"}), audio_ready=True)
    assert plan_outputs(inputs(upcoming=(missing,))).zones == frozenset()
    assert plan_outputs(inputs(upcoming=(missing, ready))).zones == {"zone-1"}
    # a zone that something else wants stays closed, FM goes on, and nothing closes untrusted
    assert plan_outputs(inputs(upcoming=(missing,), scheduled_zones=frozenset({"zone-3"}))).zones == {
        "zone-3"
    }
    fm = plan_outputs(inputs(upcoming=(missing,), fm_wanted=True, current=RELAY_FM))
    assert fm.player == RELAY_FM and fm.zones == {"zone-2"}
    assert plan_outputs(inputs(upcoming=(ready,), clock_trusted=False)).zones == frozenset()


# -- properties of one plan ---------------------------------------------------------------------------

zone_sets = st.frozensets(st.sampled_from(ZONES))
some_zones = st.frozensets(st.sampled_from(ZONES), min_size=1)
ages = st.integers(min_value=0, max_value=20_000).map(lambda ms: timedelta(milliseconds=ms))
targets: st.SearchStrategy[Target] = st.sampled_from([SILENCE, RELAY_FM, NEWS, STORM])


@st.composite
def plan_inputs(draw: st.DrawFn) -> PlanInputs:
    item = draw(st.sampled_from([None, NEWS, STORM]))
    closed = draw(zone_sets)
    released = draw(st.none() | ages)
    return PlanInputs(
        now=T0,
        clock_trusted=draw(st.booleans()),
        item=item,
        item_zones=draw(some_zones) if item is not None else frozenset(),
        scheduled_zones=draw(zone_sets),
        zones_in_use=draw(zone_sets),
        fm_wanted=draw(st.booleans()),
        fm_zones=draw(some_zones),
        fm_released_at=T0 - released if released is not None else None,
        closed_since={zone: T0 - draw(ages) for zone in sorted(closed)},
        current=draw(targets),
        settle=draw(ages),
        postroll=draw(ages),
        faults=tuple(draw(st.lists(st.sampled_from(["player", "FM: no dongle"]), max_size=2))),
        link_up=draw(st.booleans()),
        alarms=draw(st.frozensets(st.sampled_from(ALARM_CODES))),
        upcoming=tuple(draw(st.lists(st.builds(Upcoming, some_zones, st.booleans()), max_size=3))),
    )


ALARM_CODES = [
    "player.hung", "audio.no_device", "amp.fault.zone-1", "amp.fault.zone-2", "storage.readonly",
    "storage.low", "mains.lost", "modem.dead", "modem.no_network", "cpu.hot", "cpu.throttled",
    "clock.untrusted", "fm.no_carrier", "cache.behind",
]  # fmt: skip
# The LED of each alarm family, most urgent first: faults (over anything) and warnings (when idle).
FAULT_FAMILIES = [
    ("player.hung", LedCode.PLAYER_HUNG), ("audio.no_device", LedCode.NO_AUDIO_DEVICE),
    ("amp.fault", LedCode.AMP_FAULT), ("storage", LedCode.STORAGE), ("mains.lost", LedCode.MAINS_LOST),
]  # fmt: skip
WARNING_FAMILIES = [
    ("modem.dead", LedCode.MODEM_DEAD), ("link.down", LedCode.NO_LINK),
    ("cache.behind", LedCode.CACHE_BEHIND), ("fm.no_carrier", LedCode.NO_FM_CARRIER),
]  # fmt: skip


def _first_family(families: list[tuple[str, LedCode]], codes: frozenset[str]) -> LedCode | None:
    return next((led for family, led in families if any(c.startswith(family) for c in codes)), None)


def source_zones(plan: OutputPlan, given_inputs: PlanInputs) -> frozenset[str]:
    if plan.player == RELAY_FM:
        return given_inputs.fm_zones
    if isinstance(plan.player, PlayItem):
        return given_inputs.item_zones
    return frozenset()


@given(plan_inputs())
def test_relays_always_carry_what_the_player_plays(given_inputs: PlanInputs) -> None:
    plan = plan_outputs(given_inputs)
    assert source_zones(plan, given_inputs) <= plan.zones
    if isinstance(plan.player, PlayItem):
        assert plan.player == given_inputs.item, "the player plays only what the scheduler says"
    if given_inputs.item is not None:
        assert given_inputs.item_zones <= plan.zones, "relays close for a waiting item too"
        assert plan.player != RELAY_FM, "FM never plays over a scheduled item"


@given(plan_inputs())
def test_audio_never_starts_into_relays_not_yet_settled(given_inputs: PlanInputs) -> None:
    plan = plan_outputs(given_inputs)
    if plan.player in (SILENCE, given_inputs.current):
        return
    for zone in source_zones(plan, given_inputs):
        # a relay this pass closes counts as closed now (relays are switched before the player)
        since = given_inputs.closed_since.get(zone, given_inputs.now)
        assert given_inputs.now - since >= given_inputs.settle, zone


@given(plan_inputs())
def test_what_plays_keeps_playing_while_it_is_still_wanted(given_inputs: PlanInputs) -> None:
    plan = plan_outputs(given_inputs)
    wanted = given_inputs.item or (RELAY_FM if given_inputs.fm_wanted else SILENCE)
    if given_inputs.current == wanted:
        assert plan.player == wanted


@given(plan_inputs())
def test_fm_zones_are_held_for_postroll(given_inputs: PlanInputs) -> None:
    released = given_inputs.fm_released_at
    if released is not None and given_inputs.now < released + given_inputs.postroll:
        assert given_inputs.fm_zones <= plan_outputs(given_inputs).zones


@given(plan_inputs())
def test_an_untrusted_clock_powers_nothing_for_what_has_not_started(given_inputs: PlanInputs) -> None:
    plan = plan_outputs(given_inputs)
    if given_inputs.clock_trusted:
        assert given_inputs.scheduled_zones <= plan.zones
        return
    allowed = given_inputs.zones_in_use | given_inputs.item_zones | given_inputs.fm_zones
    assert plan.zones <= allowed
    assert given_inputs.zones_in_use <= plan.zones, "what plays and its post-roll keep their relays"


@given(plan_inputs())
def test_an_item_whose_audio_is_missing_closes_no_relay_of_its_own(given_inputs: PlanInputs) -> None:
    plan = plan_outputs(given_inputs)
    ready = frozenset().union(*(u.zones for u in given_inputs.upcoming if u.audio_ready))
    if given_inputs.clock_trusted:
        assert ready <= plan.zones, "an item whose audio is there closes its relays at pre-roll"
    others = given_inputs.scheduled_zones | given_inputs.zones_in_use | given_inputs.item_zones
    others |= given_inputs.fm_zones | ready
    assert plan.zones <= others


@given(plan_inputs())
def test_led_shows_the_most_urgent_thing(given_inputs: PlanInputs) -> None:
    plan = plan_outputs(given_inputs)
    warnings = given_inputs.alarms | (frozenset() if given_inputs.link_up else {"link.down"})
    if _first_family(FAULT_FAMILIES, given_inputs.alarms) is not None:
        expected = _first_family(FAULT_FAMILIES, given_inputs.alarms)
    elif given_inputs.faults:
        expected = LedCode.FAULT
    elif not given_inputs.clock_trusted:
        expected = LedCode.CLOCK_UNTRUSTED
    elif given_inputs.item is not None:
        expected = LedCode.PLAYING
    elif plan.player == RELAY_FM:
        expected = LedCode.FM_RELAY
    else:
        expected = _first_family(WARNING_FAMILIES, warnings) or LedCode.OK_IDLE
    assert plan.led is expected
    assert plan.faults == given_inputs.faults


# -- properties of a run of passes ------------------------------------------------------------------


@dataclass
class Loop:
    """What ``Agent._apply`` and ``Agent._drive_player`` keep between passes."""

    closed_since: dict[str, datetime]
    current: Target
    fm_released_at: datetime | None

    def carry_out(self, plan: OutputPlan, now: datetime) -> None:
        for zone in plan.zones:
            self.closed_since.setdefault(zone, now)
        for zone in set(self.closed_since) - plan.zones:
            del self.closed_since[zone]
        if plan.player != self.current and self.current == RELAY_FM:
            self.fm_released_at = now
        self.current = plan.player

    def inputs(self, world: PlanInputs, now: datetime) -> PlanInputs:
        return replace(
            world,
            now=now,
            closed_since=dict(self.closed_since),
            current=self.current,
            fm_released_at=self.fm_released_at,
        )


@settings(max_examples=200)
@given(plan_inputs(), st.lists(ages, min_size=1, max_size=4))
def test_the_plan_changes_by_time_alone_only_at_its_wake_up(
    world: PlanInputs, steps: list[timedelta]
) -> None:
    """Between events the loop sleeps until ``wake_at`` (or its heartbeat): a plan that would
    change earlier by the passing of time alone would be carried out late."""
    loop = Loop(dict(world.closed_since), world.current, world.fm_released_at)
    now = world.now
    plan = plan_outputs(loop.inputs(world, now))
    loop.carry_out(plan, now)
    for step in steps:
        later = now + step
        if plan.wake_at is not None and later >= plan.wake_at:
            return
        again = plan_outputs(loop.inputs(world, later))
        assert (again.zones, again.player, again.led) == (plan.zones, plan.player, plan.led), (
            f"the plan changed at +{(later - world.now).total_seconds()} s without a wake-up "
            f"(wake_at {plan.wake_at})"
        )


@settings(max_examples=200)
@given(plan_inputs(), st.lists(ages, min_size=1, max_size=6))
def test_over_passes_audio_starts_only_into_settled_relays(world: PlanInputs, steps: list[timedelta]) -> None:
    """Carried out pass after pass, whatever the step: every start finds its relays closed for the
    settling time, and a relay carrying audio is never opened under it."""
    loop = Loop({}, SILENCE, None)
    now = world.now
    for step in [timedelta(0), *steps]:
        now += step
        before = dict(loop.closed_since)
        plan = plan_outputs(loop.inputs(world, now))
        if plan.player not in (SILENCE, loop.current):
            for zone in source_zones(plan, world):
                assert now - before.get(zone, now) >= world.settle
        loop.carry_out(plan, now)
        assert source_zones(plan, world) <= set(loop.closed_since)
