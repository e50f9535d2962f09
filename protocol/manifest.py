"""Signed schedule manifests (docs/PROTOCOL.md, "Schedule manifests"): the central origin's schedule.

A manifest is a compact JWS signed like a command (EdDSA, the same keys, the same header rules,
:func:`protocol.commands.verified_payload`), whose claims carry a whole schedule: ``v``, ``aud``,
``iat``, ``version`` and ``items``.  It has no ``exp``: it stays in force until a newer version
replaces it, and an old one replayed is refused as ``stale`` because versions only grow.

This module checks the envelope and each item's ``audio`` reference; the rest of each item is the
local schedule file's model, which the agent checks with ``scheduler.items.parse_items`` (the
protocol package may not import the scheduler) and refuses as ``bad_items``.  Every refusal is a
:class:`ManifestRefused` with a stable :class:`Reason`, whatever the bytes were.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from foundation.findings import Finding, FindingList
from protocol.commands import GROUP_PREFIX, LEEWAY, CommandRefused, signed_jws, verified_payload
from protocol.json_wire import (
    DEVICE_ID,
    GROUP,
    SCHEMA_VERSION,
    SHA256,
    Fields,
    ProtocolError,
    decode_object,
    encode,
    raise_if_any,
)

MAX_MANIFEST_BYTES = 8 * 1024 * 1024  # claims: 10,000 items of ~400 bytes fit four times over
MAX_MANIFEST_CHARS = MAX_MANIFEST_BYTES * 4 // 3 + 4096  # base64url of the claims, header, signature
MAX_ITEMS = 20_000
VERSION = re.compile(r"[1-9][0-9]{0,17}")  # a positive decimal integer: compared as a number
_LAST_NUMERIC_DATE = 253402300799


class Reason(StrEnum):
    """Why a manifest was refused: wire names, stable (add codes, never rename them).

    The first five mean what they mean for a command (protocol.commands.Reason)."""

    MALFORMED = "malformed"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    BAD_HEADER = "bad_header"
    BAD_SIGNATURE = "bad_signature"
    BAD_CLAIMS = "bad_claims"
    NOT_YET_VALID = "not_yet_valid"
    FOREIGN_AUDIENCE = "foreign_audience"
    STALE = "stale"
    BAD_ITEMS = "bad_items"


class ManifestRefused(ProtocolError):
    """A manifest the box will not put in force; ``version`` is its version once the signature held."""

    def __init__(
        self, reason: Reason, problems: Sequence[Finding | str] | str, version: str | None = None
    ) -> None:
        self.reason = reason
        self.version = version
        super().__init__(
            f"manifest refused ({reason.value})", [problems] if isinstance(problems, str) else problems
        )


@dataclass(frozen=True)
class Manifest:
    version: str
    audience: str
    issued_at: datetime
    items: tuple[dict[str, Any], ...]  # the schedule file's model, ``audio`` as the sha256
    audio_urls: Mapping[str, str]  # sha256 -> where to fetch it

    def schedule_data(self) -> dict[str, Any]:
        """The items as a schedule file's data (``{"items": [...]}``), for parse_items."""
        return {"items": [dict(item) for item in self.items]}


def version_number(version: str | None) -> int | None:
    """A manifest version as the number it is compared by; None when it is not one."""
    return int(version) if isinstance(version, str) and VERSION.fullmatch(version) else None


@dataclass(frozen=True)
class ManifestNotice:
    """The retained ``manifest`` notice: a box whose manifest is older than ``version`` fetches it."""

    version: str

    def to_json(self) -> str:
        return encode({"v": SCHEMA_VERSION, "version": self.version})


def decode_manifest_notice(data: str | bytes) -> ManifestNotice:
    raw, findings = decode_object(data, "manifest notice"), FindingList()
    fields = Fields(raw, (), findings)
    fields.version()
    version = fields.text("version", VERSION, expected='a positive whole number as a string, e.g. "17"')
    fields.finish()
    raise_if_any("manifest notice", findings)
    assert version is not None
    return ManifestNotice(version)


