"""verify_manifest accepts a signed, newer manifest for this box and refuses everything else by reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.manifest import Manifest, ManifestRefused, Reason, sign_manifest, verify_manifest

NOW = datetime(2099, 1, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
DEVICE = "xa-quang-son-01"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
AUDIO = {"sha256": SHA, "url": f"https://central.example.vn/audio/{SHA}"}


def claims(**changes: Any) -> dict[str, Any]:
    item = {"id": "ban-tin-sang", "audio": AUDIO, "rrule": "FREQ=DAILY", "dtstart": "2099-01-01 06:00"}
    base: dict[str, Any] = {
        "v": 1, "aud": DEVICE, "iat": int(NOW.timestamp()) - 10, "version": "7", "items": [item],
    }  # fmt: skip
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def verify(token: str, current: str | None = None, keys: list[Ed25519PrivateKey] | None = None) -> Manifest:
    return verify_manifest(
        token, keys=[k.public_key() for k in (keys or [KEY])], device_id=DEVICE,
        groups=frozenset({"xa-quang-son"}), now=NOW, current_version=current,
    )  # fmt: skip


def refused(token: str, **options: Any) -> Reason:
    with pytest.raises(ManifestRefused) as error:
        verify(token, **options)
    return error.value.reason


def test_a_valid_manifest_verifies_with_audio_as_its_sha256() -> None:
    manifest = verify(sign_manifest(claims(), KEY), current="6")
    assert (manifest.version, manifest.audience) == ("7", DEVICE)
    assert manifest.schedule_data()["items"][0]["audio"] == SHA
    assert manifest.audio_urls == {SHA: AUDIO["url"]}


def test_rotated_keys_and_group_audience_are_accepted() -> None:
    manifest = verify(sign_manifest(claims(aud="group:xa-quang-son"), KEY), keys=[OTHER, KEY])
    assert manifest.audience == "group:xa-quang-son"


@pytest.mark.parametrize(
    ("current", "version", "reason"),
    [
        ("7", "7", Reason.STALE),
        ("10", "9", Reason.STALE),
        ("9", "10", None),
        ("", "1", None),
        (None, "1", None),
    ],
)
def test_versions_compare_as_numbers(current: str | None, version: str, reason: Reason | None) -> None:
    token = sign_manifest(claims(version=version), KEY)
    if reason is None:
        assert verify(token, current=current).version == version
    else:
        assert refused(token, current=current) == reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_forgeries_are_refused_with_their_reason() -> None:
    good = sign_manifest(claims(), KEY)
    head, body, _ = good.split(".")
    unsigned = f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}."
    hs256 = jwt.encode(claims(), "s" * 32, algorithm="HS256")
    tampered = f"{head}.{b64(json.dumps(claims(version='99')).encode())}.{good.split('.')[2]}"
    assert refused(unsigned) == Reason.ALG_NOT_ALLOWED
    assert refused(hs256) == Reason.ALG_NOT_ALLOWED
    assert refused(tampered) == Reason.BAD_SIGNATURE
    assert refused(sign_manifest(claims(), OTHER)) == Reason.BAD_SIGNATURE
    assert refused("not a token") == Reason.MALFORMED


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "xa-khac-01"}, Reason.FOREIGN_AUDIENCE),
        ({"aud": "group:huyen-khac"}, Reason.FOREIGN_AUDIENCE),
        ({"iat": int(NOW.timestamp()) + 3600}, Reason.NOT_YET_VALID),
        ({"version": "07"}, Reason.BAD_CLAIMS),
        ({"version": 7}, Reason.BAD_CLAIMS),
        ({"v": 2}, Reason.BAD_CLAIMS),
        ({"exp": 1}, Reason.BAD_CLAIMS),
        ({"items": {"a": 1}}, Reason.BAD_CLAIMS),
        ({"items": [{"id": "x", "audio": "a.wav", "at": "2099-01-01T06:00:00+07:00"}]}, Reason.BAD_ITEMS),
        (
            {"items": [{"id": "x", "audio": {"sha256": SHA}, "at": "2099-01-01T06:00:00+07:00"}]},
            Reason.BAD_ITEMS,
        ),
        (
            {"items": [{"id": "x", "audio": {**AUDIO, "url": "ftp://x"}, "at": "2099-01-01T06:00"}]},
            Reason.BAD_ITEMS,
        ),
    ],
)
def test_bad_claims_are_refused_with_their_reason(changes: dict[str, Any], reason: Reason) -> None:
    assert refused(sign_manifest(claims(**changes), KEY)) == reason


def test_an_iat_within_the_leeway_is_accepted() -> None:
    assert verify(sign_manifest(claims(iat=int(NOW.timestamp()) + 30), KEY)).version == "7"


def test_a_bad_item_names_its_index_and_key_path() -> None:
    items = [claims()["items"][0], {"id": "x", "audio": {"sha256": "ab", "url": "https://a"}, "at": "x"}]
    with pytest.raises(ManifestRefused) as error:
        verify(sign_manifest(claims(items=items), KEY))
    assert [problem.path_text for problem in error.value.problems] == ["items[1].audio.sha256"]  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000))
def test_random_input_only_ever_raises_a_refusal(data: bytes | str) -> None:
    token = data.decode("latin-1") if isinstance(data, bytes) else data
    with pytest.raises(ManifestRefused):
        verify(token)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(st.none() | st.integers() | st.text(max_size=8),
       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
       max_size=6))  # fmt: skip
def test_random_signed_claims_only_ever_raise_a_refusal(payload: dict[str, Any]) -> None:
    with pytest.raises(ManifestRefused):
        verify(sign_manifest(payload, KEY))
