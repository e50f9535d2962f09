"""The problem-collecting reader behind agent.config and central.config, and the kinds of value it converts.

A :class:`Reader` walks one :class:`foundation.yaml_source.YamlDocument`; each mapping in it is a
:class:`Section` whose typed getters (``get``, ``optional``, ``get_list``, ``entries``, ``section``)
convert a key with a :class:`Kind`, remember the key as known, and on a wrong value record a problem
and hand back the default, so that one pass reports every problem in the file.
:meth:`Reader.finish` then adds the unknown keys and returns the problems in file order.

A kind's converter raises ``ValueError(reason[, hint])``; the reason may start with the value's text
in quotes (as :mod:`foundation.units` writes it), which is dropped because the problem shows the value.
A number or true/false written in quotes is text to YAML: it is shown with its quotes and the hint
says to remove them.  Text where a mapping belongs (or a key with no value) that is a key the mapping
knows glued to its value, ``id:xa-01``, is reported as a missing space after the ':'.
"""

from __future__ import annotations

import enum
import functools
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, get_args
from zoneinfo import ZoneInfo

from foundation import units
from foundation.errors import ConfigError
from foundation.units import ClockWindow
from foundation.yaml_source import (
    MISSING,
    MISSING_SPACE,
    NO_VALUE,
    TOP_LEVEL_EXPECTED,
    KeyPath,
    Problem,
    YamlDocument,
    did_you_mean,
    glued_hint,
    load_yaml,
    load_yaml_text,
    plain_type,
    reading,
    split_glued,
)

T = TypeVar("T")


class _Bad(enum.Enum):
    """What a conversion returns once it has reported its problem."""

    BAD = 0


_BAD = _Bad.BAD


class QuotedValue(ValueError):
    """A number or true/false written in quotes, which YAML reads as text: the problem shows the
    value with its quotes and says to remove them."""


@dataclass(frozen=True)
class Kind(Generic[T]):
    """What a scalar key holds: its description and a converter.

    The converter gets the value and its text as the file spells it, and raises
    ``ValueError(reason[, hint])`` when the value is wrong.
    """

    expected: str
    convert: Callable[[object, str], T]


class Reader:
    """Reads one document, collecting every problem instead of stopping at the first."""

    def __init__(self, document: YamlDocument) -> None:
        self.document = document
        self.base = document.path.absolute().parent
        self.problems: list[Problem] = list(document.problems)
        self.sections: list[Section] = []
        # Text found where a mapping belongs, and its problem: reworded by finish() if it is a
        # 'key:value' with a key the mapping knows, which is known only once it has been read.
        self.stand_ins: list[tuple[Problem, Section, KeyPath]] = []

    def root(self) -> Section:
        """The top-level mapping; anything else at the top is already one of the document's problems."""
        data = self.document.data
        root = Section(self, (), data, broken=not isinstance(data, dict))
        top = next((p for p in self.problems if p.expected == TOP_LEVEL_EXPECTED and not p.key_path), None)
        if isinstance(data, str) and top is not None:
            self.stand_ins.append((top, root, ()))
        return root

    def add(
        self, path: KeyPath, value: object, expected: str, hint: str | None = None, reason: str | None = None
    ) -> Problem:
        if value is not MISSING and value is not NO_VALUE:
            text = self.document.text_of(path)
            value = text if text is not None else value
        problem = self.document.problem(path, value, expected, hint, reason)
        self.problems.append(problem)
        return problem

    def missing_space(self, line: int | None, path: KeyPath, glued: tuple[str, str]) -> Problem:
        """``key:value`` written in the mapping at ``path``: "missing space after ':' (write ...)"."""
        hint = glued_hint(*glued)
        return Problem(str(self.document.path), line, (*path, glued[0]), NO_VALUE, "", hint, MISSING_SPACE)

    def finish(self) -> list[Problem]:
        """Report unknown keys, then every problem in file order."""
        for section in self.sections:
            section.report_unknown()
        for problem, section, path in self.stand_ins:
            glued = split_glued(str(section.stand_in))
            if glued is not None and glued[0] in section.known:
                better = self.missing_space(self.document.scalar_lines.get(path), section.path, glued)
                self.problems = [better if p is problem else p for p in self.problems]
        return sorted(self.problems, key=lambda problem: problem.line or 0)


def parse_document(document: YamlDocument, build: Callable[[Reader], T]) -> T:
    """``build`` run over an already loaded document; ConfigError listing every problem in file order."""
    reader = Reader(document)
    config = build(reader)
    problems = reader.finish()
    if problems:
        raise ConfigError([*problems])
    return config


def load_file(path: Path, build: Callable[[Reader], T]) -> T:
    """The config file at ``path`` read by ``build``; ConfigError listing every problem."""
    with reading(path, ConfigError):
        return parse_document(load_yaml(path), build)


