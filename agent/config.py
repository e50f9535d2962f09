"""The agent's configuration: typed, frozen, and validated all at once.

:func:`load_config` reads the YAML file a technician edits (see ``config.example.yaml``), checks every
key and raises :class:`agent.errors.ConfigError` listing every problem, each with its line, key path,
value, what was expected and a "did you mean" for near misses.  Defaults live on the dataclasses, so
code and tests can also build a :class:`Config` directly.
"""

from __future__ import annotations

import enum
import functools
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo

from agent import durations
from agent.durations import ClockWindow
from agent.errors import ConfigError
from agent.yaml_source import (
    MISSING,
    NO_VALUE,
    KeyPath,
    Problem,
    YamlDocument,
    did_you_mean,
    format_key_path,
    load_yaml,
    load_yaml_text,
)

AudioBackend = Literal["vlc", "null"]
PinFactory = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]
LogLevel = Literal["debug", "info", "warning", "error"]
FmBackend = Literal["none", "rtlsdr", "serial", "iq_file"]
IqFormat = Literal["cu8", "cs16", "cf32"]


@dataclass(frozen=True)
class DeviceConfig:
    id: str  # lowercase letters, digits and '-', e.g. xa-quang-son-01
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))


@dataclass(frozen=True)
class StorageConfig:
    dir: Path = Path("/var/lib/loa")


@dataclass(frozen=True)
class AudioConfig:
    backend: AudioBackend = "vlc"
    vlc_args: tuple[str, ...] = ("--aout=alsa",)
    volume: int = 80  # percent


@dataclass(frozen=True)
class Amplifier:
    name: str  # the zone name schedules use
    pin: int  # BCM number of the relay that powers it
    active_high: bool = True


@dataclass(frozen=True)
class GpioConfig:
    amplifiers: tuple[Amplifier, ...]
    pin_factory: PinFactory = "lgpio"
    preroll: timedelta = timedelta(seconds=2)  # relays close this long before a start
    postroll: timedelta = timedelta(seconds=10)  # and open this long after the end
    status_led: int | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    file: Path | None = None
    catch_up: timedelta = timedelta(seconds=5)
    max_delay: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class ClockConfig:
    require_sync: bool = True


@dataclass(frozen=True)
class ControlConfig:
    socket: Path = Path("/run/loa/agent.sock")


@dataclass(frozen=True)
class LoggingConfig:
    level: LogLevel = "info"


@dataclass(frozen=True)
class SquelchConfig:
    open_snr_db: float = 15.0
    close_snr_db: float = 10.0
    min_level_dbfs: float = -50.0
    hold: timedelta = timedelta(seconds=2)


@dataclass(frozen=True)
class RtlSdrConfig:
    device_index: int = 0
    sample_rate: int = 1_024_000  # samples per second
    gain: float | None = None  # dB; None: automatic gain
    ppm: int = 0
    center_offset: int = 250_000  # Hz; the dongle tunes this far from the station


@dataclass(frozen=True)
class SerialTunerConfig:
    port: str = "/dev/ttyUSB0"
    baudrate: int = 9600
    audio_relay_pin: int = 22  # BCM pin of the relay that routes the tuner's audio to the amplifiers


@dataclass(frozen=True)
class IqFileConfig:
    path: Path | None = None  # required when fm.backend is iq_file
    format: IqFormat = "cu8"
    sample_rate: int = 1_024_000
    offset: int = 250_000  # Hz: station frequency minus the recording's centre frequency
    loop: bool = True


@dataclass(frozen=True)
class FmConfig:
    backend: FmBackend = "none"
    frequency: int | None = None  # Hz; required unless backend is none
    deemphasis: timedelta = timedelta(microseconds=50)
    relay_hours: tuple[ClockWindow, ...] = ()
    fallback_on_link_down: bool = True
    zones: tuple[str, ...] = ()  # load_config puts every amplifier here when the key is absent
    volume: int = 70
    squelch: SquelchConfig = SquelchConfig()
    rtlsdr: RtlSdrConfig = RtlSdrConfig()
    serial: SerialTunerConfig = SerialTunerConfig()
    iq_file: IqFileConfig = IqFileConfig()


