"""YAML files that remember where every key came from.

A technician edits the agent's YAML over SSH and must be told exactly which line is wrong, so this
module composes the document with PyYAML (SafeLoader nodes, which carry marks) instead of loading it
straight to Python, and keeps the 1-based line of every mapping key and sequence element.  Duplicate
keys, which PyYAML would silently overwrite, are reported.  Mapping keys are always the text the file
spells (``on:`` stays ``"on"``); values are plain Python (dict, list, str, int, float, bool, None);
timestamps stay text so that the loader that owns them decides their meaning.

Remembering every place costs memory: a 10,000-item schedule took some 60 MB to load, which the
daemon never gave back.  :func:`load_yaml_data` builds the same plain data straight from the
parser's events for a file with nothing to report, and :func:`load_yaml` is asked only for one
that has (and then keeps one small place per line, not two full marks per node).

Findings are :class:`Problem` objects that render as ``FILE:LINE: key.path: <what is wrong>``.

No file can make the reader crash, hang or take the box's memory: only a regular file is opened
(a FIFO would block), and the file's size, its nesting depth, its number of values, what its
aliases repeat and the length of its numbers are all bounded (``MAX_*`` below), each refused with
its place.  :func:`reading` is the boundary around a whole reader: any other failure becomes the
reader's own error naming the file.
"""

from __future__ import annotations

import codecs
import enum
import hashlib
import itertools
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from foundation.errors import ConfigError, LoaError, ScheduleError
from foundation.file_kinds import not_regular
from foundation.findings import Finding, KeyPath, did_you_mean, format_key_path

__all__ = ["Finding", "KeyPath", "did_you_mean", "format_key_path"]

logger = logging.getLogger(__name__)


class Marker(enum.Enum):
    """Stand-ins for a value in a :class:`Problem`."""

    MISSING = "missing"  # the key is absent: rendered as "missing"
    NO_VALUE = "no value"  # the problem is about the key itself (unknown, duplicate): no value shown


MISSING = Marker.MISSING
NO_VALUE = Marker.NO_VALUE

_MAX_SHOWN = 60
# Bounds on what a file may hold.  A schedule of 10,000 items is about 2.1 MB and 170,000 values
# (and takes about 200 MB to read); a config file a few kB.  Past these a file is refused at once.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_VALUES = 300_000  # mappings, lists and scalars composed
MAX_DEPTH = 32  # Loa's files nest four levels at most; PyYAML composes recursively
MAX_REPEATED = 100_000  # values that aliases ('*name') repeat: ten of them nested repeat 10**10
MAX_NUMBER_CHARS = 100  # Python refuses int <-> text past 4300 digits; no setting needs 20
INTERNAL_FAILURE = "this is a bug in Loa"  # in the one problem :func:`reading` makes of a failure


def show_value(value: object) -> str:
    """A value as a technician would have typed it, quoted and shortened."""
    if isinstance(value, str):
        shown = repr(value[: 2 * _MAX_SHOWN])
    else:
        dumped = yaml.safe_dump(_preview(value), default_flow_style=True, width=10_000).strip()
        shown = repr(dumped.removesuffix("\n...").strip())
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 4] + "...'"


