"""agent.config and foundation.units: the example loads, every kind of mistake is reported well."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import typing
from datetime import time, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent import daemon
from agent.config import (
    Amplifier,
    Config,
    GpioConfig,
    HealthConfig,
    MainsConfig,
    ModemConfig,
    load_config,
    load_config_text,
)
from fm_receiver.dsp import FmDemodulator
from fm_receiver.sample_rates import SUPPORTED_SAMPLE_RATES, FmParameterError
from foundation.errors import ConfigError
from foundation.units import (
    format_clock_window,
    format_duration,
    format_frequency,
    format_size,
    in_clock_window,
    parse_clock_window,
    parse_duration,
    parse_frequency,
    parse_size,
)
from foundation.yaml_source import load_yaml

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"

MINIMAL = """\
device:
  id: xa-quang-son-01
gpio:
  amplifiers:
    - {name: zone-1, pin: 17}
    - {name: zone-2, pin: 18, active_high: false}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return [str(problem) for problem in caught.value.problems]


def the_problem(tmp_path: Path, text: str, line: int, key_path: str) -> str:
    """The only problem in ``text``; it must carry the file name, line and key path."""
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'agent.yaml'}:{line}: {key_path}: "), found[0]
    return found[0].split(f"{key_path}: ", 1)[1]


# -- the example and the defaults -----------------------------------------------------------------


def test_example_loads_with_the_documented_values() -> None:
    config = load_config(EXAMPLE)
    assert config.source == EXAMPLE
    assert config.device.id == "xa-quang-son-01"
    assert config.device.timezone.key == "Asia/Ho_Chi_Minh"
    assert config.storage.dir == Path("/var/lib/loa")
    assert (config.audio.backend, config.audio.vlc_args) == ("vlc", ("--aout=alsa",))
    assert config.gpio.pin_factory == "lgpio"
    assert config.gpio.amplifiers[0] == Amplifier("zone-1", 17, True, fault_pin=23)
    assert config.health == HealthConfig(ModemConfig("/dev/ttyUSB2", 115200), MainsConfig(25, True))
    assert config.schedule.file == Path("/etc/loa/schedule.yaml")
    assert config.fm.backend == "none"
    assert config.fm.frequency == 99_100_000
    assert config.fm.relay_hours == ((time(5), time(21)),)
    assert config.fm.rtlsdr.gain is None
    assert config.fm.iq_file.offset == 250_000


def _dataclass_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for name, kind in typing.get_type_hints(cls).items():
        if name == "source":
            continue
        keys.add(prefix + name)
        kind = Amplifier if name == "amplifiers" else kind
        optional = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        kind = optional[0] if len(optional) == 1 and dataclasses.is_dataclass(optional[0]) else kind
        if dataclasses.is_dataclass(kind):
            keys |= _dataclass_keys(kind, f"{prefix}{name}.")
    return keys


