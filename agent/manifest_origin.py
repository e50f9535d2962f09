"""The central origin of the schedule: a signed manifest, fetched over HTTP, put in force whole or not at all.

:func:`fetch_manifest` asks the central server for this box's manifest with the ETag it last saw
(``304 Not Modified`` means nothing changed).  :class:`ManifestOrigin` verifies a token
(protocol.manifest), checks every item with the local schedule file's own reader
(``scheduler.items.parse_items``), and only when all of them are good replaces the ``central``
origin of the :class:`~agent.schedule_source.Schedule`, last good copy first, in one store
transaction.  Any refusal leaves the manifest in force as it was, and is logged and recorded.

An item's ``audio`` becomes the sha256 of its audio, so the schedule's AudioResolver finds it in
the verified cache at ``storage.dir/audio/<sha256>`` (agent.audio_cache).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.central_http import request_errors
from agent.events import EventKind
from agent.schedule_source import CENTRAL_ORIGIN, Schedule
from agent.store import Store
from foundation.errors import LoaError
from protocol.manifest import (
    MAX_MANIFEST_CHARS,
    Manifest,
    ManifestRefused,
    Reason,
    verify_manifest,
    version_number,
)
from scheduler.items import Item, parse_items

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

FETCH_TIMEOUT = 30.0  # seconds, for the connection and between bytes
AUDIO_URLS_KEY = "manifest.audio_urls"  # sha256 -> URL of the manifest in force, for the audio cache


class ManifestFetchError(LoaError, OSError):
    """The central server did not hand over a manifest (network, HTTP status, or size)."""


class NoManifest(ManifestFetchError):
    """The central server has no manifest for this box yet (HTTP 404)."""


def manifest_url(api_url: str, device_id: str) -> str:
    """Where a box's manifest is served (docs/PROTOCOL.md, "Schedule manifests")."""
    return f"{api_url.rstrip('/')}/v1/devices/{device_id}/manifest"


def fetch_manifest(
    session: requests.Session, api_url: str, device_id: str, etag: str | None, timeout: float = FETCH_TIMEOUT
) -> tuple[str | None, str | None]:
    """``(token, etag)`` of this box's manifest; ``(None, etag)`` when it is unchanged since ``etag``."""
    url = manifest_url(api_url, device_id)
    headers = {"If-None-Match": etag} if etag else {}
    try:
        with session.get(url, headers=headers, timeout=timeout, stream=True) as response:
            if response.status_code == 304:
                return None, etag
            if response.status_code == 404:
                raise NoManifest(f"manifest {url}: none for this box yet (HTTP 404)")
            if response.status_code != 200:
                raise ManifestFetchError(f"manifest {url}: HTTP {response.status_code}")
            body = response.raw.read(MAX_MANIFEST_CHARS + 1, decode_content=True)
            new_etag = response.headers.get("ETag")
    except request_errors() as error:
        raise ManifestFetchError(f"manifest {url}: {error}") from None
    if len(body) > MAX_MANIFEST_CHARS:
        raise ManifestFetchError(f"manifest {url}: more than {MAX_MANIFEST_CHARS} bytes")
    try:
        return body.decode("ascii").strip(), new_etag
    except UnicodeDecodeError:
        raise ManifestFetchError(f"manifest {url}: not an ASCII compact JWS") from None


@dataclass(frozen=True)
class CheckedManifest:
    """A manifest verified and whose every item passed the schedule's reader: ready to put in force."""

    manifest: Manifest
    items: list[Item]
    specs: dict[str, dict[str, Any]]


class ManifestOrigin:
    """The ``central`` origin of ``schedule``: the last good manifest, replaced only by a newer good one."""

    def __init__(
        self,
        schedule: Schedule,
        store: Store,
        *,
        keys: Sequence[Ed25519PublicKey],
        device_id: str,
        groups: frozenset[str],
        source: str,
    ) -> None:
        self.schedule, self.store, self.keys = schedule, store, list(keys)
        self.device_id, self.groups, self.source = device_id, groups, source
        self.origin = schedule.add_origin(store, CENTRAL_ORIGIN, source)

    @property
    def version(self) -> str:
        return self.origin.version

    def apply(self, token: str, now: datetime) -> Manifest:
        """Put the manifest ``token`` in force, or raise ManifestRefused and keep the one in force."""
        try:
            checked = self.check(token, now)
        except ManifestRefused as refused:
            self.refused(refused)
            raise
        return self.put_in_force(checked)

    def check(self, token: str, now: datetime) -> CheckedManifest:
        """Verify ``token`` and check every item, or raise ManifestRefused; changes nothing.

        It reads only the version in force and the config, so the central sync thread calls it
        off the main loop (a 10,000-item manifest takes a fraction of a second to check).
        """
        manifest = verify_manifest(
            token, keys=self.keys, device_id=self.device_id, groups=self.groups, now=now,
            current_version=self.origin.version or None,
        )  # fmt: skip
        items, specs = self._items(manifest)
        return CheckedManifest(manifest, items, specs)

    def put_in_force(self, checked: CheckedManifest) -> Manifest:
        """Make a checked manifest the central origin, last good copy first (main loop).

        A manifest checked against an older version than the one now in force is refused as
        stale: two fetches racing each other never roll the schedule back.
        """
        manifest = checked.manifest
        current = version_number(self.origin.version)
        if current is not None and int(manifest.version) <= current:
            refused = ManifestRefused(
                Reason.STALE, f"version {manifest.version} is not newer than {self.origin.version}",
                manifest.version,
            )  # fmt: skip
            self.refused(refused)
            raise refused
        logger.info("putting manifest %s in force (%d items)", manifest.version, len(checked.items))
        # The URLs are written around the schedule's transaction so that, whenever the box dies, the
        # map in the store covers the schedule in force (old and new URLs first, then only the new).
        known = self.store.get_state(AUDIO_URLS_KEY, {})
        both = {**(known if isinstance(known, dict) else {}), **manifest.audio_urls}
        self.store.put_state(AUDIO_URLS_KEY, both)
        self.schedule.apply_origin(
            self.store, CENTRAL_ORIGIN, checked.items, checked.specs, manifest.version, self.source
        )
        self.store.put_state(AUDIO_URLS_KEY, dict(manifest.audio_urls))
        return manifest

    def _items(self, manifest: Manifest) -> tuple[list[Item], dict[str, dict[str, Any]]]:
        data = manifest.schedule_data()
        tz, zones = self.schedule.config.device.timezone, self.schedule.zones
        items, findings = parse_items(data, tz, zones)
        if findings:  # wholly in force or not at all
            raise ManifestRefused(Reason.BAD_ITEMS, findings, manifest.version)
        specs = {str(raw["id"]).strip(): raw for raw in data["items"]}
        return items, specs

    def refused(self, refused: ManifestRefused) -> None:
        """Log and record a refusal; the manifest in force stays (main loop: it writes the store)."""
        problems = [str(problem) for problem in refused.problems]
        detail = f"manifest {refused.version or '?'} refused ({refused.reason.value}): " + "; ".join(
            problems[:5]
        )
        if refused.reason != Reason.STALE:  # a replayed old manifest is no fault of the one in force
            self.origin.error = detail
        logger.error("%s; keeping version %s", detail, self.origin.version or "none")
        self.store.add_event(EventKind.SCHEDULE_REFUSED, detail)
