"""The boundary every protocol message crosses: bounded, strict JSON and typed field reads.

Whatever bytes arrive, :func:`decode_object` returns a dict or raises :class:`ProtocolError`
(never a codec, recursion or overflow error).  :class:`Fields` reads one object's keys with their
types, collects every problem as a :class:`~foundation.findings.Finding` with its key path, and
refuses keys it was not asked about: version 1 of the protocol is strict (docs/PROTOCOL.md).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from foundation.errors import LoaError
from foundation.findings import Finding, FindingList, KeyPath, did_you_mean

MAX_MESSAGE_BYTES = 64 * 1024  # a play-log record is ~500 bytes; a state snapshot ~1 KB
MAX_DEPTH = 8  # v1 messages nest at most 3 deep
SCHEMA_VERSION = 1
DEVICE_ID = re.compile(r"[a-z0-9-]{3,64}")  # the same words as the config's device.id
GROUP = re.compile(r"[a-z0-9-]{1,64}")
ZONE = re.compile(r"[a-z0-9_-]{1,32}")  # the same words as the config's amplifier names
SHA256 = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


class ProtocolError(LoaError, ValueError):
    """A message that is not what docs/PROTOCOL.md says; ``problems`` lists every finding."""

    def __init__(self, what: str, problems: Iterable[Finding | str]) -> None:
        self.what = what
        self.problems = list(problems)
        super().__init__(f"{what}: " + "; ".join(str(p) for p in self.problems))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _depth(value: object, limit: int) -> bool:
    if limit < 0:
        return False
    if isinstance(value, dict):
        return all(_depth(v, limit - 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth(v, limit - 1) for v in value)
    return True


def decode_object(data: str | bytes, what: str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """One JSON object from ``data``: UTF-8, at most 64 KiB (or ``max_bytes``), no duplicate keys,
    NaN or deep nesting."""
    if len(data) > max_bytes:
        raise ProtocolError(what, [f"{len(data)} bytes, more than {max_bytes}"])
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    # UnicodeDecodeError and JSONDecodeError are ValueErrors; json recurses once per '[' or '{'.
    except (ValueError, RecursionError) as error:
        raise ProtocolError(what, [f"not JSON: {error}"]) from None
    if not isinstance(value, dict):
        raise ProtocolError(what, [f"a JSON {type(value).__name__}, expected an object"])
    if not _depth(value, MAX_DEPTH):
        raise ProtocolError(what, [f"nested more than {MAX_DEPTH} deep"])
    return value


def encode(value: dict[str, Any]) -> str:
    """Compact JSON, UTF-8 text kept as is (Vietnamese names stay readable)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 instant with its UTC offset, or None."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def format_time(moment: datetime) -> str:
    """UTC, milliseconds, ``Z``: ``2099-01-01T00:00:05.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Fields:
    """Typed reads of one JSON object's keys; every problem is collected with its key path."""

    def __init__(self, raw: object, path: KeyPath, findings: FindingList) -> None:
        self.path = path
        self.findings = findings
        self.raw: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.asked: set[str] = set()
        if not isinstance(raw, dict):
            findings.add(path, raw, "an object")

    def bad(self, key: str, expected: str) -> None:
        self.findings.add((*self.path, key), self.raw.get(key), expected)

    def get(self, key: str, kind: type[T], expected: str, *, required: bool = True) -> T | None:
        self.asked.add(key)
        if key not in self.raw:
            if required:
                self.findings.add((*self.path, key), None, f"{expected} (required)")
            return None
        value = self.raw[key]
        # bool is an int in Python, but never in these messages.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.bad(key, expected)
            return None
        return value

    def text(
        self,
        key: str,
        pattern: re.Pattern[str] | None = None,
        *,
        required: bool = True,
        expected: str = "a string",
        nullable: bool = False,
    ) -> str | None:
        if nullable and self.raw.get(key, "") is None:
            self.asked.add(key)
            return None
        value = self.get(key, str, expected, required=required)
        if value is not None and pattern is not None and not pattern.fullmatch(value):
            self.bad(key, expected)
            return None
        return value

    def whole(self, key: str, low: int, high: int, *, required: bool = True) -> int | None:
        expected = f"a whole number from {low} to {high}"
        value = self.get(key, int, expected, required=required)
        if value is not None and not low <= value <= high:
            self.bad(key, expected)
            return None
        return value

    def number(self, key: str, low: float, high: float, *, required: bool = False) -> float | None:
        expected = f"a number from {low} to {high}"
        self.asked.add(key)
        if key not in self.raw:
            return self.get(key, float, expected, required=required)
        value = self.raw[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not low <= value <= high:
            self.bad(key, expected)
            return None
        return float(value)

    def time(self, key: str, *, required: bool = True, nullable: bool = False) -> datetime | None:
        expected = "an ISO 8601 time with its UTC offset, e.g. 2099-01-01T00:00:05.000Z"
        text = self.text(key, required=required, expected=expected, nullable=nullable)
        if text is None:
            return None
        moment = parse_time(text)
        if moment is None:
            self.bad(key, expected)
        return moment

    def choice(self, key: str, choices: Iterable[str], *, required: bool = True) -> str | None:
        options = tuple(choices)
        expected = "one of " + ", ".join(options)
        value = self.text(key, required=required, expected=expected)
        if value is not None and value not in options:
            self.findings.add((*self.path, key), value, expected, did_you_mean(value, options))
            return None
        return value

    def zones(self, key: str, *, required: bool = False, empty: bool = False) -> tuple[str, ...] | None:
        expected = f"a {'' if empty else 'non-empty '}list of zone names such as zone-1"
        value = self.get(key, list, expected, required=required)
        if value is None:
            return None
        if (not value and not empty) or not all(isinstance(z, str) and ZONE.fullmatch(z) for z in value):
            self.bad(key, expected)
            return None
        if len(set(value)) != len(value):
            self.bad(key, f"{expected}, each once")
            return None
        return tuple(value)

    def version(self) -> None:
        """``v`` must be the schema version this reader knows."""
        self.whole("v", SCHEMA_VERSION, SCHEMA_VERSION)

    def finish(self) -> None:
        """Refuse keys nobody asked for (with a hint for a near miss)."""
        for key in self.raw:
            if key not in self.asked:
                hint = did_you_mean(key, self.asked)
                self.findings.add((*self.path, key), self.raw[key], "no such key", hint)


def raise_if_any(what: str, findings: FindingList) -> None:
    if findings.items:
        raise ProtocolError(what, findings.items)