def _document_keys(value: object, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(value, list):
        for item in value:
            keys |= _document_keys(item, prefix)
    elif isinstance(value, dict):
        for key, child in value.items():
            keys.add(prefix + key)
            keys |= _document_keys(child, f"{prefix}{key}.")
    return keys


def test_example_shows_every_key_with_a_comment() -> None:
    document = load_yaml(EXAMPLE)
    assert _document_keys(document.data) == _dataclass_keys(Config)
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for key_path, number in document.lines.items():
        line, above = lines[number - 1], lines[number - 2]
        if len(key_path) > 1 and isinstance(key_path[-1], str) and not line.lstrip().startswith("- "):
            assert above.lstrip().startswith("#"), f"line {number} has no comment above it: {line}"


def test_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.all_zones == ("zone-1", "zone-2")
    assert config.gpio.amplifiers[1] == Amplifier("zone-2", 18, False)
    assert config.gpio == GpioConfig(config.gpio.amplifiers)
    assert config.fm.zones == ("zone-1", "zone-2")
    assert dataclasses.replace(config.fm, zones=()) == type(config.fm)()
    for name in ("storage", "audio", "schedule", "clock", "control", "logging"):
        assert getattr(config, name) == type(getattr(config, name))(), name
    assert config.gpio.preroll == timedelta(seconds=2)
    assert config.schedule.max_delay == timedelta(minutes=15)


def test_relative_paths_are_taken_from_the_config_files_directory(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "storage: {dir: state}\nschedule: {file: ../schedule.yaml}\nfm:\n  iq_file: {path: fm.cu8}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.storage.dir == tmp_path / "state"
    assert config.schedule.file == tmp_path / "../schedule.yaml"
    assert config.fm.iq_file.path == tmp_path / "fm.cu8"


def test_full_fm_settings_are_typed(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent("""\
        audio: {backend: null}
        fm:
          backend: rtlsdr
          frequency: 88.5mhz
          deemphasis: 75us
          relay_hours: ["22:00-02:00", "05:00-06:30"]
          zones: [zone-2]
          squelch: {open_snr_db: 12.5, close_snr_db: 8, hold: 1500ms}
          rtlsdr: {sample_rate: 2.048MHz, gain: 29.7, ppm: -3, center_offset: -300kHz}
        """)
    config = load_config(write(tmp_path, text))
    assert config.audio.backend == "null"
    fm = config.fm
    assert (fm.frequency, fm.deemphasis, fm.zones) == (88_500_000, timedelta(microseconds=75), ("zone-2",))
    assert fm.relay_hours == ((time(22), time(2)), (time(5), time(6, 30)))
    assert (fm.squelch.open_snr_db, fm.squelch.close_snr_db, fm.squelch.hold) == (
        12.5,
        8.0,
        timedelta(seconds=1.5),
    )
    assert (fm.rtlsdr.sample_rate, fm.rtlsdr.gain, fm.rtlsdr.ppm) == (2_048_000, 29.7, -3)
    assert fm.rtlsdr.center_offset == -300_000


# -- single mistakes: each message names the file, the line and the key path ----------------------


def test_missing_unit(tmp_path: Path) -> None:
    message = the_problem(tmp_path, MINIMAL + "  preroll: 2\n", 7, "gpio.preroll")
    assert message.startswith("'2' has no unit: expected a duration with a unit (ms, s, min, h)")
    assert message.endswith("e.g. 2s")


def test_unknown_key_suggests_the_near_one(tmp_path: Path) -> None:
    message = the_problem(tmp_path, MINIMAL + "  preroll_ms: 500\n", 7, "gpio.preroll_ms")
    assert message == "unknown key (did you mean 'preroll'?)"
    message = the_problem(tmp_path, MINIMAL + "audio:\n  volumme: 50\n", 8, "audio.volumme")
    assert message == "unknown key (did you mean 'volume'?)"
    message = the_problem(tmp_path, MINIMAL + "colour: red\n", 7, "colour")
    assert message.startswith("unknown key (known keys: device, storage, audio, gpio, schedule")


def test_misspelt_section_is_unknown_and_its_required_keys_missing(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL.replace("device:", "devcie:"))
    assert found == [
        f"{tmp_path / 'agent.yaml'}:1: device.id: missing: expected a device id such as xa-quang-son-01 "
        "(lowercase letters, digits and '-', 3 to 64 characters)",
        f"{tmp_path / 'agent.yaml'}:1: devcie: unknown key (did you mean 'device'?)",
    ]


@pytest.mark.parametrize(
    ("extra", "line", "key_path", "start"),
    [
        (
            "audio: {volume: loud}",
            7,
            "audio.volume",
            "'loud' is not a whole number: expected a volume from 0 to 100",
        ),
        ("audio: {volume: 150}", 7, "audio.volume", "'150' is out of range: expected a volume from 0 to 100"),
        ("audio: {volume: 50.5}", 7, "audio.volume", "'50.5' is not a whole number"),
        (
            "audio: {vlc_args: --aout=alsa}",
            7,
            "audio.vlc_args",
            "'--aout=alsa' is not a list: expected a list",
        ),
        ("audio: {vlc_args: [--x, 3]}", 7, "audio.vlc_args[1]", "'3' is not text: expected a libVLC option"),
        ("audio: [vlc]", 7, "audio", "'[vlc]' is not a mapping: expected a mapping of settings"),
        ("clock: {require_sync: maybe}", 7, "clock.require_sync", "'maybe' is not true or false"),
        ("device: {id: x}", 7, "device", "duplicate key 'device' (first at line 1)"),
        ("logging: {level: }", 7, "logging.level", "is empty: expected one of debug, info, warning, error"),
        ("logging: {level: verbose}", 7, "logging.level", "'verbose' is not allowed: expected one of debug"),
        (
            "schedule: {catch_up: 11min}",
            7,
            "schedule.catch_up",
            "'11min' is out of range: expected a duration",
        ),
        ("schedule: {max_delay: -5min}", 7, "schedule.max_delay", "'-5min' is negative: expected a duration"),
        (
            "schedule: {max_delay: 5 mins}",
            7,
            "schedule.max_delay",
            "'5 mins' has an unknown unit 'mins' (write 'min')",
        ),
        ("schedule: {file: ''}", 7, "schedule.file", "'' is not a path"),
        ("fm: {frequency: 99.1}", 7, "fm.frequency", "'99.1' has no unit: expected a frequency with a unit"),
        ("fm: {frequency: 120MHz}", 7, "fm.frequency", "'120MHz' is out of range: expected a frequency"),
        ("fm: {deemphasis: 50}", 7, "fm.deemphasis", "'50' is not allowed: expected one of 50us, 75us"),
        (
            "fm: {relay_hours: [5-21]}",
            7,
            "fm.relay_hours[0]",
            "'5-21' is not a window of the form HH:MM-HH:MM",
        ),
        (
            "fm: {relay_hours: ['05:00-05:00']}",
            7,
            "fm.relay_hours[0]",
            "'05:00-05:00' starts and ends at the same",
        ),
        ("fm: {zones: []}", 7, "fm.zones", "'[]' is an empty list: expected a list of amplifier names"),
        ("fm: {squelch: {close_snr_db: 20}}", 7, "fm.squelch.close_snr_db", "'20' is not below open_snr_db"),
        ("fm: {squelch: {min_level_dbfs: .nan}}", 7, "fm.squelch.min_level_dbfs", "'.nan' is out of range"),
        (
            "fm: {rtlsdr: {gain: loud}}",
            7,
            "fm.rtlsdr.gain",
            "'loud' is not a number: expected auto, or a gain",
        ),
        ("fm: {rtlsdr: {sample_rate: 500000}}", 7, "fm.rtlsdr.sample_rate", "'500000' is out of range"),
        (
            "fm: {rtlsdr: {center_offset: 600kHz}}",
            7,
            "fm.rtlsdr.center_offset",
            "'600kHz' puts the station outside",
        ),
        (
            "fm: {iq_file: {format: u8}}",
            7,
            "fm.iq_file.format",
            "'u8' is not allowed: expected one of cu8, cs16",
        ),
    ],
)
def test_wrong_values(tmp_path: Path, extra: str, line: int, key_path: str, start: str) -> None:
    message = the_problem(tmp_path, MINIMAL + extra + "\n", line, key_path)
    assert message.startswith(start), message


@pytest.mark.parametrize(
    ("text", "line", "key_path", "expected"),
    [
        ("device: {timezone: Asia/Ho_Chi_Min}", 1, "device.timezone", "did you mean 'Asia/Ho_Chi_Minh'?"),
        ("device: {id: Xa Quang Son}", 1, "device.id", "'Xa Quang Son' does not fit: expected a device id"),
        ("device: {id: 12345}", 1, "device.id", "'12345' is not text: expected a device id"),
    ],
)
def test_device_mistakes(tmp_path: Path, text: str, line: int, key_path: str, expected: str) -> None:
    id_line = "" if "id:" in text else ", id: xa-1"
    body = text.replace("}", id_line + "}") + "\n" + MINIMAL.split("\n", 2)[2]
    assert expected in the_problem(tmp_path, body, line, key_path)


# -- numbers and true/false in quotes: YAML reads them as text ------------------------------------


@pytest.mark.parametrize(
    ("extra", "line", "key_path", "message"),
    [
        (
            "audio: {volume: '80'}",
            7,
            "audio.volume",
            """"'80'" is text, not a number: expected a volume from 0 to 100 (percent) """
            "(remove the quotes: 80)",
        ),
        (
            'clock:\n  require_sync: "true"',
            8,
            "clock.require_sync",
            """'"true"' is text, not true or false: expected true or false (remove the quotes: true)""",
        ),
        (
            'fm:\n  serial: {baudrate: "9600"}',
            8,
            "fm.serial.baudrate",
            """'"9600"' is text, not a number: expected a baud rate such as 9600 (remove the quotes: 9600)""",
        ),
        (
            'fm:\n  rtlsdr: {sample_rate: "1024000"}',
            8,
            "fm.rtlsdr.sample_rate",
            """'"1024000"' is text, not a number: expected samples per second, 240000 or 256000 times 1 """
            "to 12, within the RTL-SDR's 225001 to 300000 or 900001 to 3200000, e.g. 1024000 "
            "(remove the quotes: 1024000)",
        ),
        (
            'fm:\n  iq_file: {sample_rate: "2048000"}',
            8,
            "fm.iq_file.sample_rate",
            """'"2048000"' is text, not a number""",
        ),
        ('fm:\n  rtlsdr: {gain: "29.7"}', 8, "fm.rtlsdr.gain", """'"29.7"' is text, not a number"""),
        ("fm:\n  squelch: {open_snr_db: '15'}", 8, "fm.squelch.open_snr_db", """"'15'" is text, not a"""),
        ("fm:\n  iq_file: {loop: 'yes'}", 8, "fm.iq_file.loop", """"'yes'" is text, not true or false"""),
    ],
)
def test_quoted_numbers_and_booleans_say_to_remove_the_quotes(
    tmp_path: Path, extra: str, line: int, key_path: str, message: str
) -> None:
    assert the_problem(tmp_path, MINIMAL + extra + "\n", line, key_path).startswith(message)


def test_a_quoted_pin_shows_its_quotes(tmp_path: Path) -> None:
    text = MINIMAL.replace("pin: 17", 'pin: "17"')
    message = the_problem(tmp_path, text, 5, "gpio.amplifiers[0].pin")
    assert message == (
        """'"17"' is text, not a number: expected a BCM GPIO pin number from 0 to 27 """
        "(remove the quotes: 17)"
    )


def test_quotes_are_fine_where_text_is_read_and_not_suggested_for_words(tmp_path: Path) -> None:
    text = (
        MINIMAL + 'fm:\n  relay_hours: ["05:00-21:00"]\n  rtlsdr: {sample_rate: "2.048MHz", gain: "auto"}\n'
    )
    config = load_config(write(tmp_path, text))
    assert (config.fm.rtlsdr.sample_rate, config.fm.rtlsdr.gain) == (2_048_000, None)
    message = the_problem(tmp_path, MINIMAL + 'audio: {volume: "loud"}\n', 7, "audio.volume")
    assert message == "'loud' is not a whole number: expected a volume from 0 to 100 (percent)"


# -- 'key:value' without the space: YAML reads one piece of text -----------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key_path", "write"),
    [
        ("device:\n  id:xa-01\n" + MINIMAL.split("\n", 2)[2], 2, "device.id", "id: xa-01"),
        ("device: {id:xa-01}\n" + MINIMAL.split("\n", 2)[2], 1, "device.id", "id: xa-01"),
        (MINIMAL + "storage:\n  dir:/var/lib/loa\n", 8, "storage.dir", "dir: /var/lib/loa"),
        (MINIMAL + "audio:\n  volume:80  # percent\n", 8, "audio.volume", "volume: 80"),
        (MINIMAL + "fm: {squelch: {hold:2s}}\n", 7, "fm.squelch.hold", "hold: 2s"),
        (
            MINIMAL.replace("- {name: zone-1, pin: 17}", "- name:zone-1"),
            5,
            "gpio.amplifiers[0].name",
            "name: zone-1",
        ),
        (MINIMAL.replace("pin: 17}", "pin:17}"), 5, "gpio.amplifiers[0].pin", "pin: 17"),
    ],
)
def test_missing_space_after_a_known_key(
    tmp_path: Path, text: str, line: int, key_path: str, write: str
) -> None:
    assert the_problem(tmp_path, text, line, key_path) == f"missing space after ':' (write {write!r})"


def test_missing_space_at_the_top_level(tmp_path: Path) -> None:
    assert problems(tmp_path, "storage:/var/lib/loa\n") == [
        f"{tmp_path / 'agent.yaml'}:1: storage: missing space after ':' (write 'storage: /var/lib/loa')"
    ]
    # Among other keys it is a syntax error: the line, not the one after it, is to blame.
    assert problems(tmp_path, MINIMAL + "storage:/var/lib/loa\nlogging: {level: info}\n") == [
        f"{tmp_path / 'agent.yaml'}:7:1: YAML syntax error: missing space after ':' "
        "(write 'storage: /var/lib/loa')"
    ]


def test_text_with_a_colon_is_not_taken_for_an_unknown_key(tmp_path: Path) -> None:
    message = the_problem(tmp_path, MINIMAL + "audio:\n  colour:80\n", 7, "audio")
    assert message.startswith("'colour:80' is not a mapping: expected a mapping of settings")
    message = the_problem(tmp_path, MINIMAL + "clock:\n  xa:01\n", 7, "clock")
    assert message.startswith("'xa:01' is not a mapping")


def test_a_file_that_is_not_utf8_names_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    # A comment typed in an editor set to Windows-1258 after UTF-8 text; the column counts characters.
    path.write_bytes(MINIMAL.encode() + "# Sơn ".encode() + "Hà Giang\n".encode("cp1258"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value)
        == f"{path}:7:8: the file is not UTF-8 text (it has byte 0xE0 here); save it as UTF-8"
    )
    path.write_bytes(MINIMAL.encode("utf-16"))
    with pytest.raises(ConfigError, match=r"agent\.yaml:1:1: the file is not UTF-8 text \(it is UTF-16\)"):
        load_config(path)


def test_enum_typo_suggests_the_value(tmp_path: Path) -> None:
    message = the_problem(tmp_path, MINIMAL + "  pin_factory: lgpoi\n", 7, "gpio.pin_factory")
    assert message == (
        "'lgpoi' is not allowed: expected one of mock, lgpio, rpigpio, pigpio, native (did you mean 'lgpio'?)"
    )


def test_bad_yaml_syntax_gives_the_line(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "audio:\n  volume: 80\n   backend: vlc\n")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'agent.yaml'}:9:")
    assert "YAML syntax error" in found[0]


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read: No such file or directory"):
        load_config(tmp_path / "nowhere.yaml")
    assert problems(tmp_path, "# nothing yet\n") == [
        f"{tmp_path / 'agent.yaml'}:1: file is empty: expected a mapping"
    ]
    found = problems(tmp_path, "- device\n")
    assert found == [
        f"{tmp_path / 'agent.yaml'}:1: the top level is a list: expected a mapping (key: value lines)"
    ]


# -- required keys and checks across keys --------------------------------------------------------


def test_missing_required_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, "device:\n  timezone: Asia/Ho_Chi_Minh\ngpio:\n  pin_factory: mock\n")
    file = tmp_path / "agent.yaml"
    assert found == [
        f"{file}:1: device.id: missing: expected a device id such as xa-quang-son-01 "
        "(lowercase letters, digits and '-', 3 to 64 characters)",
        f"{file}:3: gpio.amplifiers: missing: expected a list of amplifiers "
        "such as - {name: zone-1, pin: 17}",
    ]
    found = problems(
        tmp_path, "device: {id: xa-1}\ngpio:\n  amplifiers:\n    - {name: zone-1}\n    - pin: 5\n"
    )
    assert found == [
        f"{file}:4: gpio.amplifiers[0].pin: missing: expected a BCM GPIO pin number from 0 to 27",
        f"{file}:5: gpio.amplifiers[1].name: missing: expected a zone name such as zone-1 "
        "(lowercase letters, digits, '-' and '_', up to 32)",
    ]


