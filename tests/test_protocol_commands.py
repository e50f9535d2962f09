"""verify_command accepts a valid signed command and refuses every forgery with its reason code."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.commands import (
    MAX_LIFETIME,
    Command,
    CommandRefused,
    Reason,
    _segment,
    sign_command,
    verified_payload,
    verify_command,
)

NOW = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
DEVICE = "xa-quang-son-01"


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jti": "cmd-1", "aud": DEVICE, "iat": int(NOW.timestamp()) - 10, "exp": int(NOW.timestamp()) + 300,
        "cmd": "set_volume", "volume": 40,
    }  # fmt: skip
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def verify(token: str, keys: list[Ed25519PrivateKey] | None = None, seen: bool = False) -> Command:
    return verify_command(
        token, keys=[k.public_key() for k in (keys or [KEY])], device_id=DEVICE,
        groups=frozenset({"xa-quang-son"}), now=NOW, max_lifetime=MAX_LIFETIME, seen=lambda jti: seen,
    )  # fmt: skip


def refused(token: str, **options: Any) -> Reason:
    with pytest.raises(CommandRefused) as error:
        verify(token, **options)
    return error.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], sign: Any = lambda data: b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def test_a_valid_command_verifies() -> None:
    command = verify(sign_command(claims(), KEY))
    assert (command.id, command.name, command.audience, dict(command.fields)) == (
        "cmd-1", "set_volume", DEVICE, {"volume": 40},
    )  # fmt: skip


def test_a_group_command_verifies_for_a_member_only() -> None:
    assert verify(sign_command(claims(aud="group:xa-quang-son"), KEY)).audience == "group:xa-quang-son"
    assert refused(sign_command(claims(aud="group:xa-khac"), KEY)) == Reason.FOREIGN_AUDIENCE
    # A bare group name is not a device id of this box.
    assert refused(sign_command(claims(aud="xa-quang-son"), KEY)) == Reason.FOREIGN_AUDIENCE


def test_rotation_any_configured_key_verifies() -> None:
    assert verify(sign_command(claims(), OTHER), keys=[KEY, OTHER]).id == "cmd-1"
    assert refused(sign_command(claims(), OTHER), keys=[KEY]) == Reason.BAD_SIGNATURE


def test_alg_none_is_refused() -> None:
    assert refused(hand_made({"alg": "none", "typ": "JWT"}, claims())) == Reason.ALG_NOT_ALLOWED
    assert refused(hand_made({"alg": "none"}, claims()) + "") == Reason.ALG_NOT_ALLOWED


@pytest.mark.parametrize(
    "public",
    [
        KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    ],
    ids=["pem", "raw"],
)
def test_hs256_with_the_public_key_as_secret_is_refused(public: bytes) -> None:
    """The key-confusion attack: an HMAC keyed with the public key bytes the box holds."""

    def sign(data: bytes) -> bytes:
        return hmac.new(public, data, hashlib.sha256).digest()

    assert refused(hand_made({"alg": "HS256", "typ": "JWT"}, claims(), sign)) == Reason.ALG_NOT_ALLOWED
    # The same forgery relabelled EdDSA fails the signature check.
    assert refused(hand_made({"alg": "EdDSA"}, claims(), sign)) == Reason.BAD_SIGNATURE


def test_rs256_is_refused() -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(jwt.encode(claims(), rsa, algorithm="RS256")) == Reason.ALG_NOT_ALLOWED


def test_tampered_payload_and_signature_are_refused() -> None:
    header, payload, signature = sign_command(claims(), KEY).split(".")
    louder = b64(json.dumps(claims(volume=100)).encode())
    assert refused(f"{header}.{louder}.{signature}") == Reason.BAD_SIGNATURE
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[0] ^= 1
    assert refused(f"{header}.{payload}.{b64(bytes(flipped))}") == Reason.BAD_SIGNATURE


def test_a_good_header_does_not_excuse_a_bad_payload_or_segment_count() -> None:
    # The header is read alone before the signature is checked: the rest is still checked whole.
    header, payload, signature = sign_command(claims(), KEY).split(".")
    assert refused(f"{header}.{payload}!.{signature}") == Reason.MALFORMED
    assert refused(f"{header}.{payload}") == Reason.MALFORMED


def test_segments_are_read_strictly_whatever_pyjwt_the_box_has() -> None:
    """Padding that completes a segment is accepted; anything else that decodes is not."""
    header, payload, signature = sign_command(claims(), KEY).split(".")
    padded = f"{header}.{payload}" + "=" * (-len(payload) % 4)
    assert padded.endswith("=") and verify(f"{padded}.{b64(KEY.sign(padded.encode()))}").id == "cmd-1"
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other_bits = last[last.index(signature[-1]) ^ 1]  # the same bytes, unused bits changed
    for bad in (
        f"{header}.{payload}.{signature[:-1]}{other_bits}",
        f"{header}.{payload}===.{signature}",
        f"{header}.{payload}+.{signature}",
        f"{header}.{payload} .{signature}",
        f"{header}.{payload}.{signature}.{signature}",
    ):
        assert refused(bad) == Reason.MALFORMED, bad
    assert len(header) % 4 == 0  # so no padding completes it
    for bad_header in (f"{header}+", f"{header}==", f" {header}"):
        assert refused(f"{bad_header}.{payload}.{signature}") == Reason.MALFORMED, bad_header
    assert refused(f"{header}.{payload}.{signature}.{signature}") == Reason.MALFORMED
    assert refused(f"{header}") == Reason.MALFORMED


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(NOW.timestamp()) - 120}, Reason.EXPIRED),
        ({"exp": None}, Reason.NO_EXPIRY),
        ({"nbf": int(NOW.timestamp()) + 3600}, Reason.NOT_YET_VALID),
        ({"aud": "xa-khac-02"}, Reason.FOREIGN_AUDIENCE),
        (
            {"iat": int(NOW.timestamp()) - 10, "exp": int(NOW.timestamp()) + 25 * 3600},
            Reason.LIFETIME_TOO_LONG,
        ),
        ({"iat": int(NOW.timestamp()) - 25 * 3600}, Reason.LIFETIME_TOO_LONG),
        ({"cmd": "format_disk"}, Reason.UNKNOWN_COMMAND),
        ({"volume": 101}, Reason.BAD_FIELDS),
        ({"volume": None}, Reason.BAD_FIELDS),
        ({"colour": "red"}, Reason.BAD_FIELDS),
        ({"jti": None}, Reason.BAD_CLAIMS),
        ({"iat": "yesterday"}, Reason.BAD_CLAIMS),
        ({"aud": [DEVICE]}, Reason.BAD_CLAIMS),
        ({"exp": 10**20}, Reason.BAD_CLAIMS),
    ],
)
def test_bad_claims_are_refused_with_their_reason(changes: dict[str, Any], reason: Reason) -> None:
    token = jwt.encode(claims(**changes), KEY, algorithm="EdDSA")
    assert refused(token) == reason


def test_a_replayed_jti_is_a_duplicate() -> None:
    assert refused(sign_command(claims(), KEY), seen=True) == Reason.DUPLICATE


def test_an_extra_header_is_refused() -> None:
    token = jwt.encode(claims(), KEY, algorithm="EdDSA", headers={"jku": "https://evil.example/keys"})
    assert refused(token) == Reason.BAD_HEADER


def test_sign_command_refuses_what_no_box_would_accept() -> None:
    with pytest.raises(CommandRefused):
        sign_command(claims(cmd="format_disk"), KEY)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_bytes_are_refused_cleanly(data: bytes | str) -> None:
    token = data.decode("latin-1") if isinstance(data, bytes) else data
    with pytest.raises(CommandRefused):
        verify(token)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["jti", "aud", "iat", "exp", "nbf", "cmd", "volume", "zones", "audio"])
        | st.text(max_size=6),
        JSON,
        max_size=8,
    )
)
def test_any_signed_json_is_a_command_or_refused_cleanly(payload: dict[str, Any]) -> None:
    token = jwt.encode(payload, KEY, algorithm="EdDSA")
    try:
        command = verify(token)
    except CommandRefused as error:
        assert error.reason in Reason
    else:
        assert command.name in {
            "set_volume",
            "stop",
            "status",
            "sync_now",
            "relay_test",
            "play_now",
            "emergency",
        }


@settings(max_examples=200)
@given(JSON, JSON)
def test_any_header_and_payload_are_refused_cleanly(header: Any, payload: Any) -> None:
    raw = [json.dumps(header).encode(), json.dumps(payload).encode()]
    token = ".".join([b64(raw[0]), b64(raw[1]), b64(b"x" * 64)])
    with pytest.raises(CommandRefused):
        verify(token)


@settings(max_examples=500)
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/!. ", max_size=12)
)
def test_a_segment_is_read_as_the_one_spelling_of_its_bytes(segment: str) -> None:
    """A segment is read when it is exactly the base64url spelling of some bytes (with, at most, the
    padding that completes it), as PyJWT 2.10 and later read it; anything else is refused, whatever
    the PyJWT the box has (Debian 12's 2.6 takes any spelling Python's decoder takes)."""
    stripped = segment.rstrip("=")
    padding_ok = stripped == segment or (len(segment) % 4 == 0 and len(segment) - len(stripped) <= 2)
    try:
        data = base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        data = None
    canonical = data is not None and base64.urlsafe_b64encode(data).rstrip(b"=").decode() == stripped
    expected = data if padding_ok and canonical else None
    try:
        got: bytes | None = _segment(segment, "payload")
    except CommandRefused as refused:
        assert refused.reason == Reason.MALFORMED
        got = None
    assert got == expected


def test_the_bulk_reader_for_manifests_refuses_and_accepts_what_pyjwt_does() -> None:
    """Commands are verified by PyJWT; manifests (megabytes) by the bulk reader: the same verdicts."""
    header, payload, signature = sign_command(claims(), KEY).split(".")
    keys = [KEY.public_key()]
    good = f"{header}.{payload}.{signature}"
    assert verified_payload(good, keys, bulk=True) == verified_payload(good, keys)
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other_bits = last[last.index(signature[-1]) ^ 1]
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    flipped[0] ^= 1
    for bad, reason in (
        (f"{header}.{payload}.{signature[:-1]}{other_bits}", Reason.MALFORMED),
        (f"{header}.{payload}===.{signature}", Reason.MALFORMED),
        (f"{header}.{payload}+.{signature}", Reason.MALFORMED),
        (f"{header}.{payload}.{signature}.{signature}", Reason.MALFORMED),
        (f"{header}.{payload}", Reason.MALFORMED),
        (f"{header}.{payload}.{b64(bytes(flipped))}", Reason.BAD_SIGNATURE),
    ):
        for bulk in (False, True):
            with pytest.raises(CommandRefused) as error:
                verified_payload(bad, keys, bulk=bulk)
            assert error.value.reason == reason, (bad, bulk)
