"""Signed time from the central server (docs/PROTOCOL.md, "Time from the central server").

For boxes whose network blocks NTP.  The box asks ``GET <api_url>/v1/time?device=<id>&nonce=<n>``
with a fresh random nonce; the central server answers with a compact JWS signed like a command
(``EdDSA``, the same keys, the same header rules: :func:`protocol.commands.verified_payload`)
whose claims are ``{"v": 1, "aud": <device id>, "nonce": <n>, "time": <its clock, ms>}``.

The nonce makes an answer good for one question only: a recorded answer replayed later names an
old nonce and is refused as ``stale_nonce``.  :func:`judge_answer` then bounds what the answer
says about the box's clock with the round trip measured on the box's monotonic clock: the central
server read its clock at some instant between sending and receiving, so the box's offset is known
within half the round trip.  Everything here is given ``now`` and the measurements, never reads a
clock itself.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from foundation.findings import FindingList
from protocol.commands import CommandRefused, signed_jws, verified_payload
from protocol.json_wire import DEVICE_ID, Fields, ProtocolError, decode_object, format_time, raise_if_any

TIME_PATH = "/v1/time"  # under central.api_url, like the manifest's /v1/devices/<id>/manifest
CONTENT_TYPE = "application/jwt"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAX_ANSWER_CHARS = 2048  # an answer is about 400 characters


class TimeReason(StrEnum):
    """Why a time answer did not make the clock trusted: wire names, stable (add, never rename).

    The first five mean what they mean for a command (protocol.commands.Reason)."""

    MALFORMED = "malformed"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    BAD_HEADER = "bad_header"
    BAD_SIGNATURE = "bad_signature"
    BAD_CLAIMS = "bad_claims"
    FOREIGN_AUDIENCE = "foreign_audience"
    STALE_NONCE = "stale_nonce"
    TOO_SLOW = "too_slow"
    OFFSET_TOO_LARGE = "offset_too_large"
    UNREACHABLE = "unreachable"


class TimeRefused(ProtocolError):
    """A time answer that does not make the clock trusted, with its stable reason code."""

    def __init__(self, reason: TimeReason, message: str, check: TimeCheck | None = None) -> None:
        self.reason = reason
        self.check = check  # for offset_too_large: how far off the clock is
        super().__init__(f"time answer refused ({reason.value})", [message])


@dataclass(frozen=True)
class TimeAnswer:
    device_id: str
    nonce: str
    time: datetime  # the central server's clock when it answered


@dataclass(frozen=True)
class TimeCheck:
    """What a good answer says: add ``offset`` to the box's clock to get the central server's."""

    central_time: datetime
    offset: timedelta
    round_trip: timedelta

    @property
    def uncertainty(self) -> timedelta:
        return self.round_trip / 2


def new_nonce() -> str:
    """128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def time_url(api_url: str, device_id: str, nonce: str) -> str:
    """``<api_url>/v1/time?device=<id>&nonce=<n>``."""
    return f"{api_url.rstrip('/')}{TIME_PATH}?{urlencode({'device': device_id, 'nonce': nonce})}"


def sign_time_answer(
    device_id: str, nonce: str, now: datetime, private_key: Ed25519PrivateKey, *, kid: str | None = None
) -> str:
    """The central server's answer: its time ``now`` for ``device_id``'s question ``nonce``."""
    if not DEVICE_ID.fullmatch(device_id) or not NONCE.fullmatch(nonce):
        raise TimeRefused(TimeReason.BAD_CLAIMS, f"device {device_id!r} or nonce {nonce!r} out of form")
    claims = {"v": 1, "aud": device_id, "nonce": nonce, "time": format_time(now)}
    return signed_jws(claims, private_key, kid=kid)


def verify_time_answer(
    token: object, *, keys: list[Ed25519PublicKey], device_id: str, nonce: str
) -> TimeAnswer:
    """The central time in ``token`` if one of ``keys`` signed it for this box and this ``nonce``;
    else :class:`TimeRefused`, whatever the bytes were."""
    try:
        try:
            payload = verified_payload(token, keys, max_chars=MAX_ANSWER_CHARS)
        except CommandRefused as refused:
            words = "; ".join(map(str, refused.problems))
            raise TimeRefused(TimeReason(refused.reason.value), words) from None
        try:
            claims = decode_object(payload, "time answer claims")
        except ProtocolError as error:
            raise TimeRefused(TimeReason.MALFORMED, str(error)) from None
        return check_time_claims(claims, device_id=device_id, nonce=nonce)
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        if isinstance(error, TimeRefused):
            raise
        raise TimeRefused(TimeReason.MALFORMED, f"unreadable answer: {type(error).__name__}") from None


def check_time_claims(claims: Mapping[str, Any], *, device_id: str, nonce: str) -> TimeAnswer:
    """The checks after the signature: the claims' form, the audience, then the nonce."""
    findings = FindingList()
    fields = Fields(dict(claims), (), findings)
    fields.version()
    audience = fields.text("aud", DEVICE_ID, expected="the device id")
    answered = fields.text("nonce", NONCE, expected="the nonce the box sent")
    moment = fields.time("time")
    fields.finish()
    try:
        raise_if_any("time answer claims", findings)
    except ProtocolError as error:
        raise TimeRefused(TimeReason.BAD_CLAIMS, "; ".join(map(str, error.problems))) from None
    assert audience is not None and answered is not None and moment is not None
    if audience != device_id:
        raise TimeRefused(TimeReason.FOREIGN_AUDIENCE, f"aud {audience!r} is not this box")
    if not secrets.compare_digest(answered, nonce):
        raise TimeRefused(TimeReason.STALE_NONCE, f"nonce {answered!r} is not the one just sent")
    return TimeAnswer(audience, answered, moment)


def judge_answer(
    answer: TimeAnswer,
    *,
    round_trip: timedelta,
    local_at_receipt: datetime,
    max_round_trip: timedelta,
    tolerance: timedelta,
) -> TimeCheck:
    """How far the box's clock is from the central server's, if the answer is good enough to say.

    The central server read its clock somewhere within the round trip; taking the middle, the box's
    clock is off by ``offset`` within ± half the round trip.  Too slow an answer says too little
    (``too_slow``); a clock that may be off by more than ``tolerance`` is not trusted
    (``offset_too_large``; the refusal carries the check, so the box can report or correct it)."""
    offset = answer.time + round_trip / 2 - local_at_receipt
    check = TimeCheck(answer.time, offset, round_trip)
    if round_trip > max_round_trip or round_trip < timedelta(0):
        raise TimeRefused(
            TimeReason.TOO_SLOW,
            f"round trip {_seconds(round_trip)} s, more than {_seconds(max_round_trip)} s",
        )
    if abs(offset) + check.uncertainty > tolerance:
        raise TimeRefused(
            TimeReason.OFFSET_TOO_LARGE,
            f"the clock is off by {_signed(offset)} s (± {_seconds(check.uncertainty)} s),"
            f" more than {_seconds(tolerance)} s",
            check,
        )
    return check


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():.3f}"


def _signed(span: timedelta) -> str:
    return f"{span.total_seconds():+.3f}"