def test_backend_specific_requirements(tmp_path: Path) -> None:
    message = the_problem(tmp_path, MINIMAL + "fm: {backend: rtlsdr}\n", 7, "fm.frequency")
    assert message == "missing: expected the station's frequency, e.g. 99.1MHz (fm.backend is rtlsdr)"
    message = the_problem(
        tmp_path, MINIMAL + "fm:\n  backend: iq_file\n  frequency: 99.1MHz\n", 7, "fm.iq_file.path"
    )
    assert message.startswith("missing: expected the path of a recorded IQ file")
    serial = MINIMAL + "fm:\n  backend: serial\n  frequency: 99.1MHz\n  serial: {audio_relay_pin: 18}\n"
    message = the_problem(tmp_path, serial, 10, "fm.serial.audio_relay_pin")
    assert message == "'18' is the pin of amplifier zone-2: expected a pin that no amplifier or LED uses"
    # The same pin is fine while the serial tuner is not in use.
    assert (
        load_config(
            write(tmp_path, serial.replace("backend: serial", "backend: none"))
        ).fm.serial.audio_relay_pin
        == 18
    )


def test_amplifier_clashes(tmp_path: Path) -> None:
    text = MINIMAL + "    - {name: zone-1, pin: 17}\n  status_led: 18\n"
    file = tmp_path / "agent.yaml"
    assert problems(tmp_path, text) == [
        f"{file}:7: gpio.amplifiers[2].name: 'zone-1' is used twice: expected a name no other amplifier has "
        "(already used by gpio.amplifiers[0])",
        f"{file}:7: gpio.amplifiers[2].pin: '17' is used twice: expected a pin no other amplifier has "
        "(already used by gpio.amplifiers[0])",
        f"{file}:8: gpio.status_led: '18' is the pin of amplifier zone-2: "
        "expected a pin that no amplifier uses",
    ]


