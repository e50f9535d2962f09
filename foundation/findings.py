"""Findings: what a reader of outside input found wrong, before it is placed in a file.

Pure readers (the scheduler's item parser, the protocol's manifest checks) collect every problem
as a :class:`Finding` in a :class:`FindingList` instead of stopping at the first; the loader that
owns the file (``foundation.yaml_source``) places each on its line.  :func:`did_you_mean` is the one
"did you mean" hint for near misses, for config keys, choices and schedule fields alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """One problem in loaded data: where, what was found, what was expected, a hint, and a reason."""

    key_path: KeyPath
    value: object
    expected: str
    hint: str | None = None
    reason: str | None = None

    @property
    def path_text(self) -> str:
        """The key path as the config reader prints it, e.g. ``items[3].rrule``."""
        return format_key_path(self.key_path) or "(top level)"

    def __str__(self) -> str:
        text = f"{self.path_text}: value {self.value!r}: expected {self.expected}"
        return f"{text} ({self.hint})" if self.hint else text


@dataclass
class FindingList:
    """Collects findings in the order they are found."""

    items: list[Finding] = field(default_factory=list)

    def add(
        self, path: KeyPath, value: object, expected: str, hint: str | None = None, reason: str | None = None
    ) -> None:
        self.items.append(Finding(path, value, expected, hint, reason))


def format_key_path(key_path: KeyPath) -> str:
    """``("gpio", "amplifiers", 1, "pin")`` -> ``gpio.amplifiers[1].pin``."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def did_you_mean(word: object, choices: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest of ``choices`` to ``word`` (any letter case), or None."""
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]!r}?" if close else None
