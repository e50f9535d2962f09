"""YAML files that remember where every key came from.

A technician edits the agent's YAML over SSH and must be told exactly which line is wrong, so this
module composes the document with PyYAML (SafeLoader nodes, which carry marks) instead of loading it
straight to Python, and keeps the 1-based line of every mapping key and sequence element.  Duplicate
keys, which PyYAML would silently overwrite, are reported.  Mapping keys are always the text the file
spells (``on:`` stays ``"on"``); values are plain Python (dict, list, str, int, float, bool, None);
timestamps stay text so that the loader that owns them decides their meaning.

Findings are :class:`Problem` objects that render as ``FILE:LINE: key.path: <what is wrong>``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from foundation.errors import ConfigError, ScheduleError
from foundation.findings import Finding, KeyPath, did_you_mean, format_key_path

__all__ = ["Finding", "KeyPath", "did_you_mean", "format_key_path"]


class Marker(enum.Enum):
    """Stand-ins for a value in a :class:`Problem`."""

    MISSING = "missing"  # the key is absent: rendered as "missing"
    NO_VALUE = "no value"  # the problem is about the key itself (unknown, duplicate): no value shown


MISSING = Marker.MISSING
NO_VALUE = Marker.NO_VALUE

_MAX_SHOWN = 60


def show_value(value: object) -> str:
    """A value as a technician would have typed it, quoted and shortened."""
    if isinstance(value, str):
        shown = repr(value)
    else:
        dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        shown = repr(dumped.removesuffix("\n...").strip())
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 4] + "...'"


@dataclass(frozen=True)
class Problem:
    """One finding in a file, with enough context for a technician to fix it at the pole."""

    file: str
    line: int | None
    key_path: KeyPath
    value: object  # the offending value (shown quoted), MISSING, or NO_VALUE
    expected: str  # what would be right; "" when the reason says it all
    hint: str | None = None  # rendered in parentheses, e.g. "did you mean 'preroll'?"
    reason: str | None = None  # what is wrong, e.g. "has no unit", "unknown key"
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        parts = [where]
        if self.key_path:
            parts.append(format_key_path(self.key_path))
        parts.append(self._what())
        text = ": ".join(part for part in parts if part)
        if self.expected:
            text += f": expected {self.expected}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def _what(self) -> str:
        if self.value is MISSING:
            return " ".join(filter(None, ["missing", self.reason]))
        if self.value is NO_VALUE:
            return self.reason or ""
        if self.reason is None:
            return f"value {show_value(self.value)}"
        return f"{show_value(self.value)} {self.reason}"


@dataclass
class YamlDocument:
    """A loaded YAML file: its plain data plus where each key and scalar came from."""

    path: Path
    data: Any
    problems: list[Problem]  # structural findings: empty file, duplicate keys, top level not a mapping
    lines: dict[KeyPath, int]
    texts: dict[KeyPath, str]  # the source text of every scalar value

    def line_of(self, key_path: KeyPath) -> int | None:
        """The line of ``key_path``, or of its nearest ancestor that has one."""
        for end in range(len(key_path), -1, -1):
            line = self.lines.get(key_path[:end])
            if line is not None:
                return line
        return None

    def text_of(self, key_path: KeyPath) -> str | None:
        """The scalar at ``key_path`` exactly as the file spells it (``"yes"``, ``"0x1F"``)."""
        return self.texts.get(key_path)

    def problem(
        self,
        key_path: KeyPath,
        value: object = NO_VALUE,
        expected: str = "",
        hint: str | None = None,
        reason: str | None = None,
    ) -> Problem:
        """A :class:`Problem` at ``key_path``, placed on its line in this file."""
        return Problem(str(self.path), self.line_of(key_path), key_path, value, expected, hint, reason)

    def problems_from(self, findings: Iterable[Finding | Sequence[Any]]) -> list[Problem]:
        """Place findings on their lines: objects with ``key_path, value, expected, hint`` (and
        optionally ``reason``) attributes, or tuples in that order.

        A value that is not text or a collection (``True`` read from ``on``) is shown as the file
        spells it; None for a key the file does not have reads "missing".
        """
        problems = []
        for finding in findings:
            if isinstance(finding, Sequence):
                finding = Finding(*finding)
            value = finding.value
            text = self.text_of(finding.key_path)
            if text is not None and not isinstance(value, str | list | dict | Marker):
                value = text
            elif value is None and finding.key_path not in self.lines:
                value = MISSING
            reason = finding.reason
            problems.append(self.problem(finding.key_path, value, finding.expected, finding.hint, reason))
        return problems


def load_yaml(path: Path, error_class: type[ConfigError | ScheduleError] = ConfigError) -> YamlDocument:
    """Read and compose ``path``; raises ``error_class`` if it cannot be read or is not YAML.

    Structural findings that do not stop parsing (duplicate keys, empty file, top level not a
    mapping) are left in ``document.problems`` so the caller can report them with its own.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = Problem(str(path), None, (), NO_VALUE, "", None, f"cannot read: {reason}")
        raise error_class([problem]) from exc
    return load_yaml_text(text, str(path), error_class)