def test_fm_zones_must_name_amplifiers(tmp_path: Path) -> None:
    message = the_problem(tmp_path, MINIMAL + "fm:\n  zones: [zone-1, zone_2]\n", 8, "fm.zones[1]")
    assert message == "'zone_2' is not allowed: expected an amplifier name (did you mean 'zone-2'?)"


def test_many_mistakes_are_reported_together_in_file_order(tmp_path: Path) -> None:
    text = """\
        device:
          id: XA
        gpio:
          amplifiers:
            - {name: zone-1, pin: 40}
          preroll: 2
          postroll: 10 s
          sttus_led: 27
        audio:
          volume: 101
        fm:
          backend: rdlsdr
          squelch: {hold: forever}
        logging: {level: loud}
        """
    found = problems(tmp_path, text)
    lines = [int(message.split("agent.yaml:")[1].split(":")[0]) for message in found]
    assert len(found) == 8, found
    assert lines == [2, 5, 6, 8, 10, 12, 13, 14]
    assert "gpio.sttus_led: unknown key (did you mean 'status_led'?)" in found[3]
    assert "fm.backend: 'rdlsdr' is not allowed" in found[5] and "did you mean 'rtlsdr'?" in found[5]


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    text = MINIMAL + "  preroll: 2s\n  postroll: 5s\n  preroll: 3s\n"
    assert the_problem(tmp_path, text, 9, "gpio.preroll") == "duplicate key 'preroll' (first at line 7)"