@dataclass(frozen=True)
class Config:
    source: Path  # the file this was loaded from
    device: DeviceConfig
    gpio: GpioConfig
    storage: StorageConfig = StorageConfig()
    audio: AudioConfig = AudioConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    clock: ClockConfig = ClockConfig()
    control: ControlConfig = ControlConfig()
    logging: LoggingConfig = LoggingConfig()
    fm: FmConfig = FmConfig()

    @property
    def all_zones(self) -> tuple[str, ...]:
        """The amplifier (zone) names, in configuration order."""
        return tuple(amplifier.name for amplifier in self.gpio.amplifiers)


def load_config(path: Path) -> Config:
    """Load and validate the configuration at ``path``; raises ConfigError listing every problem."""
    return parse_config(load_yaml(path))


def load_config_text(text: str, path: Path) -> Config:
    """Like :func:`load_config` for text in memory that pretends to live at ``path``."""
    return parse_config(load_yaml_text(text, str(path)))


def parse_config(document: YamlDocument) -> Config:
    """Validate an already loaded document; relative paths are taken from its directory."""
    if not isinstance(document.data, dict):
        raise ConfigError([*document.problems])
    reader = _Reader(document)
    config = _config(reader)
    problems = reader.finish()
    if problems:
        raise ConfigError([*problems])
    return config


# -- reading --------------------------------------------------------------------------------------

T = TypeVar("T")


class _Bad(enum.Enum):
    """What a conversion returns once it has reported its problem."""

    BAD = 0


_BAD = _Bad.BAD


@dataclass(frozen=True)
class _Kind(Generic[T]):
    """What a scalar key holds: its description and a converter.

    The converter gets the value and its text as the file spells it, and raises
    ``ValueError(reason[, hint])`` when the value is wrong.
    """

    expected: str
    convert: Callable[[object, str], T]


class _Reader:
    """Reads one document, collecting every problem instead of stopping at the first."""

    def __init__(self, document: YamlDocument) -> None:
        self.document = document
        self.base = document.path.absolute().parent
        self.problems: list[Problem] = list(document.problems)
        self.sections: list[_Section] = []

    def add(
        self, path: KeyPath, value: object, expected: str, hint: str | None = None, reason: str | None = None
    ) -> None:
        if value is not MISSING and value is not NO_VALUE:
            text = self.document.text_of(path)
            value = text if text is not None else value
        self.problems.append(self.document.problem(path, value, expected, hint, reason))

    def finish(self) -> list[Problem]:
        """Report unknown keys, then every problem in file order."""
        for section in self.sections:
            section.report_unknown()
        return sorted(self.problems, key=lambda problem: problem.line or 0)


