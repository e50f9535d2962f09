"""The agent's configuration: typed, frozen, and validated all at once.

:func:`load_config` reads the YAML file a technician edits (see ``config.example.yaml``), checks every
key and raises :class:`foundation.errors.ConfigError` listing every problem, each with its line, key path,
value, what was expected and a "did you mean" for near misses.  Defaults live on the dataclasses, so
code and tests can also build a :class:`Config` directly.  The generic reader that collects the
problems and the kinds of value it converts live in :mod:`foundation.config_reader`; docs/CONFIG.md is the
reference a technician reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from fm_receiver import sample_rates  # the demodulator's own rule, without numpy
from foundation import config_reader as read
from foundation import units
from foundation.units import ClockWindow
from foundation.yaml_source import (
    NO_VALUE,
    YamlDocument,
    format_key_path,
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
    cache_max: int = 2_000_000_000  # bytes of downloaded audio kept under dir/audio


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
    fault_pin: int | None = None  # BCM number of the amplifier's fault output, if wired
    fault_active_high: bool = False  # the fault output is low while the amplifier is in fault


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
class CentralConfig:
    """The link to the central server (docs/PROTOCOL.md); absent: the box runs on its own."""

    mqtt_url: str  # mqtt://host:port or mqtts://host:port
    signing_public_key_files: tuple[Path, ...]
    api_url: str | None = None
    username: str | None = None
    password_file: Path | None = None  # the secret is read from here when connecting, never printed
    ca_file: Path | None = None  # TLS trust anchor for mqtts://; the system's when absent
    groups: tuple[str, ...] = ()
    telemetry_interval: timedelta = timedelta(seconds=60)  # a telemetry sample this often
    # Signed time from the central server (agent/central_time.py), asked only with an api_url:
    time_max_round_trip: timedelta = timedelta(seconds=2)  # a slower answer says too little
    time_tolerance: timedelta = timedelta(seconds=2)  # the most the clock may be off and be trusted
    time_set_clock: bool = True  # step a clock found off by more, from a good answer (needs root)
    manifest_poll: timedelta = timedelta(minutes=5)  # the HTTP backstop to the retained notice

    @property
    def tls(self) -> bool:
        return self.mqtt_url.startswith("mqtts://")

    @property
    def host_port(self) -> tuple[str, int]:
        rest = self.mqtt_url.split("://", 1)[1]
        host, _, port = rest.rpartition(":")
        return host, int(port)


@dataclass(frozen=True)
class ModemConfig:
    port: str  # the modem's AT port, e.g. /dev/ttyUSB2
    baud: int = 115200


@dataclass(frozen=True)
class MainsConfig:
    pin: int  # BCM number of the "mains present" input
    active_high: bool = True  # the input is high while mains is present


@dataclass(frozen=True)
class HealthConfig:
    """What the agent watches besides itself (docs/OPERATIONS.md, "Alarms"); absent: not watched."""

    modem: ModemConfig | None = None
    mains: MainsConfig | None = None


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
    central: CentralConfig | None = None
    health: HealthConfig = HealthConfig()

    @property
    def all_zones(self) -> tuple[str, ...]:
        """The amplifier (zone) names, in configuration order."""
        return tuple(amplifier.name for amplifier in self.gpio.amplifiers)


def load_config(path: Path) -> Config:
    """Load and validate the configuration at ``path``; raises ConfigError listing every problem."""
    return read.load_file(path, _config)


def load_config_text(text: str, path: Path) -> Config:
    """Like :func:`load_config` for text in memory that pretends to live at ``path``."""
    return read.load_text(text, path, _config)


def parse_config(document: YamlDocument) -> Config:
    """Validate an already loaded document; relative paths are taken from its directory."""
    return read.parse_document(document, _config)


def _gain(value: object, text: str) -> float | None:
    if text == "auto":
        return None
    return read.number(0, 50, "dB").convert(value, text)


_PIN = read.whole(0, 27, "a BCM GPIO pin number from 0 to 27")
_VOLUME = read.whole(0, 100, "a volume from 0 to 100 (percent)")
_DEVICE_ID = read.text_matching(
    "a device id such as xa-quang-son-01 (lowercase letters, digits and '-', 3 to 64 characters)",
    r"[a-z0-9-]{3,64}",
)
_ZONE_NAME = read.text_matching(
    "a zone name such as zone-1 (lowercase letters, digits, '-' and '_', up to 32)", r"[a-z0-9_-]{1,32}"
)
_MQTT_URL = read.text_matching(
    "mqtt://host:port or mqtts://host:port (TLS)", r"mqtts?://[A-Za-z0-9.-]+:[0-9]{1,5}"
)
_HTTP_URL = read.text_matching("an http:// or https:// URL", r"https?://\S+")
_GROUP = read.text_matching(
    "a group name such as xa-quang-son (lowercase letters, digits and '-', 1 to 64)", r"[a-z0-9-]{1,64}"
)
_SERIAL_PORT = read.text_matching("a serial port such as /dev/ttyUSB2")
_TELEMETRY_INTERVAL = read.duration(timedelta(seconds=1), timedelta(hours=1), timedelta(seconds=60))
_ROUND_TRIP = read.duration(timedelta(milliseconds=100), timedelta(seconds=30), timedelta(seconds=2))
_TIME_TOLERANCE = read.duration(timedelta(milliseconds=100), timedelta(minutes=10), timedelta(seconds=2))
_OFFSET = read.frequency(-1_000_000, 1_000_000, signed=True)
_DEEMPHASIS = {"50us": timedelta(microseconds=50), "75us": timedelta(microseconds=75)}
_RTLSDR_RANGES = ((225_001, 300_000), (900_001, 3_200_000))  # what the RTL2832U can sample at


# -- sections -------------------------------------------------------------------------------------


def _config(reader: read.Reader) -> Config:
    # Sections are read in the order of config.example.yaml, which is also the order "known keys" lists.
    root = reader.root()
    device = _device(root.section("device"))
    storage = _storage(root.section("storage"), reader.base)
    audio = _audio(root.section("audio"))
    gpio, amplifiers_sound = _gpio(root.section("gpio"))
    schedule = _schedule(root.section("schedule"), reader.base)
    clock = ClockConfig(root.section("clock").get("require_sync", read.BOOL, True))
    control = ControlConfig(
        root.section("control").get("socket", read.file_path(reader.base, "a path"), _CONTROL.socket)
    )
    logging = LoggingConfig(root.section("logging").get("level", read.choice(LogLevel), "info"))
    fm = _fm(root.section("fm"), reader.base, gpio.amplifiers if amplifiers_sound else None)
    if fm.backend == "serial":
        _check_relay_pin(root, gpio, fm.serial.audio_relay_pin)
    central = _central(root, reader.base)
    health = _health(root.section("health"))
    _check_input_pins(root, gpio, fm, health)
    return Config(
        reader.document.path, device, gpio, storage=storage, audio=audio, schedule=schedule, clock=clock,
        control=control, logging=logging, fm=fm, central=central, health=health,
    )  # fmt: skip


def _storage(section: read.Section, base: Path) -> StorageConfig:
    return StorageConfig(
        section.get("dir", read.file_path(base, "a directory"), _STORAGE.dir),
        section.get("cache_max", read.size(10**7, 10**13, _STORAGE.cache_max), _STORAGE.cache_max),
    )


def _central(root: read.Section, base: Path) -> CentralConfig | None:
    present = root.data.get("central") is not None
    section = root.section("central")
    mqtt_url = section.get("mqtt_url", _MQTT_URL, "", required=present)
    api_url = section.optional("api_url", _HTTP_URL)
    username = section.optional("username", read.text_matching("a user name"))
    password_file = section.optional("password_file", read.file_path(base, "the path of a file"))
    ca_file = section.optional("ca_file", read.file_path(base, "the path of a PEM file"))
    keys = section.get_list(
        "signing_public_key_files",
        read.file_path(base, "the path of a PEM Ed25519 public key"),
        (),
        "a list of PEM public key files",
        empty="at least one key: commands are accepted only with a valid signature",
    )
    if present and "signing_public_key_files" not in section.data:
        section.missing("signing_public_key_files", "a list of PEM Ed25519 public key files")
    groups = section.get_list("groups", _GROUP, (), "a list of group names such as xa-quang-son")
    default = CentralConfig("", ())
    interval = section.get("telemetry_interval", _TELEMETRY_INTERVAL, default.telemetry_interval)
    round_trip = section.get("time_max_round_trip", _ROUND_TRIP, default.time_max_round_trip)
    tolerance = section.get("time_tolerance", _TIME_TOLERANCE, default.time_tolerance)
    set_clock = section.get("time_set_clock", read.BOOL, default.time_set_clock)
    poll = section.get("manifest_poll", read.duration(timedelta(seconds=10), timedelta(days=1), _POLL), _POLL)
    if not present:
        return None
    return CentralConfig(
        mqtt_url, keys, api_url, username, password_file, ca_file, groups, interval, round_trip, tolerance,
        set_clock, poll,
    )  # fmt: skip


def _device(section: read.Section) -> DeviceConfig:
    default = DeviceConfig("")
    return DeviceConfig(
        id=section.get("id", _DEVICE_ID, "", required=True),
        timezone=section.get("timezone", read.TIME_ZONE, default.timezone),
    )


def _audio(section: read.Section) -> AudioConfig:
    default = AudioConfig()
    return AudioConfig(
        backend=section.get("backend", read.choice(AudioBackend), default.backend),
        vlc_args=section.get_list(
            "vlc_args", read.text_matching("a libVLC option"), default.vlc_args, "a list of libVLC options"
        ),
        volume=section.get("volume", _VOLUME, default.volume),
    )


def _schedule(section: read.Section, base: Path) -> ScheduleConfig:
    default = ScheduleConfig()
    return ScheduleConfig(
        file=section.optional("file", read.file_path(base, "the path of the local schedule file")),
        catch_up=_duration_of(section, "catch_up", timedelta(minutes=10), default.catch_up),
        max_delay=_duration_of(section, "max_delay", timedelta(days=1), default.max_delay),
    )


def _gpio(section: read.Section) -> tuple[GpioConfig, bool]:
    """The GPIO settings, and whether every amplifier was valid (so zone names can be checked)."""
    default = GpioConfig(())
    pin_factory = section.get("pin_factory", read.choice(PinFactory), default.pin_factory)
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


def _amplifiers(section: read.Section) -> tuple[Amplifier, ...]:
    amplifiers: list[Amplifier] = []
    first: dict[object, str] = {}  # name or pin -> key path of the amplifier that has it first
    for entry in section.entries("amplifiers", "a list of amplifiers such as - {name: zone-1, pin: 17}"):
        amplifier = Amplifier(
            name=entry.get("name", _ZONE_NAME, "", required=True),
            pin=entry.get("pin", _PIN, -1, required=True),
            active_high=entry.get("active_high", read.BOOL, True),
            fault_pin=entry.optional("fault_pin", _PIN),
            fault_active_high=entry.get("fault_active_high", read.BOOL, False),
        )
        for key, value in (("name", amplifier.name), ("pin", amplifier.pin)):
            if (key, value) in first:
                hint = f"already used by {first[(key, value)]}"
                entry.report(key, value, "is used twice", f"a {key} no other amplifier has", hint)
            elif value not in ("", -1):
                first[(key, value)] = format_key_path(entry.path)
        amplifiers.append(amplifier)
    return tuple(amplifiers)


def _fm(section: read.Section, base: Path, amplifiers: tuple[Amplifier, ...] | None) -> FmConfig:
    """``amplifiers`` is None when they were wrong: zone names are then not checked."""
    default = FmConfig()
    backend = section.get("backend", read.choice(FmBackend), default.backend)
    frequency = section.optional("frequency", read.frequency(87_500_000, 108_000_000))
    if backend != "none" and section.data.get("frequency") is None:
        section.missing("frequency", f"the station's frequency, e.g. 99.1MHz (fm.backend is {backend})")
    deemphasis = section.get("deemphasis", read.choice(_DEEMPHASIS), "50us")
    zone_names = tuple(amp.name for amp in amplifiers or ())
    zone = read.choice(zone_names, "an amplifier name") if amplifiers is not None else _ZONE_NAME
    return FmConfig(
        backend=backend,
        frequency=frequency,
        deemphasis=_DEEMPHASIS[deemphasis],
        relay_hours=section.get_list(
            "relay_hours", read.CLOCK_WINDOW, (), "a list of windows such as [05:00-21:00]"
        ),
        fallback_on_link_down=section.get("fallback_on_link_down", read.BOOL, default.fallback_on_link_down),
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


def _squelch(section: read.Section) -> SquelchConfig:
    default = SquelchConfig()
    squelch = SquelchConfig(
        open_snr_db=section.get("open_snr_db", read.number(0, 60, "dB"), default.open_snr_db),
        close_snr_db=section.get("close_snr_db", read.number(0, 60, "dB"), default.close_snr_db),
        min_level_dbfs=section.get("min_level_dbfs", read.number(-120, 0, "dBFS"), default.min_level_dbfs),
        hold=_duration_of(section, "hold", timedelta(minutes=1), default.hold),
    )
    if squelch.close_snr_db >= squelch.open_snr_db:
        key = "close_snr_db" if "close_snr_db" in section.data else "open_snr_db"
        expected = f"close_snr_db below open_snr_db ({squelch.open_snr_db:g}) so that the relay does not flap"
        reason = "is not below open_snr_db" if key == "close_snr_db" else "is not above close_snr_db"
        section.report(key, section.data.get(key, NO_VALUE), reason, expected)
    return squelch


def _rtlsdr(section: read.Section) -> RtlSdrConfig:
    default = RtlSdrConfig()
    device_index = section.get("device_index", read.whole(0, 31), default.device_index)
    rate = _sample_rate_of(section, _RTLSDR_RATE, default.sample_rate)
    rtlsdr = RtlSdrConfig(
        device_index=device_index,
        sample_rate=rate or default.sample_rate,
        gain=section.get("gain", read.Kind("auto, or a gain from 0 to 50 (dB)", _gain), default.gain),
        ppm=section.get("ppm", read.whole(-500, 500, "a correction from -500 to 500 (ppm)"), default.ppm),
        center_offset=section.get("center_offset", _OFFSET, default.center_offset),
    )
    _check_offset(section, "center_offset", rtlsdr.center_offset, rate)
    return rtlsdr


def _serial(section: read.Section) -> SerialTunerConfig:
    default = SerialTunerConfig()
    return SerialTunerConfig(
        port=section.get("port", read.text_matching("a serial port such as /dev/ttyUSB0"), default.port),
        baudrate=section.get(
            "baudrate", read.whole(300, 4_000_000, "a baud rate such as 9600"), default.baudrate
        ),
        audio_relay_pin=section.get("audio_relay_pin", _PIN, default.audio_relay_pin),
    )


def _iq_file(section: read.Section, base: Path, *, required: bool) -> IqFileConfig:
    default = IqFileConfig()
    path = section.optional("path", read.file_path(base, "the path of a recorded IQ file"))
    fmt = section.get("format", read.choice(IqFormat), default.format)
    rate = _sample_rate_of(section, _IQ_FILE_RATE, default.sample_rate)
    iq_file = IqFileConfig(
        path=path,
        format=fmt,
        sample_rate=rate or default.sample_rate,
        offset=section.get("offset", _OFFSET, default.offset),
        loop=section.get("loop", read.BOOL, default.loop),
    )
    if required and section.data.get("path") is None:
        section.missing("path", "the path of a recorded IQ file (fm.backend is iq_file)")
    _check_offset(section, "offset", iq_file.offset, rate)
    return iq_file


def _demodulated_rate(ranges: tuple[tuple[int, int], ...] = (), device: str = "") -> read.Kind[int]:
    """Samples per second the FM demodulator accepts (it is asked), within ``device``'s ``ranges``."""
    accepted = tuple(rate for rate in sample_rates.SUPPORTED_SAMPLE_RATES if _within(rate, ranges))

    def convert(value: object, text: str) -> int:
        rate = read.rate_value(value, text)
        if _within(rate, ranges) and sample_rates.is_supported_rate(rate):
            return rate
        nearest = " or ".join(str(r) for r in sample_rates.nearest_supported_rates(rate, accepted))
        reason = (
            "is out of range" if not _within(rate, ranges) else "is not a rate the FM receiver can demodulate"
        )
        raise ValueError(reason, f"nearest: {nearest}")

    spans = " or ".join(f"{low} to {high}" for low, high in ranges)
    where = f", within the {device}'s {spans}" if ranges else ""
    return read.Kind(f"samples per second, {sample_rates.RATE_RULE}{where}, e.g. 1024000", convert)