# -- FM sample rates: refused exactly when the demodulator refuses them ---------------------------

RATE_REFUSED = "is not a rate the FM receiver can demodulate"


@pytest.mark.parametrize(
    ("backend", "rate", "reason", "nearest"),
    [
        ("rtlsdr", "1000000", RATE_REFUSED, "960000 or 1024000"),
        ("rtlsdr", "2.5MHz", RATE_REFUSED, "2400000 or 2560000"),
        ("rtlsdr", "3200000", RATE_REFUSED, "3072000"),
        ("rtlsdr", "250000", RATE_REFUSED, "240000 or 256000"),
        ("iq_file", "1000000", RATE_REFUSED, "960000 or 1024000"),
        ("iq_file", "200000", RATE_REFUSED, "240000"),
        ("iq_file", "6.144MHz", RATE_REFUSED, "3072000"),
        # The demodulator takes 768000, but the RTL-SDR cannot sample between 300000 and 900001.
        ("rtlsdr", "768000", "is out of range", "256000 or 960000"),
    ],
)
def test_fm_sample_rates_the_receiver_refuses(
    tmp_path: Path, backend: str, rate: str, reason: str, nearest: str
) -> None:
    text = MINIMAL + f"fm:\n  {backend}: {{sample_rate: {rate}}}\n"
    message = the_problem(tmp_path, text, 8, f"fm.{backend}.sample_rate")
    assert message.startswith(
        f"'{rate}' {reason}: expected samples per second, 240000 or 256000 times 1 to 12"
    )
    assert message.endswith(f"e.g. 1024000 (nearest: {nearest})")
    assert ("RTL-SDR's 225001 to 300000 or 900001 to 3200000" in message) == (backend == "rtlsdr")
    if reason == RATE_REFUSED:  # the receiver itself refuses it: config does not invent the rule
        hertz = int(rate) if rate.isdigit() else parse_frequency(rate)
        with pytest.raises(FmParameterError, match="is not supported"):
            FmDemodulator(hertz, 0)
    # Only the rate is reported: the default offset is not checked against a rate that is wrong.


