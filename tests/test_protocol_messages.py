"""Topics and messages: round trips, the status session rule, and strict, clean refusals."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.json_wire import ProtocolError
from protocol.manifest import ManifestNotice, decode_manifest_notice
from protocol.messages import (
    Ack,
    AckResult,
    Record,
    StatusMessage,
    decode_ack,
    decode_record,
    decode_state,
    decode_status,
    status_applies,
)
from protocol.topics import Kind, Topic, device_subscriptions, device_topic, group_topic, parse_topic

AT = datetime(2099, 1, 1, tzinfo=UTC)


def test_topics_round_trip_and_refuse_wildcards() -> None:
    for kind in Kind:
        assert parse_topic(device_topic("xa-quang-son-01", kind)) == Topic(kind, device_id="xa-quang-son-01")
    assert parse_topic(group_topic("xa-quang-son")) == Topic(Kind.CMD, group="xa-quang-son")
    for bad in (
        "loa/v1/+/cmd",
        "loa/v1/a#b/cmd",
        "loa/v2/box-1/cmd",
        "loa/v1/box-1/reboot",
        "loa/v1/group/x/ack",
    ):
        with pytest.raises(ProtocolError):
            parse_topic(bad)
    with pytest.raises(ProtocolError):
        device_topic("box/1", Kind.CMD)


def test_manifest_notices_have_a_device_and_a_group_topic_and_a_strict_payload() -> None:
    assert parse_topic("loa/v1/group/xa-quang-son/manifest") == Topic(Kind.MANIFEST, group="xa-quang-son")
    assert str(Topic(Kind.MANIFEST, group="xa-quang-son")) == "loa/v1/group/xa-quang-son/manifest"
    assert device_subscriptions("box-1", frozenset({"xa"})) == [
        "loa/v1/box-1/cmd", "loa/v1/box-1/status", "loa/v1/box-1/manifest",
        "loa/v1/group/xa/cmd", "loa/v1/group/xa/manifest",
    ]  # fmt: skip
    with pytest.raises(ProtocolError):
        group_topic("xa", Kind.STATE)
    assert decode_manifest_notice(ManifestNotice("17").to_json()) == ManifestNotice("17")
    for bad in (
        '{"v": 1, "version": "017"}',
        '{"v": 1, "version": 17}',
        '{"v": 1}',
        '{"v": 1, "version": "1", "x": 2}',
    ):
        with pytest.raises(ProtocolError):
            decode_manifest_notice(bad)


def test_a_stale_will_never_marks_a_newer_session_offline() -> None:
    online_43 = StatusMessage(True, 43, AT)
    will_42 = decode_status(StatusMessage(False, 42, AT).to_json())
    assert not status_applies(online_43, will_42)
    assert status_applies(online_43, StatusMessage(False, 43, AT))
    assert status_applies(None, will_42)
    assert status_applies(StatusMessage(False, 43, AT), StatusMessage(True, 1, AT))  # counter restarted


def test_records_and_acks_round_trip() -> None:
    record = Record(Kind.EVENTS, "box-1", 7, AT, {"kind": "agent.started", "severity": "info", "detail": {}})
    assert decode_record(Kind.EVENTS, record.to_json(), "box-1") == record
    ack = Ack("cmd-1", AckResult.REJECTED, AT, "expired", "expired at ...")
    assert decode_ack(ack.to_json()) == ack


def test_a_record_from_another_device_or_with_a_bad_id_is_refused() -> None:
    record = Record(Kind.EVENTS, "box-1", 7, AT, {"kind": "agent.started", "severity": "info", "detail": {}})
    with pytest.raises(ProtocolError, match="an id of device box-2"):
        decode_record(Kind.EVENTS, record.to_json(), "box-2")
    with pytest.raises(ProtocolError, match="seq"):
        decode_record(Kind.EVENTS, record.to_json().replace("box-1:7", "box-1:0"))


def test_every_problem_is_listed_with_a_hint() -> None:
    with pytest.raises(ProtocolError) as error:
        decode_status('{"v": 2, "status": "onlne", "sesion": 1, "at": "yesterday"}')
    text = str(error.value)
    for expected in ("v: value 2", "did you mean 'online'?", "session", "did you mean 'session'?", "at:"):
        assert expected in text
    assert len(error.value.problems) == 5


def test_a_rejection_must_say_why() -> None:
    with pytest.raises(ProtocolError, match="reason"):
        decode_ack('{"v": 1, "id": "c", "result": "rejected", "at": "2099-01-01T00:00:00Z"}')


def test_duplicate_keys_and_nan_are_refused() -> None:
    for text in ('{"v": 1, "v": 1}', '{"v": NaN}', "[" * 100_000):
        with pytest.raises(ProtocolError):
            decode_status(text)


DECODERS = [
    decode_status,
    decode_state,
    decode_ack,
    decode_manifest_notice,
    *(
        lambda data, kind=kind: decode_record(kind, data)
        for kind in (Kind.EVENTS, Kind.PLAYLOG, Kind.TELEMETRY)
    ),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200), st.sampled_from(DECODERS))
def test_any_bytes_give_a_message_or_a_protocol_error(data: bytes | str, decode: object) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)  # type: ignore[operator]


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["v", "id", "at", "data", "status", "session", "result"]), JSON))
def test_any_json_object_gives_a_message_or_a_protocol_error(raw: dict[str, object]) -> None:
    for decode in DECODERS:
        with contextlib.suppress(ProtocolError):
            decode(json.dumps(raw))