class _Section:
    """One mapping of the document: typed getters that record which keys are known."""

    def __init__(self, reader: _Reader, path: KeyPath, data: object, *, broken: bool = False) -> None:
        self.reader = reader
        self.path = path
        self.data: dict[str, object] = data if isinstance(data, dict) else {}
        self.broken = broken  # already reported as wrong: do not pile "missing" problems on top
        self.known: list[str] = []
        reader.sections.append(self)

    def get(self, key: str, kind: _Kind[T], default: T, *, required: bool = False) -> T:
        """The converted value, or ``default`` when absent or wrong (the latter is reported)."""
        self.known.append(key)
        if key not in self.data:
            if required:
                self.missing(key, kind.expected)
            return default
        result = self.convert((*self.path, key), self.data[key], kind)
        return default if isinstance(result, _Bad) else result

    def optional(self, key: str, kind: _Kind[T]) -> T | None:
        """The converted value, or None when absent, empty (``key:`` or ``null``) or wrong."""
        self.known.append(key)
        if self.data.get(key) is None:
            return None
        result = self.convert((*self.path, key), self.data[key], kind)
        return None if isinstance(result, _Bad) else result

    def get_list(
        self, key: str, kind: _Kind[T], default: tuple[T, ...], expected: str, *, empty: str | None = None
    ) -> tuple[T, ...]:
        """A list whose items are each converted; wrong items are reported and left out.

        ``empty``, if given, refuses an empty list and says what to write instead.
        """
        value = self._list(key, expected, required=False)
        if value is None:
            return default
        if not value and empty:
            self.report(key, value, "is an empty list", expected, empty)
        results: list[T] = []
        for index, item in enumerate(value):
            result = self.convert((*self.path, key, index), item, kind)
            if not isinstance(result, _Bad):
                results.append(result)
        return tuple(results)

    def entries(self, key: str, expected: str) -> list[_Section]:
        """The mappings of a required, non-empty list of mappings (``gpio.amplifiers``)."""
        value = self._list(key, expected, required=True)
        if value is None:
            return []
        if not value:
            self.report(key, value, "is an empty list", expected)
        sections = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                sections.append(_Section(self.reader, (*self.path, key, index), item, broken=self.broken))
            else:
                item_path = (*self.path, key, index)
                self.reader.add(
                    item_path, item, "a mapping such as {name: ..., pin: ...}", None, "is not a mapping"
                )
        return sections

    def section(self, key: str) -> _Section:
        """The sub-mapping at ``key``; absent or empty (``key:``) reads as an empty one, so that
        its required keys are reported one by one."""
        self.known.append(key)
        value = self.data.get(key)
        if isinstance(value, dict):
            return _Section(self.reader, (*self.path, key), value, broken=self.broken)
        if value is not None:
            self.report(key, value, "is not a mapping", "a mapping of settings (indented 'key: value' lines)")
        return _Section(self.reader, (*self.path, key), {}, broken=self.broken or value is not None)

    def convert(self, path: KeyPath, value: object, kind: _Kind[T]) -> T | _Bad:
        text = self.reader.document.text_of(path)
        if value is None and not text:  # "key:" with nothing after it
            self.reader.add(path, NO_VALUE, kind.expected, None, "is empty")
            return _BAD
        if isinstance(value, list | dict):
            shape = "is a list" if isinstance(value, list) else "is a mapping"
            self.reader.add(path, value, kind.expected, None, shape)
            return _BAD
        text = str(value) if text is None else text
        try:
            return kind.convert(value, text)
        except ValueError as exc:
            reason = str(exc.args[0]).removeprefix(f"{text!r} ")
            hint = exc.args[1] if len(exc.args) > 1 else None
            self.reader.add(path, text, kind.expected, hint, reason)
            return _BAD

    def missing(self, key: str, expected: str) -> None:
        if not self.broken:
            self.reader.add((*self.path, key), MISSING, expected)

    def report(self, key: str, value: object, reason: str, expected: str, hint: str | None = None) -> None:
        self.reader.add((*self.path, key), value, expected, hint, reason)

    def report_unknown(self) -> None:
        for key in self.data:
            if key not in self.known:
                hint = did_you_mean(key, self.known) or "known keys: " + ", ".join(self.known)
                self.reader.add((*self.path, key), NO_VALUE, "", hint, "unknown key")

    def _list(self, key: str, expected: str, *, required: bool) -> list[object] | None:
        self.known.append(key)
        if key not in self.data:
            if required:
                self.missing(key, expected)
            return None
        value = self.data[key]
        if isinstance(value, list):
            return value
        hint = f"write [{value}]" if isinstance(value, str) else None
        self.report(key, value, "is not a list" if value is not None else "is empty", expected, hint)
        return None


# -- kinds of value -------------------------------------------------------------------------------