def test_fm_sample_rates_the_receiver_accepts(tmp_path: Path) -> None:
    text = MINIMAL + "fm:\n  rtlsdr: {sample_rate: 2.4MHz}\n  iq_file: {sample_rate: 768000}\n"
    config = load_config(write(tmp_path, text))
    assert (config.fm.rtlsdr.sample_rate, config.fm.iq_file.sample_rate) == (2_400_000, 768_000)
    message = the_problem(tmp_path, text.replace("768000", "240000"), 9, "fm.iq_file.offset")
    assert message == (
        "'250000' puts the station outside the sampled band: "
        "expected at most ±20kHz at 240000 samples per second"
    )


def test_check_config_refuses_a_rate_the_receiver_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, MINIMAL + "fm:\n  backend: rtlsdr\n  frequency: 99.1MHz\n  rtlsdr: {sample_rate: 1MHz}\n"
    )
    assert daemon.main(["--config", str(path), "check-config", "--config-only"]) == 2
    assert f"loa-agent: {path}:10: fm.rtlsdr.sample_rate: '1MHz' {RATE_REFUSED}" in capsys.readouterr().err
    path.write_text(path.read_text().replace("sample_rate: 1MHz", "sample_rate: 1.024MHz"))
    assert daemon.main(["--config", str(path), "check-config", "--config-only"]) == 0
    assert capsys.readouterr().out == f"{path}: valid\n"


_rate = st.one_of(
    st.sampled_from(SUPPORTED_SAMPLE_RATES),
    st.sampled_from(SUPPORTED_SAMPLE_RATES).map(lambda rate: rate + 1),
    st.integers(0, 25_000_000),
)
RTLSDR_RANGES = ((225_001, 300_000), (900_001, 3_200_000))


def _demodulator_accepts(rate: int, offset: int) -> bool:
    try:
        FmDemodulator(rate, offset)
    except FmParameterError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["rtlsdr", "iq_file"]), _rate, st.booleans(), st.data())