def load_yaml_text(
    text: str, filename: str, error_class: type[ConfigError | ScheduleError] = ConfigError
) -> YamlDocument:
    """Like :func:`load_yaml` for text already in memory, shown in messages as ``filename``."""
    try:
        root, builder, data = _compose(text, filename)
    except yaml.YAMLError as exc:
        raise error_class([_syntax_problem(exc, text, filename)]) from exc
    document = YamlDocument(Path(filename), data, builder.problems, builder.lines, builder.texts)
    if root is None:
        document.problems.insert(0, Problem(filename, 1, (), NO_VALUE, "a mapping", reason="file is empty"))
    elif not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        top = document.problem((), NO_VALUE, "a mapping (key: value lines)", None, f"the top level is {kind}")
        document.problems.insert(0, top)
    return document


def _compose(text: str, filename: str) -> tuple[yaml.Node | None, _Builder, Any]:
    loader = yaml.SafeLoader(text)  # checks the characters already, so may raise ReaderError
    try:
        root = loader.get_single_node()
        builder = _Builder(loader, filename)
        return root, builder, None if root is None else builder.build(root, ())
    finally:
        loader.dispose()


_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str"))
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _Builder:
    """Turns composed nodes into plain data, recording lines, source texts and problems."""

    def __init__(self, loader: yaml.SafeLoader, filename: str) -> None:
        self._loader = loader
        self._filename = filename
        self._active: set[int] = set()  # nodes being built: an alias to one of them is a cycle
        self.lines: dict[KeyPath, int] = {}
        self.texts: dict[KeyPath, str] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            self.texts[path] = node.value
            return self._scalar(node, path)
        if id(node) in self._active:
            self._add(node, path, "refers to itself through an alias ('*')")
            return None
        if node.tag not in _COLLECTION_TAGS:
            self._add(node, path, f"uses the YAML tag {node.tag!r}, which is not supported here")
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        if node.tag in _PLAIN_TAGS:
            return self._loader.construct_object(node)
        if node.tag != _TIMESTAMP_TAG:
            self._add(node, path, f"uses the YAML tag {node.tag!r}, which is not supported here")
        return node.value

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._add(key_node, path, "has a key that is a list or a mapping; keys must be plain text")
                continue
            key = key_node.value
            if key in result:
                first = self.lines[(*path, key)]
                self._add(key_node, (*path, key), f"duplicate key {key!r} (first at line {first})")
                continue
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*path, key))
        return result

    def _add(self, node: yaml.Node, path: KeyPath, reason: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append(Problem(self._filename, line, path, NO_VALUE, "", None, reason))


_BAD_INDENT = "this line's indentation does not match the lines above it"
_UNCLOSED_LIST = "a '[' list is not closed by ']', or its items are not separated by ','"
_UNCLOSED_MAPPING = "a '{' mapping is not closed by '}', or its items are not separated by ','"
# PyYAML's messages, said the way a technician at the pole needs to hear them.
_PLAIN_WORDS = {
    "mapping values are not allowed here": "a ':' where it cannot be; put quotes around text that "
    "contains ': ', or check the indentation of this line",
    "could not find expected ':'": "this line is not 'key: value'; check the ':' after the key",
    "did not find expected key": _BAD_INDENT,
    "expected <block end>": _BAD_INDENT,
    "found character '\\t' that cannot start any token": "a tab character; indent with spaces only",
    "found undefined alias": "an alias ('*name') whose anchor ('&name') is not defined above it",
    "but found another document": "a second document ('---'); a file holds one document",
    "found unexpected end of stream": "the file ends inside quoted text; a closing quote is missing",
    "did not find expected ',' or ']'": _UNCLOSED_LIST,
    "expected ',' or ']'": _UNCLOSED_LIST,
    "did not find expected ',' or '}'": _UNCLOSED_MAPPING,
    "expected ',' or '}'": _UNCLOSED_MAPPING,
    "did not find expected '-' indicator": "a list item does not start with '-' in line with the others",
    "found unknown escape character": "an unknown backslash escape in \"...\" text; use '...' quotes",
    "found a tab character that violates indentation": "a tab character; indent with spaces only",
    "found duplicate anchor": "the same anchor ('&name') is defined twice",
}


def _syntax_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        reason = f"YAML syntax error: a character that YAML does not allow (U+{exc.character:04X})"
        return Problem(filename, line, (), NO_VALUE, "", None, reason, column)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(filename, None, (), NO_VALUE, "", None, f"YAML syntax error: {exc}")
    message = exc.problem or exc.context or "not valid YAML"
    plain = next((words for start, words in _PLAIN_WORDS.items() if message.startswith(start)), None)
    # An unclosed quote is noticed at the end of the file; its opening is the useful place.
    mark = exc.context_mark if message.startswith("found unexpected end") else exc.problem_mark
    mark = mark or exc.problem_mark or exc.context_mark
    reason = f"YAML syntax error: {plain or message}"
    if mark is None:
        return Problem(filename, None, (), NO_VALUE, "", None, reason)
    return Problem(filename, mark.line + 1, (), NO_VALUE, "", None, reason, mark.column + 1)