def _whole(low: int, high: int, expected: str | None = None) -> _Kind[int]:
    def convert(value: object, text: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("is not a whole number")
        if not low <= value <= high:
            raise ValueError("is out of range")
        return value

    return _Kind(expected or f"a whole number from {low} to {high}", convert)


def _number(low: float, high: float, unit: str) -> _Kind[float]:
    def convert(value: object, text: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if not low <= value <= high:  # also refuses .nan
            raise ValueError("is out of range")
        return float(value)

    return _Kind(f"a number from {low:g} to {high:g} ({unit})", convert)


def _check_bool(value: object, text: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


def _text(expected: str, pattern: str = r".*\S.*") -> _Kind[str]:
    def convert(value: object, text: str) -> str:
        if not isinstance(value, str):
            raise ValueError("is not text", "put it in quotes")
        if not re.fullmatch(pattern, value):
            raise ValueError("does not fit")
        return value

    return _Kind(expected, convert)


def _choice(options: Any, expected: str | None = None) -> _Kind[Any]:
    """One of ``options`` (a Literal alias or names); the value's text is compared, so ``null`` fits."""
    choices = tuple(get_args(options) or options)

    def convert(value: object, text: str) -> str:
        if text not in choices:
            raise ValueError("is not allowed", did_you_mean(text, choices))
        return text

    return _Kind(expected or "one of " + ", ".join(choices), convert)


def _duration(low: timedelta, high: timedelta, example: timedelta) -> _Kind[timedelta]:
    def convert(value: object, text: str) -> timedelta:
        duration = durations.parse_duration(text)
        if not low <= duration <= high:
            raise ValueError("is out of range")
        return duration

    span = f"from {durations.format_duration(low)} to {durations.format_duration(high)}"
    example_text = durations.format_duration(example)
    return _Kind(f"a duration with a unit (ms, s, min, h) {span}, e.g. {example_text}", convert)


def _frequency(low: int, high: int, *, signed: bool = False) -> _Kind[int]:
    def convert(value: object, text: str) -> int:
        hertz = durations.parse_frequency(text, signed=signed)
        if not low <= hertz <= high:
            raise ValueError("is out of range")
        return hertz

    span = f"from {durations.format_frequency(low)} to {durations.format_frequency(high)}"
    return _Kind(f"a frequency with a unit (Hz, kHz, MHz) {span}", convert)


def _sample_rate(*ranges: tuple[int, int]) -> _Kind[int]:
    def convert(value: object, text: str) -> int:
        rate = value if isinstance(value, int) and not isinstance(value, bool) else None
        rate = durations.parse_frequency(text) if rate is None else rate
        if not any(low <= rate <= high for low, high in ranges):
            raise ValueError("is out of range")
        return rate

    spans = " or ".join(f"{low} to {high}" for low, high in ranges)
    return _Kind(f"samples per second, {spans}, e.g. 1024000", convert)


def _path(base: Path, expected: str) -> _Kind[Path]:
    def convert(value: object, text: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("is not a path")
        return base / value  # an absolute value replaces base

    return _Kind(expected, convert)


def _window(value: object, text: str) -> ClockWindow:
    return durations.parse_clock_window(text)


def _gain(value: object, text: str) -> float | None:
    if text == "auto":
        return None
    return _number(0, 50, "dB").convert(value, text)


def _timezone(value: object, text: str) -> ZoneInfo:
    if text not in _zone_names():
        raise ValueError("is not a known time zone", did_you_mean(text, _zone_names()))
    return ZoneInfo(text)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


_BOOL = _Kind("true or false", _check_bool)
_PIN = _whole(0, 27, "a BCM GPIO pin number from 0 to 27")
_VOLUME = _whole(0, 100, "a volume from 0 to 100 (percent)")
_DEVICE_ID = _text(
    "a device id such as xa-quang-son-01 (lowercase letters, digits and '-', 3 to 64 characters)",
    r"[a-z0-9-]{3,64}",
)
_ZONE_NAME = _text(
    "a zone name such as zone-1 (lowercase letters, digits, '-' and '_', up to 32)", r"[a-z0-9_-]{1,32}"
)
_WINDOW = _Kind("a daily window of local time such as 05:00-21:30 (may cross midnight: 22:00-02:00)", _window)
_OFFSET = _frequency(-1_000_000, 1_000_000, signed=True)
_DEEMPHASIS = {"50us": timedelta(microseconds=50), "75us": timedelta(microseconds=75)}
_FM_CHANNEL_HALF_WIDTH = 100_000  # Hz either side of the station that must lie inside the sampled band


# -- sections -------------------------------------------------------------------------------------


def _config(reader: _Reader) -> Config:
    # Sections are read in the order of config.example.yaml, which is also the order "known keys" lists.
    root = _Section(reader, (), reader.document.data)
    device = _device(root.section("device"))
    storage = StorageConfig(
        root.section("storage").get("dir", _path(reader.base, "a directory"), _STORAGE.dir)
    )
    audio = _audio(root.section("audio"))
    gpio, amplifiers_sound = _gpio(root.section("gpio"))
    schedule = _schedule(root.section("schedule"), reader.base)
    clock = ClockConfig(root.section("clock").get("require_sync", _BOOL, True))
    control = ControlConfig(
        root.section("control").get("socket", _path(reader.base, "a path"), _CONTROL.socket)
    )
    logging = LoggingConfig(root.section("logging").get("level", _choice(LogLevel), "info"))
    fm = _fm(root.section("fm"), reader.base, gpio.amplifiers if amplifiers_sound else None)
    if fm.backend == "serial":
        _check_relay_pin(root, gpio, fm.serial.audio_relay_pin)
    return Config(
        reader.document.path, device, gpio, storage=storage, audio=audio, schedule=schedule, clock=clock,
        control=control, logging=logging, fm=fm,
    )  # fmt: skip


def _device(section: _Section) -> DeviceConfig:
    default = DeviceConfig("")
    return DeviceConfig(
        id=section.get("id", _DEVICE_ID, "", required=True),
        timezone=section.get(
            "timezone", _Kind("a time zone name such as Asia/Ho_Chi_Minh", _timezone), default.timezone
        ),
    )


def _audio(section: _Section) -> AudioConfig:
    default = AudioConfig()
    return AudioConfig(
        backend=section.get("backend", _choice(AudioBackend), default.backend),
        vlc_args=section.get_list(
            "vlc_args", _text("a libVLC option"), default.vlc_args, "a list of libVLC options"
        ),
        volume=section.get("volume", _VOLUME, default.volume),
    )


def _schedule(section: _Section, base: Path) -> ScheduleConfig:
    default = ScheduleConfig()
    return ScheduleConfig(
        file=section.optional("file", _path(base, "the path of the local schedule file")),
        catch_up=_duration_of(section, "catch_up", timedelta(minutes=10), default.catch_up),
        max_delay=_duration_of(section, "max_delay", timedelta(days=1), default.max_delay),
    )


def _gpio(section: _Section) -> tuple[GpioConfig, bool]:
    """The GPIO settings, and whether every amplifier was valid (so zone names can be checked)."""
    default = GpioConfig(())
    pin_factory = section.get("pin_factory", _choice(PinFactory), default.pin_factory)
    before = len(section.reader.problems)
    amplifiers = _amplifiers(section)
    amplifiers_sound = len(section.reader.problems) == before and not section.broken
    preroll = _duration_of(section, "preroll", timedelta(minutes=1), default.preroll)
    postroll = _duration_of(section, "postroll", timedelta(minutes=10), default.postroll)
    status_led = section.optional("status_led", _PIN)
    clash = next((amp for amp in amplifiers if amp.pin == status_led), None)
    if clash is not None:
        reason = f"is the pin of amplifier {clash.name}"
        section.report("status_led", status_led, reason, "a pin that no amplifier uses")
    return GpioConfig(amplifiers, pin_factory, preroll, postroll, status_led), amplifiers_sound


def _amplifiers(section: _Section) -> tuple[Amplifier, ...]:
    amplifiers: list[Amplifier] = []
    first: dict[object, str] = {}  # name or pin -> key path of the amplifier that has it first
    for entry in section.entries("amplifiers", "a list of amplifiers such as - {name: zone-1, pin: 17}"):
        amplifier = Amplifier(
            name=entry.get("name", _ZONE_NAME, "", required=True),
            pin=entry.get("pin", _PIN, -1, required=True),
            active_high=entry.get("active_high", _BOOL, True),
        )
        for key, value in (("name", amplifier.name), ("pin", amplifier.pin)):
            if (key, value) in first:
                hint = f"already used by {first[(key, value)]}"
                entry.report(key, value, "is used twice", f"a {key} no other amplifier has", hint)
            elif value not in ("", -1):
                first[(key, value)] = format_key_path(entry.path)
        amplifiers.append(amplifier)
    return tuple(amplifiers)


def _fm(section: _Section, base: Path, amplifiers: tuple[Amplifier, ...] | None) -> FmConfig:
    """``amplifiers`` is None when they were wrong: zone names are then not checked."""
    default = FmConfig()
    backend = section.get("backend", _choice(FmBackend), default.backend)
    frequency = section.optional("frequency", _frequency(87_500_000, 108_000_000))
    if backend != "none" and section.data.get("frequency") is None:
        section.missing("frequency", f"the station's frequency, e.g. 99.1MHz (fm.backend is {backend})")
    deemphasis = section.get("deemphasis", _choice(_DEEMPHASIS), "50us")
    zone_names = tuple(amp.name for amp in amplifiers or ())
    zone = _choice(zone_names, "an amplifier name") if amplifiers is not None else _ZONE_NAME
    return FmConfig(
        backend=backend,
        frequency=frequency,
        deemphasis=_DEEMPHASIS[deemphasis],
        relay_hours=section.get_list("relay_hours", _WINDOW, (), "a list of windows such as [05:00-21:00]"),
        fallback_on_link_down=section.get("fallback_on_link_down", _BOOL, default.fallback_on_link_down),
        zones=section.get_list(
            "zones",
            zone,
            zone_names,
            "a list of amplifier names",
            empty="leave 'zones' out for every amplifier",
        ),
        volume=section.get("volume", _VOLUME, default.volume),
        squelch=_squelch(section.section("squelch")),
        rtlsdr=_rtlsdr(section.section("rtlsdr")),
        serial=_serial(section.section("serial")),
        iq_file=_iq_file(section.section("iq_file"), base, required=backend == "iq_file"),
    )


def _squelch(section: _Section) -> SquelchConfig:
    default = SquelchConfig()
    squelch = SquelchConfig(
        open_snr_db=section.get("open_snr_db", _number(0, 60, "dB"), default.open_snr_db),
        close_snr_db=section.get("close_snr_db", _number(0, 60, "dB"), default.close_snr_db),
        min_level_dbfs=section.get("min_level_dbfs", _number(-120, 0, "dBFS"), default.min_level_dbfs),
        hold=_duration_of(section, "hold", timedelta(minutes=1), default.hold),
    )
    if squelch.close_snr_db >= squelch.open_snr_db:
        key = "close_snr_db" if "close_snr_db" in section.data else "open_snr_db"
        expected = f"close_snr_db below open_snr_db ({squelch.open_snr_db:g}) so that the relay does not flap"
        reason = "is not below open_snr_db" if key == "close_snr_db" else "is not above close_snr_db"
        section.report(key, section.data.get(key, NO_VALUE), reason, expected)
    return squelch


def _rtlsdr(section: _Section) -> RtlSdrConfig:
    default = RtlSdrConfig()
    rtlsdr = RtlSdrConfig(
        device_index=section.get("device_index", _whole(0, 31), default.device_index),
        sample_rate=section.get("sample_rate", _RTLSDR_RATE, default.sample_rate),
        gain=section.get("gain", _Kind("auto, or a gain from 0 to 50 (dB)", _gain), default.gain),
        ppm=section.get("ppm", _whole(-500, 500, "a correction from -500 to 500 (ppm)"), default.ppm),
        center_offset=section.get("center_offset", _OFFSET, default.center_offset),
    )
    _check_offset(section, "center_offset", rtlsdr.center_offset, rtlsdr.sample_rate)
    return rtlsdr


def _serial(section: _Section) -> SerialTunerConfig:
    default = SerialTunerConfig()
    return SerialTunerConfig(
        port=section.get("port", _text("a serial port such as /dev/ttyUSB0"), default.port),
        baudrate=section.get(
            "baudrate", _whole(300, 4_000_000, "a baud rate such as 9600"), default.baudrate
        ),
        audio_relay_pin=section.get("audio_relay_pin", _PIN, default.audio_relay_pin),
    )


def _iq_file(section: _Section, base: Path, *, required: bool) -> IqFileConfig:
    default = IqFileConfig()
    iq_file = IqFileConfig(
        path=section.optional("path", _path(base, "the path of a recorded IQ file")),
        format=section.get("format", _choice(IqFormat), default.format),
        sample_rate=section.get("sample_rate", _sample_rate((200_000, 20_000_000)), default.sample_rate),
        offset=section.get("offset", _OFFSET, default.offset),
        loop=section.get("loop", _BOOL, default.loop),
    )
    if required and section.data.get("path") is None:
        section.missing("path", "the path of a recorded IQ file (fm.backend is iq_file)")
    _check_offset(section, "offset", iq_file.offset, iq_file.sample_rate)
    return iq_file


def _check_offset(section: _Section, key: str, offset: int, sample_rate: int) -> None:
    limit = sample_rate // 2 - _FM_CHANNEL_HALF_WIDTH
    if abs(offset) > limit:
        expected = f"at most ±{durations.format_frequency(max(limit, 0))} at {sample_rate} samples per second"
        section.report(key, offset, "puts the station outside the sampled band", expected)


def _check_relay_pin(root: _Section, gpio: GpioConfig, pin: int) -> None:
    users = {amp.pin: f"amplifier {amp.name}" for amp in gpio.amplifiers}
    if gpio.status_led is not None:
        users[gpio.status_led] = "the status LED"
    if pin in users:
        path = ("fm", "serial", "audio_relay_pin")
        root.reader.add(path, pin, "a pin that no amplifier or LED uses", None, f"is the pin of {users[pin]}")


def _duration_of(section: _Section, key: str, high: timedelta, default: timedelta) -> timedelta:
    return section.get(key, _duration(timedelta(0), high, default), default)


_STORAGE = StorageConfig()
_CONTROL = ControlConfig()
_RTLSDR_RATE = _sample_rate((225_001, 300_000), (900_001, 3_200_000))
