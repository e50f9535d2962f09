"""Amplifier relays, watched inputs and the status LED: the only module that imports gpiozero.

Pins are BCM numbers.  The pin factory is chosen by name (``gpio.pin_factory`` in the config) and
passed to every device; the global ``Device.pin_factory`` is never set, so tests and the agent can
use different factories side by side.

Status LED codes (what a crew at the pole sees):

=================  ==============================================  =====================================
code               pattern                                         meaning
=================  ==============================================  =====================================
STARTING           on 0.1 s / off 0.1 s, fast flicker              agent starting, not ready yet
OK_IDLE            on 0.1 s / off 2.9 s, a short flash every 3 s   healthy, nothing playing
PLAYING            steady on                                       a bulletin or file is playing
FM_RELAY           on 0.5 s / off 0.5 s, even blink                relaying an FM station
CLOCK_UNTRUSTED    on 0.2 s / off 0.2 s, fast blink                clock not trusted: schedule held
NO_LINK            on 0.1 s / off 0.9 s, a short flash every 1 s   idle, link to the central server down
FAULT              two quick flashes (0.15 s), then 1.4 s dark     another fault (FM source): see logs
PLAYER_HUNG        long flash (0.6 s), 1 short, then 1.5 s dark    the audio player is hung or restarting
NO_AUDIO_DEVICE    long flash, 2 short                             no sound card
AMP_FAULT          long flash, 3 short                             an amplifier reports a fault
STORAGE            long flash, 4 short                             storage full or read-only
MAINS_LOST         long flash, 5 short                             on the 12-24 V backup: mains lost
MODEM_DEAD         long flash, 6 short                             the 4G modem does not answer
CACHE_BEHIND       long flash, 7 short                             audio needed soon is not downloaded
NO_FM_CARRIER      long flash, 8 short                             FM wanted now, but no carrier
OFF                dark                                            agent stopped (or no power)
=================  ==============================================  =====================================

The "long flash then N short" codes all share one grammar so that a crew counts the short flashes;
docs/OPERATIONS.md lists them with what to do, and ``agent.output_plan`` which one wins.
"""

from __future__ import annotations

import enum
import importlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from foundation.errors import HardwareError, LoaError

logger = logging.getLogger(__name__)

_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory", "install python3-lgpio (apt) or lgpio (pip)"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory", "install python3-rpi-lgpio (apt)"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory", "install pigpio and start pigpiod"),
    "native": ("gpiozero.pins.native", "NativeFactory", "it needs a Raspberry Pi"),
    "mock": ("gpiozero.pins.mock", "MockFactory", "install gpiozero"),
}


class UnknownZoneError(LoaError, KeyError):
    """A zone name that no configured amplifier has (a caller's bug, not a hardware fault)."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0])


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory called ``name``: mock, lgpio, rpigpio, pigpio or native."""
    if name not in _FACTORIES:
        raise HardwareError(f"unknown pin factory {name!r}: expected one of {', '.join(_FACTORIES)}")
    module_name, class_name, fix = _FACTORIES[name]
    try:
        factory_class = getattr(importlib.import_module(module_name), class_name)
        return factory_class()
    except Exception as exc:  # gpiozero raises its own classes, ImportError, OSError, RuntimeError
        raise HardwareError(f"pin factory {name!r} is not available: {fix} ({exc})") from exc


def _output(what: str, pin: int, active_high: bool, factory: Any) -> Any:
    try:
        return DigitalOutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=factory)
    except Exception as exc:  # PinInvalidPin, GPIOPinInUse, OSError from the chip driver
        raise HardwareError(f"{what} on pin {pin} cannot be opened: {exc}") from exc