def load_text(text: str, path: Path, build: Callable[[Reader], T]) -> T:
    """Like :func:`load_file` for text in memory that pretends to live at ``path``."""
    with reading(path, ConfigError):
        return parse_document(load_yaml_text(text, str(path)), build)


class Section:
    """One mapping of the document: typed getters that record which keys are known."""

    def __init__(self, reader: Reader, path: KeyPath, data: object, *, broken: bool = False) -> None:
        self.reader = reader
        self.path = path
        self.data: dict[str, object] = data if isinstance(data, dict) else {}
        self.broken = broken  # already reported as wrong: do not pile "missing" problems on top
        self.stand_in = data if not isinstance(data, dict) else None  # what stands where it belongs
        self.known: list[str] = []
        reader.sections.append(self)

    def get(self, key: str, kind: Kind[T], default: T, *, required: bool = False) -> T:
        """The converted value, or ``default`` when absent or wrong (the latter is reported)."""
        self.known.append(key)
        if key not in self.data:
            if required:
                self.missing(key, kind.expected)
            return default
        result = self._convert((*self.path, key), self.data[key], kind)
        return default if isinstance(result, _Bad) else result

    def optional(self, key: str, kind: Kind[T]) -> T | None:
        """The converted value, or None when absent, empty (``key:`` or ``null``) or wrong."""
        self.known.append(key)
        if self.data.get(key) is None:
            return None
        result = self._convert((*self.path, key), self.data[key], kind)
        return None if isinstance(result, _Bad) else result

    def get_list(
        self, key: str, kind: Kind[T], default: tuple[T, ...], expected: str, *, empty: str | None = None
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
            result = self._convert((*self.path, key, index), item, kind)
            if not isinstance(result, _Bad):
                results.append(result)
        return tuple(results)

    def entries(self, key: str, expected: str) -> list[Section]:
        """The mappings of a required, non-empty list of mappings (``gpio.amplifiers``)."""
        value = self._list(key, expected, required=True)
        if value is None:
            return []
        if not value:
            self.report(key, value, "is an empty list", expected)
        sections = []
        for index, item in enumerate(value):
            item_path = (*self.path, key, index)
            if isinstance(item, dict):
                sections.append(Section(self.reader, item_path, item, broken=self.broken))
                continue
            # Read like the others (as an empty, broken mapping) so that its keys are known.
            problem = self.reader.add(
                item_path, item, "a mapping such as {name: ..., pin: ...}", None, "is not a mapping"
            )
            sections.append(self._stand_in(problem, item_path, item))
        return sections

    def section(self, key: str) -> Section:
        """The sub-mapping at ``key``; absent or empty (``key:``) reads as an empty one, so that
        its required keys are reported one by one."""
        self.known.append(key)
        value = self.data.get(key)
        if isinstance(value, dict):
            return Section(self.reader, (*self.path, key), value, broken=self.broken)
        if value is None:
            return Section(self.reader, (*self.path, key), {}, broken=self.broken)
        expected = "a mapping of settings (indented 'key: value' lines)"
        problem = self.reader.add((*self.path, key), value, expected, None, "is not a mapping")
        return self._stand_in(problem, (*self.path, key), value)

    def _stand_in(self, problem: Problem, path: KeyPath, value: object) -> Section:
        section = Section(self.reader, path, value, broken=True)
        self.reader.stand_ins.append((problem, section, path))
        return section

    def _convert(self, path: KeyPath, value: object, kind: Kind[T]) -> T | _Bad:
        document = self.reader.document
        if path in document.refused:  # the loader has said what is wrong with it
            return _BAD
        text = document.text_of(path)
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
            if isinstance(exc, QuotedValue):  # show the quotes that make it text
                shown = document.spelling_of(path) or text
                self.reader.problems.append(document.problem(path, shown, kind.expected, hint, reason))
            else:
                self.reader.add(path, text, kind.expected, hint, reason)
            return _BAD

    def missing(self, key: str, expected: str) -> None:
        if not self.broken and key not in {word for word, _ in self._glued_keys().values()}:
            self.reader.add((*self.path, key), MISSING, expected)

    def report(self, key: str, value: object, reason: str, expected: str, hint: str | None = None) -> None:
        self.reader.add((*self.path, key), value, expected, hint, reason)

    def report_unknown(self) -> None:
        glued = self._glued_keys()
        for key in self.data:
            if key in glued:  # {id:xa-01}: one key 'id:xa-01' with no value
                line = self.reader.document.line_of((*self.path, key))
                self.reader.problems.append(self.reader.missing_space(line, self.path, glued[key]))
            elif key not in self.known:
                hint = did_you_mean(key, self.known) or "known keys: " + ", ".join(self.known)
                self.reader.add((*self.path, key), NO_VALUE, "", hint, "unknown key")

    def _glued_keys(self) -> dict[str, tuple[str, str]]:
        """Keys with no value that are a known key and its value with no space after ':'
        (``{id:xa-01}``), which are reported as such instead of as unknown and missing keys."""
        found = {}
        for key, value in self.data.items():
            glued = split_glued(key) if value is None else None
            if glued is not None and glued[0] in self.known:
                found[key] = glued
        return found

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


def _refuse_quoted(value: object, text: str, *types: type) -> None:
    """Raise :class:`QuotedValue` if ``value`` is text only because it is quoted (``"17"``)."""
    if isinstance(value, str) and plain_type(text) in types:
        what = "true or false" if bool in types else "a number"
        raise QuotedValue(f"is text, not {what}", f"remove the quotes: {text}")


def whole(low: int, high: int, expected: str | None = None) -> Kind[int]:
    def convert(value: object, text: str) -> int:
        _refuse_quoted(value, text, int, float)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("is not a whole number")
        if not low <= value <= high:
            raise ValueError("is out of range")
        return value

    return Kind(expected or f"a whole number from {low} to {high}", convert)


def number(low: float, high: float, unit: str) -> Kind[float]:
    def convert(value: object, text: str) -> float:
        _refuse_quoted(value, text, int, float)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if not low <= value <= high:  # also refuses .nan
            raise ValueError("is out of range")
        return float(value)

    return Kind(f"a number from {low:g} to {high:g} ({unit})", convert)


def _check_bool(value: object, text: str) -> bool:
    _refuse_quoted(value, text, bool)
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


def text_matching(expected: str, pattern: str = r".*\S.*") -> Kind[str]:
    def convert(value: object, text: str) -> str:
        if not isinstance(value, str):
            raise ValueError("is not text", "put it in quotes")
        if not re.fullmatch(pattern, value):
            raise ValueError("does not fit")
        return value

    return Kind(expected, convert)


def choice(options: Any, expected: str | None = None) -> Kind[Any]:
    """One of ``options`` (a Literal alias or names); the value's text is compared, so ``null`` fits."""
    choices = tuple(get_args(options) or options)

    def convert(value: object, text: str) -> str:
        if text not in choices:
            raise ValueError("is not allowed", did_you_mean(text, choices))
        return text

    return Kind(expected or "one of " + ", ".join(choices), convert)


def duration(low: timedelta, high: timedelta, example: timedelta) -> Kind[timedelta]:
    def convert(value: object, text: str) -> timedelta:
        parsed = units.parse_duration(text)
        if not low <= parsed <= high:
            raise ValueError("is out of range")
        return parsed

    span = f"from {units.format_duration(low)} to {units.format_duration(high)}"
    example_text = units.format_duration(example)
    return Kind(f"a duration with a unit (ms, s, min, h) {span}, e.g. {example_text}", convert)


def size(low: int, high: int, example: int) -> Kind[int]:
    def convert(value: object, text: str) -> int:
        parsed = units.parse_size(text)
        if not low <= parsed <= high:
            raise ValueError("is out of range")
        return parsed

    span = f"from {units.format_size(low)} to {units.format_size(high)}"
    return Kind(f"a size with a unit (MB, GB, MiB, GiB) {span}, e.g. {units.format_size(example)}", convert)


def frequency(low: int, high: int, *, signed: bool = False) -> Kind[int]:
    def convert(value: object, text: str) -> int:
        hertz = units.parse_frequency(text, signed=signed)
        if not low <= hertz <= high:
            raise ValueError("is out of range")
        return hertz

    span = f"from {units.format_frequency(low)} to {units.format_frequency(high)}"
    return Kind(f"a frequency with a unit (Hz, kHz, MHz) {span}", convert)


def rate_value(value: object, text: str) -> int:
    """Samples per second written as a whole number (``1024000``) or a frequency (``1.024MHz``)."""
    _refuse_quoted(value, text, int, float)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return units.parse_frequency(text)


def file_path(base: Path, expected: str) -> Kind[Path]:
    def convert(value: object, text: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("is not a path")
        return base / value  # an absolute value replaces base

    return Kind(expected, convert)


def _window(value: object, text: str) -> ClockWindow:
    return units.parse_clock_window(text)


def _timezone(value: object, text: str) -> ZoneInfo:
    if text not in _zone_names():
        raise ValueError("is not a known time zone", did_you_mean(text, _zone_names()))
    return ZoneInfo(text)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


BOOL = Kind("true or false", _check_bool)
CLOCK_WINDOW = Kind(
    "a daily window of local time such as 05:00-21:30 (may cross midnight: 22:00-02:00)", _window
)
TIME_ZONE = Kind("a time zone name such as Asia/Ho_Chi_Minh", _timezone)