def verify_manifest(
    token: str,
    *,
    keys: list[Ed25519PublicKey],
    device_id: str,
    groups: frozenset[str],
    now: datetime,
    current_version: str | None,
) -> Manifest:
    """The manifest ``token`` carries, if it is signed, for this box and newer than ``current_version``."""
    try:
        try:
            payload = verified_payload(token, keys, max_chars=MAX_MANIFEST_CHARS, bulk=True)
        except CommandRefused as refused:
            raise ManifestRefused(Reason(refused.reason.value), refused.problems) from None
        try:
            claims = decode_object(payload, "manifest claims", max_bytes=MAX_MANIFEST_BYTES)
        except ProtocolError as error:
            raise ManifestRefused(Reason.MALFORMED, error.problems) from None
        return check_manifest_claims(
            claims, device_id=device_id, groups=groups, now=now, current_version=current_version
        )
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        if isinstance(error, ManifestRefused):
            raise
        # The boundary: whatever a library or a check missed, the caller sees a refusal.
        raise ManifestRefused(Reason.MALFORMED, f"unreadable manifest: {type(error).__name__}") from None


def check_manifest_claims(
    claims: Mapping[str, Any],
    *,
    device_id: str,
    groups: frozenset[str],
    now: datetime,
    current_version: str | None,
) -> Manifest:
    """The checks after the signature: claims, audience, issue time, version, items' audio."""
    manifest, findings = _read_claims(claims)
    version = manifest.version
    aud = manifest.audience
    mine = aud.removeprefix(GROUP_PREFIX) in groups if aud.startswith(GROUP_PREFIX) else aud == device_id
    if not mine:
        raise ManifestRefused(Reason.FOREIGN_AUDIENCE, f"aud {aud!r} is not this box", version)
    if manifest.issued_at > now + LEEWAY:
        raise ManifestRefused(
            Reason.NOT_YET_VALID,
            f"issued at {manifest.issued_at.isoformat()}, after the box's clock",
            version,
        )
    current = version_number(current_version)
    if current is not None and int(version) <= current:
        raise ManifestRefused(Reason.STALE, f"version {version} is not newer than {current_version}", version)
    if findings:  # after audience and version: a foreign or old manifest is refused as such
        raise ManifestRefused(Reason.BAD_ITEMS, findings, version)
    return manifest


def _read_claims(claims: Mapping[str, Any]) -> tuple[Manifest, list[Finding]]:
    findings = FindingList()
    fields = Fields(dict(claims), (), findings)
    fields.version()
    audience = fields.text("aud", expected="a device id, or group:<name>")
    seconds = fields.whole("iat", 0, _LAST_NUMERIC_DATE)
    version = fields.text("version", VERSION, expected='a positive whole number as a string, e.g. "17"')
    raw_items = fields.get("items", list, f"a list of at most {MAX_ITEMS} schedule items")
    fields.finish()
    if audience is not None and not _audience_ok(audience):
        fields.bad("aud", "a device id, or group:<name>")
    if raw_items is not None and len(raw_items) > MAX_ITEMS:
        fields.bad("items", f"a list of at most {MAX_ITEMS} schedule items")
    if findings.items or audience is None or seconds is None or version is None or raw_items is None:
        raise ManifestRefused(Reason.BAD_CLAIMS, findings.items, version)
    items, urls = _items(raw_items, findings)
    issued = datetime.fromtimestamp(seconds, UTC)
    return Manifest(version, audience, issued, tuple(items), urls), findings.items


def _items(raw_items: list[Any], findings: FindingList) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Each item with ``audio`` turned from ``{sha256, url}`` into the sha256 the box caches it by."""
    items: list[dict[str, Any]] = []
    urls: dict[str, str] = {}
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            findings.add(("items", index), raw, "a schedule item (an object)")
            continue
        audio = Fields(raw.get("audio"), ("items", index, "audio"), findings)
        sha256 = audio.text("sha256", SHA256, expected="64 lowercase hex digits")
        url = audio.text("url", expected="an http:// or https:// URL")
        if url is not None and not url.startswith(("https://", "http://")):
            audio.bad("url", "an http:// or https:// URL")
            url = None
        audio.finish()
        if sha256 is not None and url is not None:
            urls.setdefault(sha256, url)
            items.append({**raw, "audio": sha256})
    return items, urls


def _audience_ok(audience: str) -> bool:
    if audience.startswith(GROUP_PREFIX):
        return bool(GROUP.fullmatch(audience.removeprefix(GROUP_PREFIX)))
    return bool(DEVICE_ID.fullmatch(audience))


def sign_manifest(
    claims: Mapping[str, Any], private_key: Ed25519PrivateKey, *, kid: str | None = None
) -> str:
    """A compact JWS (EdDSA) of ``claims``; the central side's (and the tests') signer."""
    return signed_jws(claims, private_key, kid=kid)