def _preview(value: object, depth: int = 3) -> object:
    """Enough of ``value`` to show its start: a list of 300,000 items is not dumped whole."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 300:
        return f"<a number of {value.bit_length() * 3 // 10} digits or more>"  # str() refuses 4300
    if isinstance(value, list | tuple):
        return [_preview(item, depth - 1) for item in value[:8]] if depth > 0 or not value else ["..."]
    if isinstance(value, dict):
        if depth <= 0 and value:
            return {"...": "..."}
        return {str(key): _preview(item, depth - 1) for key, item in itertools.islice(value.items(), 8)}
    return value


_GLUED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):([^\s:][^\n]*)")


def split_glued(text: str) -> tuple[str, str] | None:
    """``"id:xa-01"`` -> ``("id", "xa-01")``: a key and its value with no space after the ':'.

    YAML reads such a line as one piece of text, so callers that know which keys may stand there
    use this to say "missing space after ':'" instead of something puzzling.
    """
    match = _GLUED.fullmatch(text.strip(" "))
    return (match.group(1), match.group(2).rstrip()) if match else None


def glued_hint(key: str, value: str) -> str:
    """How to write a glued ``key:value`` right: ``write 'id: xa-01'``."""
    return f"write {f'{key}: {value}'!r}"


MISSING_SPACE = "missing space after ':'"
TOP_LEVEL_EXPECTED = "a mapping (key: value lines)"  # what a file's top level must be

_RESOLVER = yaml.resolver.Resolver()
_PLAIN_TYPES = {
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:bool": bool,
}


def plain_type(text: str) -> type | None:
    """What YAML would make of ``text`` written without quotes: int, float, bool, or None for text."""
    return _PLAIN_TYPES.get(_RESOLVER.resolve(yaml.ScalarNode, text, (True, False)))


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
    quotes: dict[KeyPath, str] = field(default_factory=dict)  # the quote of every quoted scalar
    scalar_lines: dict[KeyPath, int] = field(default_factory=dict)  # where each scalar value starts
    refused: set[KeyPath] = field(default_factory=set)  # values already in ``problems`` (read as None)
    digest: str = ""  # SHA-256 of the bytes read, when read from a file

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

    def spelling_of(self, key_path: KeyPath) -> str | None:
        """Like :meth:`text_of`, with the quotes the file puts around it (``'"17"'``)."""
        text = self.texts.get(key_path)
        quote = self.quotes.get(key_path, "")
        return None if text is None else f"{quote}{text}{quote}"

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
    raw = _read_bounded(path, error_class)
    document = load_yaml_text(_decode(raw, path, error_class), str(path), error_class)
    document.digest = hashlib.sha256(raw).hexdigest()
    return document


@dataclass(frozen=True)
class YamlData:
    """A good file's plain data, and the SHA-256 of its bytes."""

    data: dict[str, Any]
    digest: str


def load_yaml_data(
    path: Path, error_class: type[ConfigError | ScheduleError] = ConfigError
) -> YamlData | None:
    """The plain data of a good file, as ``load_yaml(path).data``, built straight from the parser's
    events: no nodes and no places are kept, so a 10,000-item schedule is read in a fraction of
    the memory :func:`load_yaml` takes (issue 7).

    None whenever :func:`load_yaml` might have something to say about the file (a syntax error, a
    structural finding, an alias, a tag, one of the bounds): call it then, for the problems and
    their places.  Raises ``error_class`` as :func:`load_yaml` does when the file cannot be read.
    """
    raw = _read_bounded(path, error_class)
    text = _decode(raw, path, error_class)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError:
        return None
    try:
        data = _EventBuilder(loader).document()
    except (_AskLoadYaml, yaml.YAMLError, ValueError, KeyError):  # a tagged value that is not valid
        return None
    finally:
        loader.dispose()
    return YamlData(data, hashlib.sha256(raw).hexdigest()) if isinstance(data, dict) else None


def _decode(raw: bytes, path: Path, error_class: type[ConfigError | ScheduleError]) -> str:
    try:
        return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error_class([_encoding_problem(exc, str(path))]) from exc