class AmplifierRelays:
    """One relay per zone; closing a relay powers that zone's amplifier."""

    def __init__(
        self,
        amplifiers: Sequence[tuple[str, int, bool]],
        factory: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._pins: dict[str, int] = {}
        self._devices: dict[str, Any] = {}
        self.history: list[tuple[float, str, bool]] = []
        try:
            for zone, pin, active_high in amplifiers:
                self._devices[zone] = _output(f"relay {zone}", pin, active_high, factory)
                self._pins[zone] = pin
        except HardwareError:
            self.close()
            raise
        logger.info("relays ready: %s", ", ".join(f"{z} on pin {p}" for z, p in self._pins.items()))

    @property
    def zones(self) -> list[str]:
        return list(self._devices)

    def apply(self, zones_on: Iterable[str]) -> list[str]:
        """Close the relays of ``zones_on``, open all others; return the zones that switched."""
        wanted = set(zones_on)
        unknown = wanted - self._devices.keys()
        if unknown:
            raise UnknownZoneError(f"no amplifier for zone(s) {', '.join(sorted(unknown))}")
        changed = [zone for zone, device in self._devices.items() if bool(device.value) != (zone in wanted)]
        for zone in changed:
            self._switch(zone, zone in wanted)
        return changed

    def states(self) -> dict[str, bool]:
        """Zone name -> relay closed."""
        return {zone: bool(device.value) for zone, device in self._devices.items()}

    def close(self) -> None:
        """Open every relay, then release the pins."""
        for zone, device in self._devices.items():
            if device.value:
                self._switch(zone, False)
            device.close()
        self._devices.clear()

    def _switch(self, zone: str, closed: bool) -> None:
        device = self._devices[zone]
        if closed:
            device.on()
        else:
            device.off()
        self.history.append((self._clock(), zone, closed))
        logger.info("relay %s on pin %d %s", zone, self._pins[zone], "closed" if closed else "opened")


class InputLine:
    """A watched input (mains present, an amplifier's fault output): ``active`` is the level that
    means it (``active_high``); the pin is pulled towards the other level, so a broken wire reads
    as not active."""

    def __init__(self, what: str, pin: int, active_high: bool, factory: Any) -> None:
        self.what = what
        self.pin = pin
        try:
            self._device = DigitalInputDevice(pin, pull_up=not active_high, pin_factory=factory)
        except Exception as exc:  # PinInvalidPin, GPIOPinInUse, OSError from the chip driver
            raise HardwareError(f"{what} input on pin {pin} cannot be opened: {exc}") from exc

    @property
    def active(self) -> bool:
        return bool(self._device.value)

    def close(self) -> None:
        self._device.close()


class LedCode(enum.Enum):
    """What the status LED says; see the module docstring for the patterns."""

    OFF = "off"
    STARTING = "starting"
    OK_IDLE = "ok-idle"
    PLAYING = "playing"
    FM_RELAY = "fm-relay"
    CLOCK_UNTRUSTED = "clock-untrusted"
    NO_LINK = "no-link"
    FAULT = "fault"
    PLAYER_HUNG = "player-hung"
    NO_AUDIO_DEVICE = "no-audio-device"
    AMP_FAULT = "amp-fault"
    STORAGE = "storage"
    MAINS_LOST = "mains-lost"
    MODEM_DEAD = "modem-dead"
    CACHE_BEHIND = "cache-behind"
    NO_FM_CARRIER = "no-fm-carrier"


_BLINKS: dict[LedCode, tuple[float, float]] = {
    LedCode.STARTING: (0.1, 0.1),
    LedCode.OK_IDLE: (0.1, 2.9),
    LedCode.FM_RELAY: (0.5, 0.5),
    LedCode.CLOCK_UNTRUSTED: (0.2, 0.2),
    LedCode.NO_LINK: (0.1, 0.9),
}
FAULT_STEP = 0.15  # seconds per step of the stepped patterns below
FAULT_PATTERN = (True, False, True, *([False] * 10))  # two 0.15 s flashes, then 1.5 s dark in all


def counted_pattern(count: int) -> tuple[bool, ...]:
    """A long flash (0.6 s), a 0.3 s gap, ``count`` short flashes (0.15 s on, 0.3 s off), 1.5 s dark."""
    return (True,) * 4 + (False,) * 2 + (True, False, False) * count + (False,) * 8


COUNTED: dict[LedCode, int] = {
    LedCode.PLAYER_HUNG: 1,
    LedCode.NO_AUDIO_DEVICE: 2,
    LedCode.AMP_FAULT: 3,
    LedCode.STORAGE: 4,
    LedCode.MAINS_LOST: 5,
    LedCode.MODEM_DEAD: 6,
    LedCode.CACHE_BEHIND: 7,
    LedCode.NO_FM_CARRIER: 8,
}
_STEPPED: dict[LedCode, tuple[bool, ...]] = {
    LedCode.FAULT: FAULT_PATTERN,
    **{code: counted_pattern(count) for code, count in COUNTED.items()},
}


def led_pattern(code: LedCode) -> tuple[str, tuple[Any, ...]]:
    """What ``code`` looks like: a blink's on and off times, steps of ``FAULT_STEP`` seconds
    (on or off), steady on, or dark."""
    if code in _BLINKS:
        return "blink", _BLINKS[code]
    if code in _STEPPED:
        return "steps", _STEPPED[code]
    return ("steady on", ()) if code == LedCode.PLAYING else ("dark", ())


class StatusLed:
    """The status LED; ``show`` changes the pattern only when the code changes."""

    def __init__(self, pin: int, factory: Any) -> None:
        self._pin = pin
        self._device = _output("status LED", pin, True, factory)
        self.code = LedCode.OFF

    def show(self, code: LedCode) -> None:
        """Display ``code``; gpiozero's background thread keeps the pattern going."""
        if code == self.code:
            return
        logger.info("status LED on pin %d: %s", self._pin, code.value)
        self.code = code
        self._device.source = None
        kind, pattern = led_pattern(code)
        if kind == "blink":
            on_time, off_time = pattern
            self._device.blink(on_time=on_time, off_time=off_time, n=None, background=True)
        elif kind == "steps":
            self._device.off()  # ends a running blink, which a new source would not
            self._device.source_delay = FAULT_STEP
            self._device.source = itertools.cycle(pattern)
        elif kind == "steady on":
            self._device.on()
        else:
            self._device.off()

    def close(self) -> None:
        """Turn the LED off and release its pin; safe to call twice."""
        if self._device.closed:
            return
        self._device.source = None
        self._device.off()  # gpiozero's close() leaves the pin at its last level
        self._device.close()
        self.code = LedCode.OFF
