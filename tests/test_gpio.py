"""Relays and status LED on gpiozero's own MockFactory (MockPin records every state it takes)."""

from __future__ import annotations

import importlib.util
import itertools
import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

import drivers.gpio as gpio_module
from drivers.gpio import AmplifierRelays, InputLine, LedCode, StatusLed, UnknownZoneError, make_pin_factory
from foundation.errors import HardwareError, LoaError

AMPLIFIERS = [("zone-1", 17, True), ("zone-2", 27, False), ("zone-3", 22, True)]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory()
    yield mock
    mock.reset()


@pytest.fixture
def relays(factory: MockFactory) -> Iterator[AmplifierRelays]:
    ticks = itertools.count(100.0)
    built = AmplifierRelays(AMPLIFIERS, factory, clock=lambda: next(ticks))
    yield built
    built.close()


def _levels(factory: MockFactory, pin: int) -> list[bool]:
    return [bool(state.state) for state in factory.pin(pin).states]


def _took_states(factory: MockFactory, pin: int, count: int, timeout: float) -> bool:
    """Wait until the pin has taken ``count`` states (its first included); False at the deadline."""
    deadline = time.monotonic() + timeout
    while len(factory.pin(pin).states) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_relays_start_open_whatever_the_polarity(relays: AmplifierRelays, factory: MockFactory) -> None:
    assert relays.states() == {"zone-1": False, "zone-2": False, "zone-3": False}
    assert factory.pin(17).state is False  # active high: open is low
    assert factory.pin(27).state is True  # active low: open is high


def test_apply_drives_each_pin_by_its_polarity(relays: AmplifierRelays, factory: MockFactory) -> None:
    assert relays.apply(["zone-1", "zone-2"]) == ["zone-1", "zone-2"]
    assert factory.pin(17).state is True
    assert factory.pin(27).state is False
    assert factory.pin(22).state is False
    assert relays.states() == {"zone-1": True, "zone-2": True, "zone-3": False}


def test_apply_switches_only_what_changes(relays: AmplifierRelays, factory: MockFactory) -> None:
    relays.apply(["zone-1"])
    assert relays.apply(["zone-1"]) == []
    assert relays.apply(["zone-1", "zone-3"]) == ["zone-3"]
    assert relays.apply([]) == ["zone-1", "zone-3"]
    assert _levels(factory, 17) == [False, True, False]  # no pulse on the unchanged apply
    assert _levels(factory, 27) == [False, True]  # zone-2: driven open (high) when opened, then untouched
    assert relays.history == [
        (100.0, "zone-1", True),
        (101.0, "zone-3", True),
        (102.0, "zone-1", False),
        (103.0, "zone-3", False),
    ]


def test_unknown_zone_is_refused_without_switching(relays: AmplifierRelays) -> None:
    with pytest.raises(UnknownZoneError, match="zone-9") as caught:
        relays.apply(["zone-1", "zone-9"])
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, LoaError)
    assert relays.history == []


def test_close_opens_every_relay_then_releases_the_pins(factory: MockFactory) -> None:
    relays = AmplifierRelays(AMPLIFIERS, factory)
    relays.apply(["zone-1", "zone-2", "zone-3"])
    relays.close()
    assert [(zone, closed) for _, zone, closed in relays.history[3:]] == [
        ("zone-1", False),
        ("zone-2", False),
        ("zone-3", False),
    ]
    assert _levels(factory, 27)[-2:] == [False, True]  # active low: opened (high) before release
    assert factory.pin(17).function == "input"
    AmplifierRelays(AMPLIFIERS, factory).close()  # the pins are free again


def test_a_pin_that_cannot_be_opened_names_zone_and_pin(factory: MockFactory) -> None:
    with pytest.raises(HardwareError, match="relay zone-b on pin 17"):
        AmplifierRelays([("zone-a", 17, True), ("zone-b", 17, True)], factory)
    with pytest.raises(HardwareError, match="relay zone-x on pin 99"):
        AmplifierRelays([("zone-x", 99, True)], factory)
    AmplifierRelays([("zone-a", 17, True)], factory).close()  # zone-a was released on failure


