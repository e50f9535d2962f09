"""The signed time answer (protocol/time_sync.py): what the box accepts, what it refuses and why,
and how an answer bounds the box's clock.  Real Ed25519 keys; hostile bytes never escape as
anything but a TimeRefused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from protocol.time_sync import (
    TimeReason,
    TimeRefused,
    judge_answer,
    new_nonce,
    sign_time_answer,
    time_url,
    verify_time_answer,
)

DEVICE = "xa-quang-son-01"
KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def verify(token: object, nonce: str, device: str = DEVICE) -> Any:
    return verify_time_answer(token, keys=[KEY.public_key()], device_id=device, nonce=nonce)


def reason_of(token: object, nonce: str, device: str = DEVICE) -> TimeReason:
    with pytest.raises(TimeRefused) as refused:
        verify(token, nonce, device)
    return refused.value.reason


def test_a_signed_answer_to_this_nonce_gives_the_central_time() -> None:
    nonce = new_nonce()
    answer = verify(sign_time_answer(DEVICE, nonce, NOW, KEY), nonce)
    assert (answer.device_id, answer.nonce, answer.time) == (DEVICE, nonce, NOW)


def test_the_url_carries_device_and_nonce() -> None:
    url = time_url("https://central.example.vn/api/", DEVICE, "abcdefghijklmnop_-12")
    assert url == f"https://central.example.vn/api/v1/time?device={DEVICE}&nonce=abcdefghijklmnop_-12"


def test_nonces_are_fresh_and_of_the_protocol_form() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100 and all(len(n) >= 16 for n in nonces)


def test_refusals_name_their_reason() -> None:
    nonce, other = new_nonce(), Ed25519PrivateKey.generate()
    good = sign_time_answer(DEVICE, nonce, NOW, KEY)
    head, body, sig = good.split(".")
    claims = {"v": 1, "aud": DEVICE, "nonce": nonce, "time": "2026-11-26T06:30:00.000Z"}
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    cases = {
        TimeReason.BAD_SIGNATURE: [
            sign_time_answer(DEVICE, nonce, NOW, other),
            f"{head}.{_b64({**claims, 'time': '2026-11-26T07:30:00.000Z'})}.{sig}",
        ],
        TimeReason.ALG_NOT_ALLOWED: [
            f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
            f"{signing_input}.{mac.rstrip(b'=').decode()}",
        ],
        TimeReason.BAD_HEADER: [jwt.encode(claims, KEY, algorithm="EdDSA", headers={"x5u": "http://evil"})],
        TimeReason.MALFORMED: ["", "not a token", "a" * 5000, 42, f"{head}.{body}"],
        TimeReason.BAD_CLAIMS: [
            jwt.encode({**claims, "extra": 1}, KEY, algorithm="EdDSA"),
            jwt.encode({**claims, "time": "06:30"}, KEY, algorithm="EdDSA"),
            jwt.encode({k: v for k, v in claims.items() if k != "nonce"}, KEY, algorithm="EdDSA"),
        ],
        TimeReason.FOREIGN_AUDIENCE: [sign_time_answer("other-box-02", nonce, NOW, KEY)],
        TimeReason.STALE_NONCE: [sign_time_answer(DEVICE, new_nonce(), NOW, KEY)],
    }
    for reason, tokens in cases.items():
        for token in tokens:
            assert reason_of(token, nonce) is reason, token


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_any_text_is_refused_with_a_reason_never_another_error(text: str) -> None:
    assert isinstance(reason_of(text, "abcdefghijklmnopqrstuv"), TimeReason)


def judge(central: datetime, round_trip: float, local: datetime, tolerance: float = 2.0) -> Any:
    answer = verify(sign_time_answer(DEVICE, "n" * 22, central, KEY), "n" * 22)
    return judge_answer(
        answer, round_trip=timedelta(seconds=round_trip), local_at_receipt=local,
        max_round_trip=timedelta(seconds=2), tolerance=timedelta(seconds=tolerance),
    )  # fmt: skip


def test_the_offset_is_taken_at_the_middle_of_the_round_trip() -> None:
    # The central server read its clock 0.2 s before the answer came, at the middle of 0.4 s.
    check = judge(NOW, 0.4, NOW + timedelta(seconds=0.2))
    assert check.offset == timedelta(0) and check.uncertainty == timedelta(seconds=0.2)
    check = judge(NOW, 0.4, NOW - timedelta(seconds=1))  # the box is 1.2 s behind
    assert check.offset == timedelta(seconds=1.2)


def test_a_slow_answer_or_a_clock_too_far_off_is_refused() -> None:
    with pytest.raises(TimeRefused) as slow:
        judge(NOW, 2.5, NOW)
    assert slow.value.reason is TimeReason.TOO_SLOW
    with pytest.raises(TimeRefused) as off:
        judge(NOW, 0.2, NOW - timedelta(seconds=30))
    assert off.value.reason is TimeReason.OFFSET_TOO_LARGE
    assert off.value.check is not None and off.value.check.offset == timedelta(seconds=30.1)
    # the uncertainty counts: 1.5 s off ± 0.75 s may be more than 2 s
    with pytest.raises(TimeRefused):
        judge(NOW, 1.5, NOW - timedelta(seconds=0.75))
    assert judge(NOW, 0.1, NOW - timedelta(seconds=1.9)).offset == timedelta(seconds=1.95)