def test_config_accepts_a_rate_and_offset_exactly_when_the_demodulator_does(
    backend: str, rate: int, rate_with_unit: bool, data: st.DataObject
) -> None:
    edge = rate // 2 - 100_000  # where the demodulator's own offset limit lies, if it takes the rate
    size = data.draw(st.integers(-2, 2).map(lambda step: edge + step) | st.integers(0, 1_000_000))
    offset = size * data.draw(st.sampled_from([1, -1]))
    assume(abs(offset) <= 1_000_000)  # beyond that the offset's own range refuses it
    offset_key = "center_offset" if backend == "rtlsdr" else "offset"
    rate_text = format_frequency(rate) if rate_with_unit else str(rate)
    text = (
        MINIMAL
        + f"fm:\n  {backend}: {{sample_rate: {rate_text}, {offset_key}: {format_frequency(offset)}}}\n"
    )
    try:
        load_config_text(text, Path("agent.yaml"))
        accepted = True
    except ConfigError:
        accepted = False
    dongle_can = backend == "iq_file" or any(low <= rate <= high for low, high in RTLSDR_RANGES)
    assert accepted == (dongle_can and _demodulator_accepts(rate, offset))


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES)
def test_every_rate_the_demodulator_accepts_is_accepted_for_an_iq_file(tmp_path: Path, rate: int) -> None:
    config = load_config(write(tmp_path, MINIMAL + f"fm:\n  iq_file: {{sample_rate: {rate}, offset: 0Hz}}\n"))
    assert config.fm.iq_file.sample_rate == rate
    rtlsdr = MINIMAL + f"fm:\n  rtlsdr: {{sample_rate: {rate}, center_offset: 0Hz}}\n"
    if 225_001 <= rate <= 300_000 or 900_001 <= rate <= 3_200_000:
        assert load_config(write(tmp_path, rtlsdr)).fm.rtlsdr.sample_rate == rate
    else:
        assert "is out of range" in the_problem(tmp_path, rtlsdr, 8, "fm.rtlsdr.sample_rate")


