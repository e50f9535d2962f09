"""foundation.yaml_source: line tracking, duplicate keys, syntax errors in plain words, Problem rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.errors import ConfigError, ScheduleError
from foundation.yaml_source import (
    MISSING,
    NO_VALUE,
    Finding,
    KeyPath,
    Problem,
    format_key_path,
    load_yaml,
    load_yaml_text,
    plain_type,
    split_glued,
)

NESTED = """\
device:
  id: xa-1
gpio:
  amplifiers:
    - name: zone-1
      pin: 17

    - {name: zone-2, pin: 18}
  preroll: 2s
"""


def syntax_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(text, "agent.yaml")
    assert len(caught.value.problems) == 1
    return str(caught.value)


def test_lines_of_keys_and_list_items() -> None:
    document = load_yaml_text(NESTED, "agent.yaml")
    assert document.problems == []
    assert document.line_of(("device", "id")) == 2
    assert document.line_of(("gpio", "amplifiers")) == 4
    assert document.line_of(("gpio", "amplifiers", 0)) == 5
    assert document.line_of(("gpio", "amplifiers", 0, "pin")) == 6
    assert document.line_of(("gpio", "amplifiers", 1)) == 8
    assert document.line_of(("gpio", "amplifiers", 1, "pin")) == 8
    assert document.line_of(("gpio", "preroll")) == 9


def test_line_of_a_missing_key_is_its_nearest_ancestors() -> None:
    document = load_yaml_text(NESTED, "agent.yaml")
    assert document.line_of(("gpio", "amplifiers", 1, "active_high")) == 8
    assert document.line_of(("gpio", "status_led")) == 3
    assert document.line_of(("fm", "frequency")) == 1


def test_data_is_plain_python_with_keys_as_spelled() -> None:
    text = "on: yes\nn: 0x1F\nf: 1.5\nz: ~\nwhen: 2025-03-01\nlist: [a, 'b']\n"
    document = load_yaml_text(text, "agent.yaml")
    assert document.data == {
        "on": True,
        "n": 31,
        "f": 1.5,
        "z": None,
        "when": "2025-03-01",
        "list": ["a", "b"],
    }
    assert document.text_of(("on",)) == "yes"
    assert document.text_of(("n",)) == "0x1F"


def test_duplicate_keys_at_any_depth_name_both_lines() -> None:
    text = "a: 1\nb:\n  c: 2\n  d:\n    - {e: 1, e: 2}\n  c: 3\na: 4\n"
    document = load_yaml_text(text, "agent.yaml")
    messages = [str(problem) for problem in document.problems]
    assert messages == [
        "agent.yaml:5: b.d[0].e: duplicate key 'e' (first at line 5)",
        "agent.yaml:6: b.c: duplicate key 'c' (first at line 3)",
        "agent.yaml:7: a: duplicate key 'a' (first at line 1)",
    ]
    assert document.data["a"] == 1  # the first one stays; the file is refused anyway


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("a: 1\nb: c: d\n", "agent.yaml:2:5:", "put quotes around text that contains ': '"),
        ("a:\n\t- 1\n", "agent.yaml:2:1:", "indent with spaces only"),
        ("a: 1\nb: 'unclosed\n", "agent.yaml:2:4:", "a closing quote is missing"),
        ("a:\n  b: 1\n c: 2\n", "agent.yaml:3:2:", "indentation does not match"),
        ("a: [1, 2\nb: 3\n", "agent.yaml:2:2:", "'[' list is not closed"),
        ("a: 1\n---\nb: 2\n", "agent.yaml:2:1:", "a file holds one document"),
        ("a: *nowhere\n", "agent.yaml:1:4:", "anchor ('&name') is not defined"),
        ("a: b\x00\n", "agent.yaml:1:5:", "a character that YAML does not allow (U+0000)"),
    ],
)
def test_syntax_errors_give_line_column_and_plain_words(text: str, where: str, words: str) -> None:
    message = syntax_error(text)
    assert message.startswith(where + " YAML syntax error: ")
    assert words in message


@pytest.mark.parametrize(
    ("text", "where", "write"),
    [
        ("device:\n  id:xa-01\n  timezone: UTC\n", "2:3", "id: xa-01"),  # read on into the next line
        ("device:\n  timezone: UTC\n  id:xa-01\n", "3:3", "id: xa-01"),
        ("device:\n  id: x\n\nstorage:/var/lib/loa  # state\n", "4:1", "storage: /var/lib/loa"),
        ("storage:/var/lib/loa\n# the device\ndevice:\n  id: x\n", "1:1", "storage: /var/lib/loa"),
        ("items:\n  - id:a\n    audio: a.wav\n", "2:5", "id: a"),
        ("items:\n  - id: a\n    audio:a.wav\n", "3:5", "audio: a.wav"),
    ],
)
def test_missing_space_after_colon_is_named(text: str, where: str, write: str) -> None:
    assert (
        syntax_error(text)
        == f"agent.yaml:{where}: YAML syntax error: missing space after ':' (write {write!r})"
    )


def test_a_line_that_is_not_key_value_is_placed_on_itself() -> None:
    message = syntax_error("device:\n  id: x\n  just some words\nstorage: {}\n")
    assert message.startswith("agent.yaml:3:3: YAML syntax error: this line is not 'key: value'")


def test_split_glued() -> None:
    assert split_glued("id:xa-01") == ("id", "xa-01")
    assert split_glued("  dir:/var/lib/loa data ") == ("dir", "/var/lib/loa data")
    for text in ("id: xa-01", "05:00-21:00", "id:", "a::b", "x y:z", "volume:80\n"):
        assert split_glued(text) is None, text


def test_quotes_are_remembered() -> None:
    document = load_yaml_text("a: '17'\nb: \"true\"\nc: 17\nd: |\n  text\n", "agent.yaml")
    assert document.data == {"a": "17", "b": "true", "c": 17, "d": "text\n"}
    assert [document.spelling_of((key,)) for key in "abcd"] == ["'17'", '"true"', "17", "text\n"]
    assert document.scalar_lines[("d",)] == 4
    assert [plain_type(text) for text in ("17", "0x1F", "1.5", "yes", "true", "17a", "2.048MHz")] == [
        int,
        int,
        float,
        bool,
        bool,
        None,
        None,
    ]


def test_empty_file_and_top_level_not_a_mapping() -> None:
    for text in ("", "# only a comment\n\n"):
        document = load_yaml_text(text, "agent.yaml")
        assert [str(problem) for problem in document.problems] == [
            "agent.yaml:1: file is empty: expected a mapping"
        ]
    document = load_yaml_text("\n- a\n- b\n", "agent.yaml")
    assert [str(problem) for problem in document.problems] == [
        "agent.yaml:2: the top level is a list: expected a mapping (key: value lines)"
    ]


def test_unsupported_tags_and_recursive_aliases_are_problems() -> None:
    document = load_yaml_text("a: !secret x\nb: &loop [1, *loop]\nc: !!binary aGk=\n", "agent.yaml")
    messages = [str(problem) for problem in document.problems]
    assert messages[0] == "agent.yaml:1: a: uses the YAML tag '!secret', which is not supported here"
    assert messages[1] == "agent.yaml:2: b[1]: refers to itself through an alias ('*')"
    assert messages[2].startswith("agent.yaml:3: c: uses the YAML tag 'tag:yaml.org,2002:binary'")


def test_load_yaml_reads_files_and_reports_unreadable_ones(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text("\ufeffitems: []\n", encoding="utf-8")  # a BOM, as Windows editors write
    document = load_yaml(path, ScheduleError)
    assert document.data == {"items": []}
    assert document.path == path
    with pytest.raises(ScheduleError, match=r"missing\.yaml: cannot read: No such file or directory"):
        load_yaml(tmp_path / "missing.yaml", ScheduleError)
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert (
        str(caught.value)
        == f"{path}:1:4: the file is not UTF-8 text (it has byte 0xFF here); save it as UTF-8"
    )


@pytest.mark.parametrize(
    ("raw", "where", "found"),
    [
        ("items:\n  - id: Hà\n".encode("cp1258"), "2:10", "it has byte 0xE0 here"),
        ("# Sơn\nitems: [Hà]\n".encode()[:-5] + b"\xc3", "2:9", "it has byte 0xC3 here"),  # cut short
        (b"\xef\xbb\xbf# \xc6\xa1\xff\n", "1:4", "it has byte 0xFF here"),  # after a BOM: not counted
        ("items: []\n".encode("utf-16-be").join([b"\xfe\xff", b""]), "1:1", "it is UTF-16"),
    ],
)
def test_a_schedule_file_that_is_not_utf8(tmp_path: Path, raw: bytes, where: str, found: str) -> None:
    path = tmp_path / "lich-phat.yaml"
    path.write_bytes(raw)
    with pytest.raises(ScheduleError) as caught:
        load_yaml(path, ScheduleError)
    assert str(caught.value) == f"{path}:{where}: the file is not UTF-8 text ({found}); save it as UTF-8"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_load_or_raise_a_placed_error(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("bytes") / "agent.yaml"
    path.write_bytes(raw)
    try:
        load_yaml(path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}:")


def test_problem_renderings() -> None:
    expected = "a duration with a unit (ms, s, min, h), e.g. 2s"
    no_unit = Problem("agent.yaml", 12, ("gpio", "preroll"), "2", expected, reason="has no unit")
    assert str(no_unit) == f"agent.yaml:12: gpio.preroll: '2' has no unit: expected {expected}"
    unknown = Problem(
        "agent.yaml", 7, ("gpio", "preroll_ms"), NO_VALUE, "", "did you mean 'preroll'?", "unknown key"
    )
    assert str(unknown) == "agent.yaml:7: gpio.preroll_ms: unknown key (did you mean 'preroll'?)"
    missing = Problem("agent.yaml", 3, ("device", "id"), MISSING, "a device id such as xa-quang-son-01")
    assert str(missing) == "agent.yaml:3: device.id: missing: expected a device id such as xa-quang-son-01"
    plain = Problem("s.yaml", None, ("items", 0, "volume"), 150, "a whole number from 0 to 100")
    assert str(plain) == "s.yaml: items[0].volume: value '150': expected a whole number from 0 to 100"
    long = Problem("s.yaml", 1, ("a",), "x" * 200, "short text")
    assert len(str(long)) < 120


def test_format_key_path() -> None:
    assert format_key_path(("gpio", "amplifiers", 1, "pin")) == "gpio.amplifiers[1].pin"
    assert format_key_path(("items", 0)) == "items[0]"
    assert format_key_path(()) == ""


def test_problems_from_findings_places_them_on_their_lines() -> None:
    text = "items:\n  - id: a\n    volume: 150\n  - id: b\n    loop: on\n"
    document = load_yaml_text(text, "schedule.yaml")
    problems = document.problems_from(
        [
            Finding(("items", 0, "volume"), 150, "a whole number from 0 to 100"),
            (("items", 1, "loop"), True, "a known key", "did you mean 'loops'?"),
            Finding(("items", 1, "audio"), MISSING, "an audio file", None),
            Finding(("items", 0, "at"), None, "a start time", "this key is required"),
        ]
    )
    assert [str(problem) for problem in problems] == [
        "schedule.yaml:3: items[0].volume: value '150': expected a whole number from 0 to 100",
        "schedule.yaml:5: items[1].loop: value 'on': expected a known key (did you mean 'loops'?)",
        "schedule.yaml:4: items[1].audio: missing: expected an audio file",
        "schedule.yaml:2: items[0].at: missing: expected a start time (this key is required)",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80))
def test_arbitrary_text_loads_or_raises_config_error(text: str) -> None:
    try:
        document = load_yaml_text(text, "fuzz.yaml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.yaml")
    else:
        assert all(str(problem).startswith("fuzz.yaml") for problem in document.problems)


# PyYAML itself does not read back line separators it wrote inside quotes, so they are left out.
_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(_chars, max_size=12)
)
_keys = st.text(_chars, min_size=1, max_size=8)
_data = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3)
)


def _paths(value: object, prefix: KeyPath = ()) -> list[KeyPath]:
    children: list[tuple[str | int, object]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    paths = [prefix]
    for key, child in children:
        paths.extend(_paths(child, (*prefix, key)))
    return paths


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _data, min_size=1, max_size=4))
def test_dumped_data_reads_back_with_a_line_for_every_path(data: dict[str, object]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    document = load_yaml_text(text, "round.yaml")
    assert document.problems == []
    assert document.data == data
    line_count = text.count("\n") + 1
    for path in _paths(data):
        line = document.lines.get(path)
        assert line is not None and 1 <= line <= line_count, path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "pin: !!int abc\n",
            "f.yaml:1: pin: 'abc' is not a valid int (its tag !!int says it must be) (drop the tag)",
        ),
        (
            "on: !!bool maybe\n",
            "f.yaml:1: on: 'maybe' is not a valid bool (its tag !!bool says it must be) (drop the tag)",
        ),
        (
            "x: !!float twelve\n",
            "f.yaml:1: x: 'twelve' is not a valid float (its tag !!float says it must be) (drop the tag)",
        ),
    ],
)
def test_an_explicit_tag_on_a_value_it_does_not_fit_is_a_problem_not_a_crash(text: str, problem: str) -> None:
    document = load_yaml_text(text, "f.yaml")
    assert [str(p) for p in document.problems] == [problem]