def test_make_pin_factory_by_name() -> None:
    assert isinstance(make_pin_factory("mock"), MockFactory)
    with pytest.raises(HardwareError, match="unknown pin factory 'gpiod'"):
        make_pin_factory("gpiod")


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio is installed here")
def test_missing_pin_library_says_what_to_install() -> None:
    with pytest.raises(HardwareError, match="pin factory 'lgpio' is not available: install python3-lgpio"):
        make_pin_factory("lgpio")


@pytest.fixture
def led(factory: MockFactory) -> Iterator[StatusLed]:
    built = StatusLed(5, factory)
    yield built
    built.close()


def test_playing_is_steady_on(led: StatusLed, factory: MockFactory) -> None:
    led.show(LedCode.PLAYING)
    assert _levels(factory, 5) == [False, True]
    # every blinking pattern changes within 0.5 s (FM_RELAY's on time): steady means no change
    assert not _took_states(factory, 5, 3, timeout=0.6)


def test_clock_untrusted_blinks_fast(led: StatusLed, factory: MockFactory) -> None:
    led.show(LedCode.CLOCK_UNTRUSTED)
    assert _took_states(factory, 5, 5, timeout=5)
    states = factory.pin(5).states
    assert [s.state for s in states[:5]] == [False, True, False, True, False]
    assert all(0.15 <= s.timestamp <= 0.35 for s in states[2:5])  # 0.2 s phases


def test_fault_flashes_twice_then_pauses(led: StatusLed, factory: MockFactory) -> None:
    led.show(LedCode.FAULT)
    assert _took_states(factory, 5, 6, timeout=5)  # two flashes, the pause, the next flash
    assert _levels(factory, 5)[:6] == [False, True, False, True, False, True]
    assert factory.pin(5).states[5].timestamp >= 1.4  # dark for ten 0.15 s steps in between


def test_same_code_does_not_restart_the_pattern(led: StatusLed, factory: MockFactory) -> None:
    led.show(LedCode.OK_IDLE)
    assert _took_states(factory, 5, 3, timeout=5)  # past the 0.1 s flash, into the 2.9 s pause
    led.show(LedCode.OK_IDLE)
    assert not _took_states(factory, 5, 4, timeout=0.3)  # a restarted pattern flashes at once
    assert _levels(factory, 5) == [False, True, False]
    led.show(LedCode.PLAYING)
    assert factory.pin(5).state is True


def test_close_turns_the_led_off_and_frees_the_pin(factory: MockFactory) -> None:
    led = StatusLed(5, factory)
    led.show(LedCode.PLAYING)
    led.close()
    assert factory.pin(5).state is False
    StatusLed(5, factory).close()


def test_counted_codes_flash_long_then_count(led: StatusLed, factory: MockFactory) -> None:
    led.show(LedCode.AMP_FAULT)  # a long flash, then 3 short ones
    assert _took_states(factory, 5, 10, timeout=8)  # off, long, gap, 3 x (on, off), the next long
    states = factory.pin(5).states
    assert [s.state for s in states[:10]] == [False, True, False, True, False, True, False, True, False, True]
    long_on, gap, short_on = states[2].timestamp, states[3].timestamp, states[4].timestamp
    assert 0.5 <= long_on <= 0.8 and 0.2 <= gap <= 0.45 and 0.1 <= short_on <= 0.3
    assert states[9].timestamp >= 1.3  # dark between the last short flash and the next long one


def test_every_led_code_has_its_own_pattern() -> None:
    patterns = {code: gpio_module.led_pattern(code) for code in LedCode}
    assert len(set(patterns.values())) == len(LedCode)
    assert [gpio_module.COUNTED[code] for code in gpio_module.COUNTED] == list(range(1, 9))


def test_inputs_read_their_active_level_and_pull_to_the_other(factory: MockFactory) -> None:
    mains = InputLine("mains", 25, True, factory)  # high while present, pulled down
    fault = InputLine("amplifier zone-1 fault", 23, False, factory)  # low in fault, pulled up
    try:
        assert (mains.active, fault.active) == (False, False)  # nothing wired: no mains, no fault
        factory.pin(25).drive_high()
        factory.pin(23).drive_low()
        assert (mains.active, fault.active) == (True, True)
        with pytest.raises(HardwareError, match="mains input on pin 25 cannot be opened"):
            InputLine("mains", 25, True, factory)
    finally:
        mains.close()
        fault.close()
