"""Durations, radio frequencies and daily clock windows as technicians write them in YAML.

Grammars (surrounding spaces are ignored everywhere):

* duration: one or more parts ``NUMBER UNIT``, units from largest to smallest, each unit at most once.
  NUMBER is digits with an optional decimal fraction (``1.5``); UNIT is ``d``, ``h``, ``min`` (or
  ``m``), ``s`` or ``ms``, lowercase.  Spaces may separate parts and a number from its unit.
  Examples: ``500ms``, ``2s``, ``1.5s``, ``10min``, ``1h30min``, ``1d 2h``.  A bare number (``2``)
  has no unit and is refused, as is a negative duration; precision is one microsecond.
* frequency: ``NUMBER UNIT`` with UNIT ``Hz``, ``kHz``, ``MHz`` or ``GHz`` in any letter case, e.g.
  ``99.1MHz``, ``250kHz``, ``1024000Hz``; the result must be a whole number of hertz.  A sign is
  allowed only where the caller says so (an offset such as ``-250kHz``).  Command lines may also
  allow a bare number of hertz and the shorthands ``k`` and ``M`` (``1.024M``); config files never.
* size: ``NUMBER UNIT`` with UNIT ``B``, ``kB``, ``MB``, ``GB``, ``TB`` (powers of 1000) or ``KiB``,
  ``MiB``, ``GiB``, ``TiB`` (powers of 1024), in any letter case (``b`` is a byte, never a bit), e.g.
  ``2GB``, ``500MB``, ``1.5 GiB``; the result must be a whole number of bytes.  A bare number has no
  unit and is refused, as is a negative size.
* clock window: ``HH:MM-HH:MM`` in local time, e.g. ``05:00-21:30``, start included, end excluded;
  a window whose end is earlier than its start runs across midnight (``22:00-02:00``).  ``24:00``
  may end a window (``05:00-24:00``: until midnight).  ``00:00-00:00`` and ``00:00-24:00`` are the
  whole day; any other window whose start equals its end is refused as a likely typo.

Every error is a ``ValueError`` whose message starts with the offending text in quotes followed by
what is wrong (``'2' has no unit``); ``agent.config`` relies on that shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

_DURATION_UNITS_US = {"d": 86_400_000_000, "h": 3_600_000_000, "min": 60_000_000, "s": 1_000_000, "ms": 1_000}
_DURATION_ALIASES = {"m": "min"}
# Spellings people use that the grammar refuses, with the unit they meant.
_DURATION_MISSPELLINGS = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s", "mins": "min", "minute": "min",
    "minutes": "min", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "msec": "ms", "day": "d",
    "days": "d", "us": "ms", "µs": "ms",
}  # fmt: skip
_FREQUENCY_UNITS = {"hz": 1, "khz": 1_000, "mhz": 1_000_000, "ghz": 1_000_000_000}
_FREQUENCY_SHORTHANDS = {"": 1, "k": 1_000, "M": 1_000_000}  # command lines only
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE_MISSPELLINGS = {"k": "kB", "m": "MB", "g": "GB", "t": "TB", "bytes": "B", "byte": "B", "gig": "GB",
                      "gigs": "GB", "meg": "MB", "megs": "MB", "kilobytes": "kB", "megabytes": "MB",
                      "gigabytes": "GB"}  # fmt: skip
_DAY_S: Final = 86_400
_MAX_DIGITS = 18
_NUMBER = r"(\d+(?:\.\d+)?)"
_PART = re.compile(_NUMBER + r"\s*([^\d\s.]+)\s*", re.ASCII)
_BARE_NUMBER = re.compile(r"[-+]?" + _NUMBER, re.ASCII)
_FREQUENCY = re.compile(r"([-+]?)" + _NUMBER + r"\s*([^\d\s.]*)", re.ASCII)
_WINDOW = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", re.ASCII)

ClockWindow = tuple[time, time]


def parse_duration(text: str) -> timedelta:
    """``"1h30min"`` -> ``timedelta(hours=1, minutes=30)``; see the module's grammar."""
    stripped = _common_checks(text, "duration")
    if stripped.startswith("-"):
        raise ValueError(f"{text!r} is negative")
    micros = Fraction(0)
    last_rank = -1
    position = 0
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None:
            raise ValueError(f"{text!r} is not a duration")
        number, unit = match.group(1), _duration_unit(text, match.group(2))
        rank = list(_DURATION_UNITS_US).index(unit)
        if rank <= last_rank:
            raise ValueError(f"{text!r} repeats a unit or does not go from the largest unit to the smallest")
        micros += _number(text, number) * _DURATION_UNITS_US[unit]
        last_rank, position = rank, match.end()
    try:
        return timedelta(microseconds=round(micros))
    except OverflowError:
        raise ValueError(f"{text!r} is too long") from None


