"""load_yaml_data (the schedule's lean reader) gives what load_yaml gives, or None when load_yaml
has something to say about the file."""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.errors import ConfigError
from foundation.yaml_source import load_yaml_data, load_yaml_text

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = st.sampled_from(["a", "id", "on", "yes", "17", "1.5", "null", "at", "x y", "rrule", "items"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["on", "off", "yes", "~", "0x1F", "017", "1_000", "1:20", "2025-03-01 06:30", "a: b"]),
    st.dates(min_value=date(1900, 1, 1)),
    st.datetimes(min_value=datetime(1900, 1, 1)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def dumped(draw: st.DrawFn) -> str:
    """Well-formed YAML in the styles PyYAML writes: block, flow, or mixed."""
    data = draw(st.dictionaries(KEYS, VALUES, max_size=5))
    style = draw(st.sampled_from([True, False, None]))
    return yaml.safe_dump(data, default_flow_style=style, allow_unicode=draw(st.booleans()), sort_keys=False)


# Lines a technician might write, good and bad: aliases, tags, duplicate keys, complex keys, more
# documents, block scalars, empty values.
SNIPPETS = [
    "a: 1",
    "a: &x {k: 1}",
    "b: *x",
    "c: [&y 1, *y]",
    "d: !!str 17",
    "e: !!int abc",
    "f: !!bool maybe",
    "g: !foo x",
    "h: !!binary aGk=",
    "i: !!set {a, b}",
    "j: !!omap [a: 1]",
    "? [k, l]\n: m",
    "? n\n: o",
    "---",
    "...",
    "- p",
    "q:",
    "r: |\n  text\n  more",
    "s: 'quoted: yes'",
    't: "\\u00e9"',
    "u: {v: [1, {w: x}]}",
    "<<: {z: 1}",
    "~: null key",
    "# a comment",
    "",
    "items:\n  - {id: n1, audio: a.wav, rrule: 'FREQ=DAILY', dtstart: 2025-03-01 06:30}\n  - {id: n2}",
]


def loaded(text: str) -> tuple[Any, dict[str, Any] | None]:
    """(what load_yaml says: its data, or the problems it raised or found; load_yaml_data's answer)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.yaml"
        path.write_text(text, encoding="utf-8")
        found = load_yaml_data(path)
        lean = found.data if found is not None else None
    try:
        document = load_yaml_text(text, "f.yaml")
    except ConfigError as exc:
        return ("raised", [str(p) for p in exc.problems]), lean
    except (ValueError, KeyError) as exc:  # a tagged value PyYAML cannot make: load_yaml lets it out
        return ("raised", repr(exc)), lean
    if document.problems:
        return ("problems", [str(p) for p in document.problems]), lean
    return ("data", document.data), lean


@SETTINGS
@given(dumped())
def test_well_formed_files_give_the_same_data(text: str) -> None:
    (kind, full), lean = loaded(text)
    assert kind == "data"
    assert lean == full


@SETTINGS
@given(st.lists(st.sampled_from(SNIPPETS), min_size=0, max_size=6))
def test_the_same_data_or_none_when_load_yaml_has_something_to_say(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    (kind, full), lean = loaded(text)
    if kind != "data" or not isinstance(full, dict):
        assert lean is None, f"{kind}: {full}"
    elif "*" not in text and "!" not in text:  # nothing that only load_yaml judges
        assert lean == full
    else:
        assert lean in (None, full)