def _read_bounded(path: Path, error_class: type[ConfigError | ScheduleError]) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most MAX_FILE_BYTES.

    O_NONBLOCK makes opening a FIFO return at once (it is then refused by its kind); on a regular
    file the flag changes nothing.
    """

    def refuse(reason: str, expected: str = "") -> LoaError:
        return error_class([Problem(str(path), None, (), NO_VALUE, expected, None, reason)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL in the path
        raise refuse("cannot read: the path holds a NUL character") from exc
    try:
        info = os.fstat(fd)
        kind = not_regular(info.st_mode)
        if kind is not None:
            raise refuse(f"cannot read: it is {kind}, not a file")
        if info.st_size > MAX_FILE_BYTES:
            limit = f"at most {MAX_FILE_BYTES} bytes ({MAX_FILE_BYTES // 1024 // 1024} MiB)"
            raise refuse(f"the file is {info.st_size} bytes", limit)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:  # it grew since fstat
            raise refuse(f"the file is more than {MAX_FILE_BYTES} bytes", f"at most {MAX_FILE_BYTES} bytes")
        return raw
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def load_yaml_text(
    text: str, filename: str, error_class: type[ConfigError | ScheduleError] = ConfigError
) -> YamlDocument:
    """Like :func:`load_yaml` for text already in memory, shown in messages as ``filename``."""
    try:
        root, builder, data = _compose(text, filename)
    except _Refused as exc:
        raise error_class([exc.problem(filename)]) from None
    except yaml.YAMLError as exc:
        raise error_class([_syntax_problem(exc, text, filename)]) from exc
    document = YamlDocument(
        Path(filename),
        data,
        builder.problems,
        builder.lines,
        builder.texts,
        builder.quotes,
        builder.scalar_lines,
        builder.refused,
    )
    if root is None:
        document.problems.insert(0, Problem(filename, 1, (), NO_VALUE, "a mapping", reason="file is empty"))
    elif not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        top = document.problem((), NO_VALUE, TOP_LEVEL_EXPECTED, None, f"the top level is {kind}")
        document.problems.insert(0, top)
    return document


@contextmanager
def reading(filename: object, error_class: type[ConfigError | ScheduleError]) -> Iterator[None]:
    """The boundary around a reader of an outside file: its own errors pass, and any other failure
    (which the bounds above should make impossible) becomes ``error_class`` naming the file, so
    that no input can stop the daemon or reach a technician as a traceback."""
    try:
        yield
    except LoaError:
        raise
    except Exception as exc:
        logger.exception("reading %s failed", filename)
        reason = f"could not be read ({type(exc).__name__}: {str(exc)[:200]}); {INTERNAL_FAILURE}"
        problem = Problem(str(filename), None, (), NO_VALUE, "", "please report it with the file", reason)
        raise error_class([problem]) from exc


class _Refused(Exception):
    """The file is past one of the bounds: where, and what."""

    def __init__(self, mark: Any, reason: str, expected: str) -> None:  # a yaml.Mark, or None
        super().__init__(reason)
        self.mark, self.reason, self.expected = mark, reason, expected

    def problem(self, filename: str) -> Problem:
        line = self.mark.line + 1 if self.mark is not None else None
        column = self.mark.column + 1 if self.mark is not None else None
        return Problem(filename, line, (), NO_VALUE, self.expected, None, self.reason, column)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a file that nests too deep, holds too many values or whose
    aliases repeat too many, before it takes the memory or the stack (PyYAML composes one Python
    call per level; an alias costs nothing to compose but is written out again by the builder)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._repeated = 0
        self._sizes: dict[int, int] = {}  # composed node -> values it holds with aliases written out

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)  # type: ignore[arg-type]
            self._repeated += self._sizes.get(id(node), 1)  # 1: an alias to a node being composed
            if self._repeated > MAX_REPEATED:
                reason = f"aliases ('*name') repeat more than {MAX_REPEATED} values"
                raise _Refused(event.start_mark, reason, "fewer aliases, or the values written out")
            return node
        self._values += 1
        if self._values > MAX_VALUES:
            reason = f"the file has more than {MAX_VALUES} values (keys, list items and the like)"
            raise _Refused(event.start_mark, reason, "a smaller file; 10,000 items hold about 170,000")
        collection = isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent)
        if collection and self._depth >= MAX_DEPTH:
            reason = f"lists and mappings nested more than {MAX_DEPTH} levels deep"
            raise _Refused(event.start_mark, reason, "a few levels, as in the examples")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in _children(node))
        return node


def _children(node: yaml.Node | None) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


class _Place:
    """The line a composed node starts on: all the builder and PyYAML's messages read of a Mark."""

    __slots__ = ("line", "name")
    column = None  # not kept: MarkedYAMLError.__str__ compares it

    def __init__(self, name: str, line: int) -> None:
        self.name, self.line = name, line

    def __str__(self) -> str:
        return f'  in "{self.name}", line {self.line + 1}'