def _within(rate: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return not ranges or any(low <= rate <= high for low, high in ranges)


def _sample_rate_of(section: read.Section, kind: read.Kind[int], default: int) -> int | None:
    """The rate at ``sample_rate``, or None when it was refused (its offset cannot be checked then)."""
    before = len(section.reader.problems)
    rate = section.get("sample_rate", kind, default)
    return rate if len(section.reader.problems) == before else None


def _check_offset(section: read.Section, key: str, offset: int, sample_rate: int | None) -> None:
    """The station's channel must lie inside the sampled band, as the demodulator requires."""
    if sample_rate is None:
        return
    limit = sample_rates.max_offset_hz(sample_rate)
    if abs(offset) > limit:
        at_most = units.format_frequency(max(int(limit), 0))
        expected = f"at most ±{at_most} at {sample_rate} samples per second"
        section.report(key, offset, "puts the station outside the sampled band", expected)


def _check_relay_pin(root: read.Section, gpio: GpioConfig, pin: int) -> None:
    users = {amp.pin: f"amplifier {amp.name}" for amp in gpio.amplifiers}
    if gpio.status_led is not None:
        users[gpio.status_led] = "the status LED"
    if pin in users:
        path = ("fm", "serial", "audio_relay_pin")
        root.reader.add(path, pin, "a pin that no amplifier or LED uses", None, f"is the pin of {users[pin]}")


def _health(section: read.Section) -> HealthConfig:
    modem_section, mains_section = section.section("modem"), section.section("mains")
    modem = mains = None
    if section.data.get("modem") is not None:
        modem = ModemConfig(
            port=modem_section.get("port", _SERIAL_PORT, "", required=True),
            baud=modem_section.get("baud", read.whole(300, 4_000_000, "a baud rate such as 115200"), 115200),
        )
    if section.data.get("mains") is not None:
        mains = MainsConfig(
            pin=mains_section.get("pin", _PIN, -1, required=True),
            active_high=mains_section.get("active_high", read.BOOL, True),
        )
    return HealthConfig(modem, mains)


def _check_input_pins(root: read.Section, gpio: GpioConfig, fm: FmConfig, health: HealthConfig) -> None:
    """An input pin (amplifier fault, mains) that an output or another input already uses is refused."""
    users: dict[int, str] = {amp.pin: f"amplifier {amp.name}" for amp in gpio.amplifiers}
    if gpio.status_led is not None:
        users[gpio.status_led] = "the status LED"
    if fm.backend == "serial":
        users.setdefault(fm.serial.audio_relay_pin, "fm.serial.audio_relay_pin")
    inputs: list[tuple[tuple[str | int, ...], int, str]] = [
        (
            ("gpio", "amplifiers", index, "fault_pin"),
            amp.fault_pin,
            f"the fault input of amplifier {amp.name}",
        )
        for index, amp in enumerate(gpio.amplifiers)
        if amp.fault_pin is not None
    ]
    if health.mains is not None and health.mains.pin >= 0:
        inputs.append((("health", "mains", "pin"), health.mains.pin, "the mains input"))
    for path, pin, user in inputs:
        if pin in users:
            root.reader.add(path, pin, "a pin that nothing else uses", None, f"is the pin of {users[pin]}")
        else:
            users[pin] = user


def _duration_of(section: read.Section, key: str, high: timedelta, default: timedelta) -> timedelta:
    return section.get(key, read.duration(timedelta(0), high, default), default)


_STORAGE = StorageConfig()
_POLL = timedelta(minutes=5)
_CONTROL = ControlConfig()
_RTLSDR_RATE = _demodulated_rate(_RTLSDR_RANGES, "RTL-SDR")
_IQ_FILE_RATE = _demodulated_rate()