# -- durations, frequencies and clock windows -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("2s", timedelta(seconds=2)),
        ("1.5s", timedelta(seconds=1.5)),
        ("10min", timedelta(minutes=10)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("1h30min", timedelta(hours=1, minutes=30)),
        (" 1d 2h 3s ", timedelta(days=1, hours=2, seconds=3)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2", "'2' has no unit"),
        ("-2s", "'-2s' is negative"),
        ("", "'' is empty"),
        ("2 sec", "unknown unit 'sec' (write 's')"),
        ("2H", "unknown unit 'H' (write 'h')"),
        ("30min1h", "from the largest unit to the smallest"),
        ("1s1s", "repeats a unit"),
        ("1e3s", "unknown unit 'e'"),
        ("1.2.3s", "is not a duration"),
        ("9" * 30 + "d", "has too many digits"),
        ("99999999999d", "is too long"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GB", 2 * 10**9), ("500MB", 500 * 10**6), ("1.5 GiB", 3 * 2**29), (" 10 kib ", 10240), ("7B", 7)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected
    assert parse_size(format_size(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2", "'2' has no unit"),
        ("-2GB", "'-2GB' is negative"),
        ("2 gigs", "unknown unit 'gigs' (write 'GB')"),
        ("1.5B", "is not a whole number of bytes"),
        ("GB", "is not a size"),
        ("9" * 30 + "GB", "has too many digits"),
    ],
)
def test_parse_size_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_size(text)


def test_cache_max_and_manifest_poll_errors_name_line_and_key(tmp_path: Path) -> None:
    text = MINIMAL.replace("device:", "storage: {cache_max: 5MB}\ndevice:", 1)
    text += "central:\n  mqtt_url: mqtt://127.0.0.1:1883\n  signing_public_key_files: [k.pub]\n"
    text += "  manifest_poll: 5\n"
    (tmp_path / "agent.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "agent.yaml")
    shown = [str(problem) for problem in error.value.problems]
    assert any(":1: storage.cache_max: '5MB' is out of range" in line and "from 10MB to 10TB" in line
               for line in shown), shown  # fmt: skip
    assert any("central.manifest_poll: '5' has no unit" in line for line in shown), shown
    good = text.replace("5MB", "1.5 GiB").replace("manifest_poll: 5", "manifest_poll: 2min")
    (tmp_path / "agent.yaml").write_text(good, encoding="utf-8")
    config = load_config(tmp_path / "agent.yaml")
    assert config.storage.cache_max == 3 * 2**29
    assert config.central is not None and config.central.manifest_poll == timedelta(minutes=2)


def test_parse_frequency() -> None:
    assert parse_frequency("99.1MHz") == 99_100_000
    assert parse_frequency("250kHz") == 250_000
    assert parse_frequency("1024000Hz") == 1_024_000
    assert parse_frequency(" 87.5 mhz ") == 87_500_000
    assert parse_frequency("-250kHz", signed=True) == -250_000
    for text, message in (
        ("99.1", "has no unit"),
        ("-250kHz", "is negative"),
        ("1.5Hz", "not a whole number"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_frequency(text)
    with pytest.raises(ValueError, match="unknown unit 'MHzz'"):
        parse_frequency("99.1MHzz")


def test_clock_windows() -> None:
    day = parse_clock_window("05:00-21:30")
    night = parse_clock_window("22:00 - 02:00")
    assert day == (time(5), time(21, 30))
    assert [in_clock_window(day, time(hour)) for hour in (4, 5, 21, 22)] == [False, True, True, False]
    assert [in_clock_window(night, time(hour)) for hour in (21, 22, 1, 2)] == [False, True, True, False]
    assert format_clock_window(night) == "22:00-02:00"
    for text in ("24:00-01:00", "5-6", "05:00", "05:60-06:00"):
        with pytest.raises(ValueError):
            parse_clock_window(text)


durations_st = st.builds(
    timedelta,
    days=st.integers(0, 10_000),
    seconds=st.integers(0, 86_399),
    microseconds=st.integers(0, 999_999),
)


@given(durations_st)
def test_duration_round_trip(duration: timedelta) -> None:
    text = format_duration(duration)
    assert parse_duration(text) == duration
    assert re.fullmatch(r"(\d+(\.\d+)?(d|h|min|s|ms))+", text)


@given(st.integers(-(10**12), 10**12))
def test_frequency_round_trip(hertz: int) -> None:
    assert parse_frequency(format_frequency(hertz), signed=True) == hertz


@given(st.integers(0, 10**15))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.text(max_size=30))
def test_any_text_is_a_size_or_a_clear_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ValueError as error:
        assert str(error).startswith(repr(text))  # the offending text first, as agent.config expects
    else:
        assert isinstance(size, int) and size >= 0


_minutes = st.times().map(lambda moment: moment.replace(second=0, microsecond=0))


@given(_minutes, _minutes)
def test_clock_window_round_trip(start: time, end: time) -> None:
    assume(start != end)
    window = (start, end)
    assert parse_clock_window(format_clock_window(window)) == window


_unit_text = st.text(st.sampled_from("0123456789.-+ hmsdinkHzMG\t:µ") | st.characters(), max_size=24)


@settings(max_examples=300)
@given(_unit_text)
def test_parsers_raise_only_value_error(text: str) -> None:
    for parse in (parse_duration, parse_frequency, parse_clock_window):
        try:
            parse(text)
        except ValueError as error:
            assert str(error).startswith(repr(text))


_WORDS = ("device", "id", "gpio", "amplifiers", "name", "pin", "audio", "volume", "storage", "dir", "clock")
_MARKS = (":", ": ", "\n", "  ", "- ", "{", "}", "[", "]", ", ", "'17'", '"true"', "#", "\t")
_config_tokens = st.sampled_from((*_WORDS, *_MARKS, "require_sync", "xa-01", "17", "zone-1", "/var/lib/loa"))


@settings(max_examples=300, deadline=None)
@given(st.lists(_config_tokens, max_size=30).map("".join))
def test_any_config_text_loads_or_raises_config_error_with_every_problem_placed(text: str) -> None:
    path = Path("/etc/loa/agent.yaml")
    try:
        load_config_text(text, path)
    except ConfigError as error:
        assert error.problems
        assert all(str(problem).startswith(f"{path}:") for problem in error.problems), error.problems


# -- health: the modem, the mains input and the amplifiers' fault inputs ---------------------------


def test_health_is_off_unless_configured(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.health == HealthConfig()
    assert [amp.fault_pin for amp in config.gpio.amplifiers] == [None, None]


def test_health_settings_are_typed(tmp_path: Path) -> None:
    text = MINIMAL.replace("pin: 17}", "pin: 17, fault_pin: 23, fault_active_high: true}") + (
        "health:\n  modem: {port: /dev/ttyUSB2}\n  mains: {pin: 25, active_high: false}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.health == HealthConfig(ModemConfig("/dev/ttyUSB2", 115200), MainsConfig(25, False))
    assert config.gpio.amplifiers[0] == Amplifier("zone-1", 17, True, 23, True)


def test_health_mistakes_are_all_reported_with_their_lines(tmp_path: Path) -> None:
    text = MINIMAL.replace("pin: 17}", "pin: 17, fault_pin: 18}") + (
        "  status_led: 27\nhealth:\n  modem: {prot: /dev/ttyUSB2, baud: 12}\n  mains: {pin: 27}\n"
    )
    assert problems(tmp_path, text) == [
        f"{tmp_path / 'agent.yaml'}:{line}: {message}"
        for line, message in [
            (5, "gpio.amplifiers[0].fault_pin: '18' is the pin of amplifier zone-2: "
                "expected a pin that nothing else uses"),
            (9, "health.modem.port: missing: expected a serial port such as /dev/ttyUSB2"),
            (9, "health.modem.baud: '12' is out of range: expected a baud rate such as 115200"),
            (9, "health.modem.prot: unknown key (did you mean 'port'?)"),
            (10, "health.mains.pin: '27' is the pin of the status LED: "
                 "expected a pin that nothing else uses"),
        ]
    ]  # fmt: skip


def test_two_inputs_on_one_pin_name_the_first(tmp_path: Path) -> None:
    text = MINIMAL.replace("pin: 17}", "pin: 17, fault_pin: 23}") + "health:\n  mains: {pin: 23}\n"
    assert the_problem(tmp_path, text, 8, "health.mains.pin") == (
        "'23' is the pin of the fault input of amplifier zone-1: expected a pin that nothing else uses"
    )