class _LeanLoader(_BoundedLoader):
    """A SafeLoader whose nodes are small: a 10,000-item schedule composes over 100,000 nodes, and
    their two full marks each (index, buffer, pointer, and the end) were most of the memory its
    loading took (issue 7).  Nodes keep their line, one :class:`_Place` per line."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._places: dict[int, _Place] = {}

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        node = super().compose_node(parent, index)
        if node is None or isinstance(node.start_mark, _Place):  # an alias: composed already
            return node
        line = node.start_mark.line
        place = self._places.get(line) or self._places.setdefault(line, _Place(node.start_mark.name, line))
        node.start_mark, node.end_mark = place, None
        return node


def _compose(text: str, filename: str) -> tuple[yaml.Node | None, _Builder, Any]:
    loader = _LeanLoader(text)  # bounded; checks the characters already, so may raise ReaderError
    try:
        root = loader.get_single_node()
        builder = _Builder(loader, filename)
        return root, builder, None if root is None else builder.build(root, ())
    finally:
        loader.dispose()


_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str"))
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _Builder:
    """Turns composed nodes into plain data, recording lines, source texts and problems."""

    def __init__(self, loader: _LeanLoader, filename: str) -> None:
        self._loader = loader
        self._filename = filename
        self._active: set[int] = set()  # nodes being built: an alias to one of them is a cycle
        self.refused: set[KeyPath] = set()
        self.lines: dict[KeyPath, int] = {}
        self.texts: dict[KeyPath, str] = {}
        self.quotes: dict[KeyPath, str] = {}
        self.scalar_lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            self.texts[path] = node.value
            self.scalar_lines[path] = node.start_mark.line + 1
            if node.style in ("'", '"'):
                self.quotes[path] = node.style
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
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            self.refused.add(path)
            reason = f"is a number of {len(node.value)} characters"
            line = node.start_mark.line + 1
            self.problems.append(
                Problem(self._filename, line, path, node.value, f"at most {MAX_NUMBER_CHARS}", None, reason)
            )
            return None
        if node.tag in _PLAIN_TAGS:
            try:
                return _construct(self._loader, node)
            except (ValueError, KeyError):  # an explicit tag on a value it does not fit: !!int abc
                self.refused.add(path)
                kind = node.tag.rsplit(":", 1)[-1]
                reason = f"is not a valid {kind} (its tag !!{kind} says it must be)"
                line = node.start_mark.line + 1
                problem = Problem(self._filename, line, path, node.value, "", "drop the tag", reason)
                self.problems.append(problem)
                return None
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


def _construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """The value of a plain scalar (null, bool, int, float, str), as PyYAML makes it."""
    value = loader.construct_object(node)
    del loader.constructed_objects[node]  # PyYAML would keep every value to the document's end
    return value


class _AskLoadYaml(Exception):
    """The file has what only :func:`load_yaml` judges: an alias, a tag, a duplicate key..."""


class _EventBuilder:
    """Builds plain data from a loader's events the way :class:`_Builder` builds it from nodes,
    for files :func:`load_yaml` would find nothing wrong with; raises _AskLoadYaml otherwise."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self._loader = loader
        self._open: list[list[Any]] = []  # [mapping, its key waiting for a value] or [sequence]
        self._root: Any = None
        self._values = 0

    def document(self) -> Any:
        loader = self._loader
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None  # an empty file
        loader.get_event()  # document start
        while not loader.check_event(yaml.DocumentEndEvent):
            self._take(loader.get_event())
        loader.get_event()
        if not loader.check_event(yaml.StreamEndEvent):
            raise _AskLoadYaml("a second document")
        return self._root

    def _take(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self._open.pop()
            return
        if isinstance(event, yaml.AliasEvent):
            raise _AskLoadYaml("an alias")
        self._values += 1
        if self._values > MAX_VALUES or len(self._open) > MAX_DEPTH:
            raise _AskLoadYaml("past a bound: load_yaml says where")
        top = self._open[-1] if self._open else None
        if top is not None and isinstance(top[0], dict) and top[1] is None:  # a mapping key
            if not isinstance(event, yaml.ScalarEvent) or event.value in top[0]:
                raise _AskLoadYaml("a key that is not text, or a duplicate key")
            top[1] = event.value
            return
        value = self._value(event)
        if top is None:
            self._root = value
        elif isinstance(top[0], dict):
            top[0][top[1]], top[1] = value, None
        else:
            top[0].append(value)
        if isinstance(event, yaml.CollectionStartEvent):
            self._open.append([value, None])

    def _value(self, event: yaml.Event) -> Any:
        if isinstance(event, yaml.ScalarEvent):
            tag = self._tag(event, yaml.ScalarNode, event.value)
            if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER_CHARS:
                raise _AskLoadYaml("a number past its bound")
            if tag in _PLAIN_TAGS:
                return _construct(self._loader, yaml.ScalarNode(tag, event.value))
            if tag == _TIMESTAMP_TAG:
                return event.value
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            mapping = isinstance(event, yaml.MappingStartEvent)
            tag = self._tag(event, yaml.MappingNode if mapping else yaml.SequenceNode, None)
            if tag in _COLLECTION_TAGS:
                return {} if mapping else []
        raise _AskLoadYaml(f"the tag of {event}")

    def _tag(
        self, event: yaml.ScalarEvent | yaml.CollectionStartEvent, kind: type[yaml.Node], value: str | None
    ) -> str:
        """The event's tag, resolved as the composer resolves it."""
        if event.tag is None or event.tag == "!":
            return str(self._loader.resolve(kind, value, event.implicit))
        return str(event.tag)


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
    "expected '<document start>'": "the file starts with a value on its own, so nothing can follow it; "
    "the top level must be 'key: value' lines",
}