def format_duration(duration: timedelta, *, whole_seconds: bool = False) -> str:
    """The shortest text :func:`parse_duration` reads back as ``duration``: ``1h30min``, ``500ms``.

    ``whole_seconds`` rounds down to the second first (for reasons a technician reads: ``3min12s``);
    a negative duration then reads ``0s``.
    """
    if whole_seconds:
        duration = timedelta(seconds=max(0, int(duration.total_seconds())))
    if duration < timedelta(0):
        raise ValueError(f"{duration!r} is negative")
    micros = duration // timedelta(microseconds=1)
    parts = []
    for unit in ("d", "h", "min"):
        count, micros = divmod(micros, _DURATION_UNITS_US[unit])
        if count:
            parts.append(f"{count}{unit}")
    seconds, fraction = divmod(micros, 1_000_000)
    if fraction and not seconds and fraction % 1000 == 0:
        parts.append(f"{fraction // 1000}ms")
    elif fraction:
        parts.append(f"{seconds}.{fraction:06d}".rstrip("0") + "s")
    elif seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)


def parse_frequency(text: str, *, signed: bool = False, shorthand: bool = False) -> int:
    """``"99.1MHz"`` -> ``99100000`` (Hz); ``signed`` allows ``"-250kHz"``; ``shorthand`` (command
    lines) also allows a bare number of hertz and ``k`` / ``M`` (``"1.024M"``)."""
    stripped = text.strip() if shorthand and isinstance(text, str) else _common_checks(text, "frequency")
    match = _FREQUENCY.fullmatch(stripped)
    if match is None:
        raise ValueError(f"{text!r} is not a frequency")
    sign, number, unit = match.groups()
    if sign == "-" and not signed:
        raise ValueError(f"{text!r} is negative")
    multiplier = _FREQUENCY_SHORTHANDS.get(unit) if shorthand else None
    multiplier = multiplier or _FREQUENCY_UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(f"{text!r} has an unknown unit {unit!r}; use Hz, kHz or MHz")
    hertz = _number(text, number) * multiplier
    if hertz.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of Hz")
    return -int(hertz) if sign == "-" else int(hertz)


def format_frequency(hertz: int) -> str:
    """``99100000`` -> ``"99.1MHz"``, ``-250000`` -> ``"-250kHz"``: read back by :func:`parse_frequency`."""
    unit, exponent = next(
        (u, e) for u, e in (("MHz", 6), ("kHz", 3), ("Hz", 0)) if abs(hertz) >= 10**e or not e
    )
    return format(Decimal(hertz).scaleb(-exponent).normalize(), "f") + unit


def parse_size(text: str) -> int:
    """``"1.5 GiB"`` -> ``1610612736`` (bytes); see the module's grammar."""
    stripped = _common_checks(text, "size")
    match = _FREQUENCY.fullmatch(stripped)  # the same shape: sign, number, unit
    if match is None:
        raise ValueError(f"{text!r} is not a size")
    sign, number, unit = match.groups()
    if sign == "-":
        raise ValueError(f"{text!r} is negative")
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        meant = _SIZE_MISSPELLINGS.get(unit.lower())
        hint = f" (write {meant!r})" if meant else ""
        units = "B, kB, MB, GB, TB or KiB, MiB, GiB"
        raise ValueError(f"{text!r} has an unknown unit {unit!r}{hint}; use {units}")
    size = _number(text, number) * multiplier
    if size.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(size)


