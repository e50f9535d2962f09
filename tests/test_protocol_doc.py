"""docs/PROTOCOL.md is a contract: every JSON example decodes with the protocol package's own
readers, the example command verifies with the public key the document shows, and the tables name
exactly the kinds, commands and reason codes the code knows."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from protocol.commands import COMMANDS, MAX_LIFETIME, CommandRefused, Reason, check_claims, verify_command
from protocol.manifest import Reason as ManifestReason
from protocol.manifest import check_manifest_claims, decode_manifest_notice
from protocol.messages import decode_ack, decode_record, decode_state, decode_status
from protocol.time_sync import TimeReason, check_time_claims, verify_time_answer
from protocol.topics import Kind
from scheduler.items import parse_items

DOC = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"
TEXT = DOC.read_text(encoding="utf-8")
DEVICE = "xa-quang-son-01"
TIME_NONCE = "q3G8s1Zt0cVx5nKp2LwA7e"  # the nonce of the documented time request
GROUPS = frozenset({"xa-quang-son"})
ZONES = frozenset({"zone-1", "zone-2"})
_BLOCK = re.compile(r"^```(\w+)(?: schema=(\S+))?\n(.*?)^```$", re.M | re.S)


def blocks(language: str) -> list[tuple[str | None, str]]:
    return [(schema, body) for lang, schema, body in _BLOCK.findall(TEXT) if lang == language]


def never_seen(jti: str) -> bool:
    return False


def _claims_check(raw: str) -> object:
    claims = json.loads(raw)
    now = datetime.fromtimestamp(claims["iat"], UTC) + timedelta(minutes=1)
    return check_claims(
        claims, device_id=DEVICE, groups=GROUPS, now=now, max_lifetime=MAX_LIFETIME, seen=never_seen
    )


def _manifest_check(raw: str) -> object:
    """The example manifest passes the protocol's checks and every item the scheduler's reader."""
    claims = json.loads(raw)
    now = datetime.fromtimestamp(claims["iat"], UTC)
    manifest = check_manifest_claims(claims, device_id=DEVICE, groups=GROUPS, now=now, current_version="16")
    items, findings = parse_items(manifest.schedule_data(), ZoneInfo("Asia/Ho_Chi_Minh"), ZONES)
    assert findings == [] and len(items) == len(claims["items"])
    return manifest


DECODERS: dict[str, Callable[[str], object]] = {
    "status": decode_status,
    "state": decode_state,
    "ack": decode_ack,
    "events": lambda raw: decode_record(Kind.EVENTS, raw, DEVICE),
    "playlog": lambda raw: decode_record(Kind.PLAYLOG, raw, DEVICE),
    "telemetry": lambda raw: decode_record(Kind.TELEMETRY, raw, DEVICE),
    "command-claims": _claims_check,
    "command-header": json.loads,
    "manifest-claims": _manifest_check,
    "time-answer-claims": lambda raw: check_time_claims(json.loads(raw), device_id=DEVICE, nonce=TIME_NONCE),
    "manifest-notice": decode_manifest_notice,
}


def test_every_json_block_names_a_schema_and_every_schema_has_an_example() -> None:
    schemas = [schema for schema, _ in blocks("json")]
    assert None not in schemas, "a ```json block without schema=... would not be checked"
    assert set(schemas) == set(DECODERS)


@pytest.mark.parametrize(("schema", "body"), blocks("json"), ids=lambda value: str(value)[:40])
def test_json_example_is_valid(schema: str, body: str) -> None:
    assert DECODERS[schema](body) is not None


def test_every_command_has_an_example() -> None:
    names = {json.loads(body)["cmd"] for schema, body in blocks("json") if schema == "command-claims"}
    assert names == set(COMMANDS)


def _public_key(schema: str | None = None) -> Ed25519PublicKey:
    (pem,) = [body for shown, body in blocks("text") if "PUBLIC KEY" in body and (shown or None) == schema]
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


def _token(schema: str | None = None) -> str:
    (token,) = [
        body.strip() for shown, body in blocks("text") if body.startswith("ey") and (shown or None) == schema
    ]
    return token


def _part(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_example_token_verifies_with_the_documented_key_and_carries_the_shown_claims() -> None:
    token = _token()
    header = json.loads(next(body for schema, body in blocks("json") if schema == "command-header"))
    claims = json.loads(next(body for schema, body in blocks("json") if schema == "command-claims"))
    assert (_part(token, 0), _part(token, 1)) == (header, claims)
    now = datetime(2099, 1, 1, 0, 5, tzinfo=UTC)
    command = verify_command(
        token, keys=[_public_key()], device_id=DEVICE, groups=GROUPS, now=now,
        max_lifetime=MAX_LIFETIME, seen=never_seen,
    )  # fmt: skip
    assert (command.id, command.name, command.fields["volume"]) == ("cmd-2099-0001", "play_now", 80)


def test_example_token_is_refused_today_as_the_document_says() -> None:
    with pytest.raises(CommandRefused) as refused:
        verify_command(
            _token(), keys=[_public_key()], device_id=DEVICE, groups=GROUPS,
            now=datetime(2025, 6, 1, tzinfo=UTC), max_lifetime=MAX_LIFETIME, seen=never_seen,
        )  # fmt: skip
    assert refused.value.reason == Reason.LIFETIME_TOO_LONG


def _first_column(heading: str) -> list[str]:
    section = TEXT.split(heading, 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, re.M)


def test_reason_table_lists_every_code() -> None:
    assert _first_column("### What the box refuses\n") == [reason.value for reason in Reason]


def test_manifest_reason_table_lists_every_code() -> None:
    assert _first_column("### What the box refuses of a manifest") == [r.value for r in ManifestReason]


def test_command_table_lists_every_command() -> None:
    header, *shown = _first_column("and the command's own fields")
    assert (header, shown) == ("cmd", list(COMMANDS))


def test_topic_table_lists_every_kind() -> None:
    shown = {topic.rsplit("/", 1)[1] for topic in _first_column("## Topics")}
    assert shown == {kind.value for kind in Kind}


def test_time_reason_table_lists_every_code() -> None:
    assert _first_column("## Time from the central server") == [reason.value for reason in TimeReason]


def test_example_time_answer_verifies_with_its_key_for_the_documented_request() -> None:
    token = _token("time-answer-token")
    claims = json.loads(next(body for schema, body in blocks("json") if schema == "time-answer-claims"))
    assert _part(token, 1) == claims
    request = next(body for _, body in blocks("text") if body.startswith("GET "))
    assert f"device={DEVICE}&nonce={TIME_NONCE}" in request
    answer = verify_time_answer(
        token, keys=[_public_key("time-answer-key")], device_id=DEVICE, nonce=TIME_NONCE
    )
    assert answer.time == datetime(2099, 1, 1, 0, 0, 0, 120000, tzinfo=UTC)