def _encoding_problem(exc: UnicodeDecodeError, filename: str) -> Problem:
    data = exc.object
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line = data.count(b"\n", 0, exc.start) + 1
    column = len(data[line_start : exc.start].decode("utf-8")) + 1  # all before the bad byte is UTF-8
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        found = "it is UTF-16"  # what Windows Notepad calls "Unicode"
    else:
        found = f"it has byte 0x{data[exc.start]:02X} here"
    reason = f"the file is not UTF-8 text ({found}); save it as UTF-8"
    return Problem(filename, line, (), NO_VALUE, "", None, reason, column)


_READ_ON = ("mapping values are not allowed here", "expected '<document start>'")
_LONE_TOP = "expected '<document start>'"


def _glued_line(exc: yaml.MarkedYAMLError, message: str, text: str, filename: str) -> Problem | None:
    """A ``key:value`` line (no space after ':') that PyYAML reports as some other syntax error.

    It is either the simple key PyYAML was scanning, or, when the next ``key: value`` line was read
    as its continuation, the line just above the misplaced ':'.
    """
    lines = text.splitlines()  # the same line breaks as PyYAML's: others are refused as characters
    if message.startswith("could not find expected ':'") and exc.context_mark is not None:
        index = exc.context_mark.line
    elif message.startswith(_READ_ON) and exc.problem_mark is not None:
        before = lines[: exc.problem_mark.line]
        above = [i for i, line in enumerate(before) if line.strip(" ")[:1] not in ("", "#")]
        # The line above the ':', or the first line if the file began with a lone value.
        index = (above[0] if message.startswith(_LONE_TOP) else above[-1]) if above else -1
    else:
        return None
    if not 0 <= index < len(lines):
        return None
    line = lines[index]
    body = line.lstrip(" ")
    while body.startswith("- "):
        body = body[2:].lstrip(" ")
    glued = split_glued(re.split(r"\s#", body, maxsplit=1)[0])
    if glued is None:
        return None
    column = len(line) - len(body) + 1
    reason = f"YAML syntax error: {MISSING_SPACE}"
    return Problem(filename, index + 1, (), NO_VALUE, "", glued_hint(*glued), reason, column)


def _syntax_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        reason = f"YAML syntax error: a character that YAML does not allow (U+{exc.character:04X})"
        return Problem(filename, line, (), NO_VALUE, "", None, reason, column)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(filename, None, (), NO_VALUE, "", None, f"YAML syntax error: {exc}")
    message = exc.problem or exc.context or "not valid YAML"
    glued = _glued_line(exc, message, text, filename)
    if glued is not None:
        return glued
    plain = next((words for start, words in _PLAIN_WORDS.items() if message.startswith(start)), None)
    # An unclosed quote is noticed at the end of the file, and a line that is not 'key: value' at
    # the start of the next one: where they begin is the useful place.
    starts = ("found unexpected end", "could not find expected ':'")
    mark = exc.context_mark if message.startswith(starts) else exc.problem_mark
    mark = mark or exc.problem_mark or exc.context_mark
    reason = f"YAML syntax error: {plain or message}"
    if mark is None:
        return Problem(filename, None, (), NO_VALUE, "", None, reason)
    return Problem(filename, mark.line + 1, (), NO_VALUE, "", None, reason, mark.column + 1)