def format_size(size: int) -> str:
    """``2000000000`` -> ``"2GB"``, ``1536`` -> ``"1.536kB"``: decimal units, read back by
    :func:`parse_size`."""
    if size < 0:
        raise ValueError(f"{size!r} is negative")
    unit, exponent = next((u, e) for u, e in (("TB", 12), ("GB", 9), ("MB", 6), ("kB", 3), ("B", 0))
                          if size >= 10**e or not e)  # fmt: skip
    return format(Decimal(size).scaleb(-exponent).normalize(), "f") + unit


def parse_clock_window(text: str) -> ClockWindow:
    """``"05:00-21:30"`` -> ``(time(5, 0), time(21, 30))``; see the module's grammar."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text")
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a window of the form HH:MM-HH:MM")
    hours_1, minutes_1, hours_2, minutes_2 = (int(group) for group in match.groups())
    until_midnight = (hours_2, minutes_2) == (24, 0)
    if until_midnight:
        hours_2 = 0
    if max(hours_1, hours_2) > 23 or max(minutes_1, minutes_2) > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59, and 24:00 as an end)")
    start, end = time(hours_1, minutes_1), time(hours_2, minutes_2)
    if start == end and start != time(0):
        raise ValueError(f"{text!r} starts and ends at the same time", "write 00:00-24:00 for the whole day")
    return start, end


def format_clock_window(window: ClockWindow) -> str:
    """``(time(22), time(2))`` -> ``"22:00-02:00"``; the whole day is ``"00:00-24:00"``."""
    end = "24:00" if (window[1] == time(0) and window[0] != time(0)) or window[0] == window[1] else None
    return f"{window[0]:%H:%M}-{end or format(window[1], '%H:%M')}"


def in_clock_window(window: ClockWindow, moment: time) -> bool:
    """Whether the local time of day ``moment`` falls in ``window`` (start included, end excluded)."""
    start, end = window
    if start == end:
        return True
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def in_clock_windows(windows: Iterable[ClockWindow], moment: time) -> bool:
    return any(in_clock_window(window, moment) for window in windows)


def covers_whole_day(windows: Iterable[ClockWindow]) -> bool:
    """Whether the windows together cover every instant of the day."""
    covered = 0
    for low, high in sorted(span for window in windows for span in _day_spans(window)):
        if low > covered:
            return False
        covered = max(covered, high)
    return covered >= _DAY_S


def _day_spans(window: ClockWindow) -> list[tuple[int, int]]:
    """A window as half-open ranges of seconds within one day."""
    start, end = (t.hour * 3600 + t.minute * 60 + t.second for t in window)
    if start == end:
        return [(0, _DAY_S)]
    if start < end:
        return [(start, end)]
    return [(start, _DAY_S), (0, end)]


def _common_checks(text: str, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{text!r} is empty")
    if _BARE_NUMBER.fullmatch(stripped):
        raise ValueError(f"{text!r} has no unit")
    return stripped


def _duration_unit(text: str, unit: str) -> str:
    unit = _DURATION_ALIASES.get(unit, unit)
    if unit in _DURATION_UNITS_US:
        return unit
    lowered = unit.lower()
    meant = _DURATION_MISSPELLINGS.get(lowered) or (lowered if lowered in _DURATION_UNITS_US else None)
    hint = f" (write {meant!r})" if meant else ""
    raise ValueError(f"{text!r} has an unknown unit {unit!r}{hint}; use ms, s, min, h or d")


def _number(text: str, digits: str) -> Fraction:
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"{text!r} has too many digits")
    return Fraction(digits)
