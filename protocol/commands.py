"""Signed commands (docs/PROTOCOL.md, "Commands"): compact JWS, EdDSA over Ed25519, checked strictly.

:func:`verify_command` is the one gate a command passes on the box.  It refuses any algorithm but
``EdDSA`` before it tries a key (so ``alg: none``, HMAC with the public key as the secret, RSA and
the like never reach a verifier), tries each configured key (rotation), then checks the claims
against the ``now`` it is given, never the machine's clock.  Every refusal is a
:class:`CommandRefused` with a stable :class:`Reason` code, whatever the bytes were.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from foundation.findings import FindingList
from protocol.json_wire import DEVICE_ID, GROUP, SHA256, Fields, ProtocolError, decode_object
from protocol.messages import COMMAND_ID, LEVELS

ALGORITHM = "EdDSA"
MAX_LIFETIME = timedelta(hours=24)  # the most a box accepts between iat and exp, and from now to exp
LEEWAY = timedelta(seconds=60)  # clock difference tolerated for exp and nbf
MAX_TOKEN_CHARS = 8192
HEADER_KEYS = frozenset({"alg", "typ", "kid"})
GROUP_PREFIX = "group:"
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_UNUSED_BITS = {0: 0, 2: 0b1111, 3: 0b11}  # by length mod 4 (1 is refused before)
_LAST_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: later ones do not fit a datetime


class Reason(StrEnum):
    """Why a command was refused: wire names, stable (add codes, never rename them)."""

    MALFORMED = "malformed"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    BAD_HEADER = "bad_header"
    BAD_SIGNATURE = "bad_signature"
    BAD_CLAIMS = "bad_claims"
    NO_EXPIRY = "no_expiry"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    FOREIGN_AUDIENCE = "foreign_audience"
    DUPLICATE = "duplicate"
    UNKNOWN_COMMAND = "unknown_command"
    BAD_FIELDS = "bad_fields"


class CommandRefused(ProtocolError):
    """A command the box will not carry out; ``command_id`` is its jti once the signature held."""

    def __init__(self, reason: Reason, message: str, command_id: str | None = None) -> None:
        self.reason = reason
        self.command_id = command_id
        super().__init__(f"command refused ({reason.value})", [message])


@dataclass(frozen=True)
class Command:
    id: str  # the jti: acks name it
    name: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None
    fields: Mapping[str, Any]


def _audio(fields: Fields) -> None:
    audio = Fields(
        fields.get("audio", dict, "an object {url, sha256} or {sha256}"), ("audio",), fields.findings
    )
    audio.text("sha256", SHA256, expected="64 lowercase hex digits")
    url = audio.text("url", required=False, expected="an http:// or https:// URL")
    if url is not None and not url.startswith(("https://", "http://")):
        audio.bad("url", "an http:// or https:// URL")
    audio.finish()


def _play_now(fields: Fields) -> None:
    _audio(fields)
    fields.choice("level", LEVELS, required=False)
    fields.zones("zones")
    fields.whole("volume", 0, 100, required=False)


def _emergency(fields: Fields) -> None:
    _audio(fields)
    fields.zones("zones")
    fields.whole("volume", 0, 100, required=False)
    fields.whole("repeat", 1, 10, required=False)


def _set_volume(fields: Fields) -> None:
    fields.whole("volume", 0, 100)
    fields.zones("zones")


def _relay_test(fields: Fields) -> None:
    fields.zones("zones")
    fields.whole("seconds", 1, 300, required=False)


def _nothing(fields: Fields) -> None:
    pass


COMMANDS: dict[str, Callable[[Fields], None]] = {
    "play_now": _play_now,
    "emergency": _emergency,
    "stop": _nothing,
    "set_volume": _set_volume,
    "relay_test": _relay_test,
    "sync_now": _nothing,
    "status": _nothing,
}
REGISTERED = ("jti", "aud", "iat", "exp", "nbf", "cmd")


def verify_command(
    token: str,
    *,
    keys: list[Ed25519PublicKey],
    device_id: str,
    groups: frozenset[str],
    now: datetime,
    max_lifetime: timedelta,
    seen: Callable[[str], bool],
) -> Command:
    """The command ``token`` carries, if it is for this box and valid at ``now``; else CommandRefused."""
    try:
        payload = verified_payload(token, keys)
        try:
            claims = decode_object(payload, "command claims")
        except ProtocolError as error:
            raise CommandRefused(Reason.MALFORMED, str(error)) from None
        return check_claims(
            claims, device_id=device_id, groups=groups, now=now, max_lifetime=max_lifetime, seen=seen
        )
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        if isinstance(error, CommandRefused):
            raise
        # The boundary: whatever a library or a check missed, the caller sees a refusal.
        raise CommandRefused(Reason.MALFORMED, f"unreadable command: {type(error).__name__}") from None


def verified_payload(
    token: object, keys: list[Ed25519PublicKey], *, max_chars: int = MAX_TOKEN_CHARS, bulk: bool = False
) -> bytes:
    """The payload of a compact JWS signed (EdDSA) by one of ``keys``; else CommandRefused.

    Every segment is read by :func:`_segment`, strictly (the protocol's rule, whatever PyJWT
    version the box has: Debian 12's 2.6 takes any spelling Python's base64 decoder does).  Commands
    and time answers (a few kB) are then verified by PyJWT, as docs/PROTOCOL.md says.  Signed
    schedule manifests (protocol.manifest) may be megabytes: with ``bulk`` the signature is checked
    with the same ``cryptography`` Ed25519 key PyJWT would use, on the segments already read.
    """
    if not isinstance(token, str) or not token.isascii() or len(token) > max_chars:
        raise CommandRefused(Reason.MALFORMED, f"not a compact JWS of at most {max_chars} ASCII characters")
    segments = token.split(".")
    _segment(segments[0], "header")  # the header first, alone: its alg is judged before the rest is read
    try:
        header = jwt.get_unverified_header(segments[0] + "..")
    except jwt.PyJWTError as error:
        raise CommandRefused(Reason.MALFORMED, f"not a compact JWS: {error}") from None
    if header.get("alg") != ALGORITHM:
        raise CommandRefused(
            Reason.ALG_NOT_ALLOWED, f"alg {header.get('alg')!r}: only {ALGORITHM} is accepted"
        )
    extra = sorted(set(header) - HEADER_KEYS)
    if extra or header.get("typ", "JWT") != "JWT" or not isinstance(header.get("kid", ""), str):
        raise CommandRefused(Reason.BAD_HEADER, f"header {header!r}: expected only alg, typ JWT and kid")
    if len(segments) != 3:
        raise CommandRefused(Reason.MALFORMED, f"not a compact JWS: {len(segments)} segments, expected 3")
    payload, signature = _segment(segments[1], "payload"), _segment(segments[2], "signature")
    if not bulk:
        return _verified_by_pyjwt(token, keys)
    signed = f"{segments[0]}.{segments[1]}".encode("ascii")
    for key in keys:
        try:
            key.verify(signature, signed)
        except InvalidSignature:
            continue  # the next key: the central server may have rotated its key
        return payload
    raise CommandRefused(Reason.BAD_SIGNATURE, f"signature does not verify with any of {len(keys)} key(s)")


def _verified_by_pyjwt(token: str, keys: list[Ed25519PublicKey]) -> bytes:
    for key in keys:
        try:
            decoded = jwt.PyJWS().decode_complete(token, cast(Any, key), algorithms=[ALGORITHM])
        except jwt.InvalidSignatureError:
            continue  # the next key: the central server may have rotated its key
        except jwt.PyJWTError as error:
            raise CommandRefused(Reason.MALFORMED, f"not a compact JWS: {error}") from None
        return bytes(decoded["payload"])
    raise CommandRefused(Reason.BAD_SIGNATURE, f"signature does not verify with any of {len(keys)} key(s)")


def _segment(text: str, name: str) -> bytes:
    """One base64url segment, strictly: its alphabet, at most the padding that completes it, and one
    spelling per value (as PyJWT 2.10 and later read it; older ones, Debian 12's among them, take
    more).  One regular expression: checking each character in Python takes a fifth of a second
    for a 4 MB manifest."""
    stripped = text.rstrip("=")
    padded = stripped != text
    if not _SEGMENT.fullmatch(text) or (padded and len(text) % 4 != 0) or len(stripped) % 4 == 1:
        raise CommandRefused(Reason.MALFORMED, f"not a compact JWS: invalid {name} padding")
    unused = _UNUSED_BITS[len(stripped) % 4]  # the last character's bits past the last byte
    if unused and _ALPHABET.index(stripped[-1]) & unused:  # another spelling of the same bytes
        raise CommandRefused(Reason.MALFORMED, f"not a compact JWS: invalid {name} padding")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def check_claims(
    claims: Mapping[str, Any],
    *,
    device_id: str,
    groups: frozenset[str],
    now: datetime,
    max_lifetime: timedelta,
    seen: Callable[[str], bool],
) -> Command:
    """The checks after the signature: claims, times, audience, replay, command and its fields."""
    command = _read_claims(claims)
    _check_times(command, now, max_lifetime)
    aud = command.audience
    mine = aud.removeprefix(GROUP_PREFIX) in groups if aud.startswith(GROUP_PREFIX) else aud == device_id
    if not mine:
        raise CommandRefused(Reason.FOREIGN_AUDIENCE, f"aud {command.audience!r} is not this box", command.id)
    if seen(command.id):
        raise CommandRefused(Reason.DUPLICATE, f"command {command.id} was already received", command.id)
    return command


def _read_claims(claims: Mapping[str, Any]) -> Command:
    findings = FindingList()
    fields = Fields(dict(claims), (), findings)
    ident = fields.text("jti", COMMAND_ID, expected="a command id: letters, digits, '.', '_', ':', '-'")
    audience = fields.text("aud", expected="a device id, or group:<name>")
    iat, nbf = _numeric_date(fields, "iat"), _numeric_date(fields, "nbf", required=False)
    name = fields.text("cmd", expected="a command name")
    if findings.items:
        raise CommandRefused(Reason.BAD_CLAIMS, "; ".join(map(str, findings.items)), ident)
    assert ident is not None and audience is not None and iat is not None and name is not None
    if "exp" not in claims:
        raise CommandRefused(Reason.NO_EXPIRY, "no exp: every command must expire", ident)
    exp = _numeric_date(fields, "exp")
    if exp is None or not _audience_ok(audience):
        raise CommandRefused(
            Reason.BAD_CLAIMS, "; ".join(map(str, findings.items)) or f"aud {audience!r}", ident
        )
    if name not in COMMANDS:
        raise CommandRefused(
            Reason.UNKNOWN_COMMAND, f"cmd {name!r}: expected one of {', '.join(COMMANDS)}", ident
        )
    COMMANDS[name](fields)
    fields.finish()
    if findings.items:
        raise CommandRefused(Reason.BAD_FIELDS, f"{name}: " + "; ".join(map(str, findings.items)), ident)
    extra = {key: value for key, value in claims.items() if key not in REGISTERED}
    return Command(ident, name, audience, iat, exp, nbf, extra)


def _audience_ok(audience: str) -> bool:
    if audience.startswith(GROUP_PREFIX):
        return bool(GROUP.fullmatch(audience.removeprefix(GROUP_PREFIX)))
    return bool(DEVICE_ID.fullmatch(audience))


def _numeric_date(fields: Fields, key: str, *, required: bool = True) -> datetime | None:
    seconds = fields.whole(key, 0, _LAST_NUMERIC_DATE, required=required)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _check_times(command: Command, now: datetime, max_lifetime: timedelta) -> None:
    ident, exp = command.id, command.expires_at
    if exp <= now - LEEWAY:
        raise CommandRefused(Reason.EXPIRED, f"expired at {exp.isoformat()}", ident)
    if command.not_before is not None and command.not_before > now + LEEWAY:
        raise CommandRefused(
            Reason.NOT_YET_VALID, f"not valid before {command.not_before.isoformat()}", ident
        )
    if exp < command.issued_at:
        raise CommandRefused(Reason.BAD_CLAIMS, "exp before iat", ident)
    # Both bounds: a far-future iat must not stretch a token's life past what the jti journal keeps.
    if exp - command.issued_at > max_lifetime or exp - now > max_lifetime:
        raise CommandRefused(
            Reason.LIFETIME_TOO_LONG, f"valid until {exp.isoformat()}: more than {max_lifetime} ahead", ident
        )


def sign_command(claims: Mapping[str, Any], private_key: Ed25519PrivateKey, *, kid: str | None = None) -> str:
    """A compact JWS (EdDSA) of ``claims``, which must read as a valid command (CommandRefused if not)."""
    _read_claims(claims)
    return signed_jws(claims, private_key, kid=kid)


def signed_jws(claims: Mapping[str, Any], private_key: Ed25519PrivateKey, *, kid: str | None = None) -> str:
    """The compact JWS (EdDSA) of ``claims`` with ``kid`` in its header when given: what every signer
    of this protocol (commands, manifests, time answers) sends."""
    headers = {"kid": kid} if kid is not None else None
    key: Any = private_key  # PyJWT 2.6 (Debian 12's) annotates the key as str; it takes key objects
    return jwt.encode(dict(claims), key, algorithm=ALGORITHM, headers=headers)
