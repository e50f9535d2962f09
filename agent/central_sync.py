"""The central origin's background work: learn of new manifests, check them, keep the audio cache.

Two threads of their own, so playback never waits on the network:

- ``central-manifest`` fetches this box's manifest (HTTP, with the ETag it last saw) at start,
  when the retained notice names a newer version (:meth:`CentralSync.notice`, from the link), on a
  ``sync_now`` command, and every ``central.manifest_poll`` as a backstop.  It verifies the token
  and checks every item (:meth:`ManifestOrigin.check`), then hands the result to the main loop.
- ``central-audio`` (agent.audio_downloads) downloads the audio of the central items that start
  within the next 7 days into the verified cache, nearest start first, and warns when an item's
  audio is still missing 30 minutes before its start.

The main loop alone writes the store and the schedule (docs/ARCHITECTURE.md), so the threads only
post :class:`ManifestChecked`, :class:`ManifestRefusedNote` and :class:`SyncNote`;
:meth:`CentralSync.on_event` puts a checked manifest in force there, in one store transaction
(:meth:`ManifestOrigin.put_in_force`), which says whether the engine needs the new items.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audio_cache import AudioCache, WrongContent, check_sha256
from agent.audio_downloads import AUDIO_TIMEOUT, AudioDownloads, SyncNote
from agent.central_http import new_session
from agent.config import CentralConfig, Config
from agent.events import EventKind
from agent.manifest_origin import (
    AUDIO_URLS_KEY,
    CheckedManifest,
    ManifestFetchError,
    ManifestOrigin,
    NoManifest,
    fetch_manifest,
    manifest_url,
)
from agent.schedule_source import CENTRAL_COMMAND_PREFIX, CENTRAL_ORIGIN, Schedule
from agent.store import Store, iso
from foundation.units import format_duration
from protocol.manifest import ManifestRefused, Reason, version_number
from scheduler.items import Item

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

ETAG_KEY = "manifest.etag"
NOT_CACHED = "audio not cached"  # the play log's reason for an item whose audio is not ready
STOP_WAIT = 2.0  # seconds the agent's stop waits for each thread
# Reason codes of a command whose audio cannot play (docs/PROTOCOL.md, "Commands")
AUDIO_NOT_CACHED = "audio_not_cached"
AUDIO_FETCH_FAILED = "audio_fetch_failed"
AUDIO_CORRUPT = "audio_corrupt"


@dataclass(frozen=True)
class ManifestChecked:
    """A verified manifest, every item checked, for the main loop to put in force."""

    checked: CheckedManifest
    etag: str | None


@dataclass(frozen=True)
class ManifestRefusedNote:
    refused: ManifestRefused


class CommandAudioRefused(Exception):
    """A command's audio cannot play: ``reason`` is the ack's reason code, the message its words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CentralSync:
    """The central origin (manifest and audio cache) and its two threads; see the module's docstring."""

    def __init__(
        self,
        config: Config,
        central: CentralConfig,
        store: Store,
        schedule: Schedule,
        post: Callable[[object], None],
        *,
        keys: list[Ed25519PublicKey],
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config, self.central, self.store, self.schedule = config, central, store, schedule
        self._post, self._wall = post, wall
        self.api_url = central.api_url
        device = config.device.id
        source = manifest_url(central.api_url, device) if central.api_url else "central (no api_url)"
        self.origin = ManifestOrigin(
            schedule, store, keys=keys, device_id=device, groups=frozenset(central.groups), source=source
        )
        self.cache = AudioCache(config.storage.dir, max_bytes=config.storage.cache_max)
        urls = store.get_state(AUDIO_URLS_KEY, {})
        self.urls: dict[str, str] = dict(urls) if isinstance(urls, dict) else {}  # replaced whole
        etag = store.get_state(ETAG_KEY)
        self._etag = etag if isinstance(etag, str) else None  # the manifest thread's
        self._session: requests.Session | None = None  # the manifest thread's, made when it first asks
        self._stop = threading.Event()
        self._manifest_wake = threading.Event()
        self._thread = threading.Thread(target=self._manifest_loop, name="central-manifest", daemon=True)
        self.downloads = AudioDownloads(
            self.cache,
            config.device.timezone,
            lambda: self.origin.origin.items,
            lambda: self.urls,
            post,
            wall,
        )
        self._lock = threading.Lock()
        self._manifest_status: dict[str, Any] = {"checked_at": None, "error": None}
        self._fetch_failing = False

    @staticmethod
    def is_event(event: object) -> bool:
        return isinstance(event, ManifestChecked | ManifestRefusedNote | SyncNote)

    def start(self) -> None:
        try:
            self.cache.clean_partials_at_start()
        except OSError as error:  # a failing card must not keep the agent from starting
            logger.error("partial downloads in %s could not be cleaned: %s", self.cache.partial_dir, error)
        self._thread.start()
        self.downloads.start()
        logger.info(
            "central sync started (manifest %s every %s, audio cache %s)",
            self.origin.source, format_duration(self.central.manifest_poll), self.cache.dir,
        )  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        self._manifest_wake.set()
        # A download in progress is not waited for: its partial file resumes at the next start.
        if not self.downloads.stop(STOP_WAIT):
            logger.info("central-audio is still downloading; leaving it (the partial file is kept)")
        self._thread.join(timeout=STOP_WAIT)
        if not self._thread.is_alive() and self._session is not None:
            self._session.close()
        logger.info("central sync stopped")

    # -- what wakes the threads (any thread) -------------------------------------------------------

    def notice(self, version: str) -> None:
        """The retained notice names ``version``: fetch the manifest if it is newer than ours."""
        current = version_number(self.origin.version)
        if current is not None and int(version) <= current:
            logger.debug("manifest notice %s: version %s is in force already", version, current)
            return
        logger.info("manifest notice: version %s is served; fetching it", version)
        self._manifest_wake.set()

    def sync_now(self) -> None:
        """Fetch the manifest and plan the downloads again now (the ``sync_now`` command)."""
        self._manifest_wake.set()
        self.downloads.wake()

    # -- the main loop's half ------------------------------------------------------------------------

    @staticmethod
    def changes_schedule(event: object) -> bool:
        """Whether ``event`` would put a manifest in force (the main loop may hold it back)."""
        return isinstance(event, ManifestChecked)

    def on_event(self, event: object) -> bool:
        """Handle a thread's event on the main loop; whether the schedule's items changed."""
        if isinstance(event, SyncNote):
            self.store.add_event(event.kind, event.detail)
        elif isinstance(event, ManifestRefusedNote):
            self.origin.refused(event.refused)
        elif isinstance(event, ManifestChecked):
            try:
                manifest = self.origin.put_in_force(event.checked)
            except ManifestRefused:
                return False  # a newer one came first; put_in_force said so
            self.urls = dict(manifest.audio_urls)
            if event.etag:
                self.store.put_state(ETAG_KEY, event.etag)
            self.downloads.wake()
            return True
        return False

    def audio_problem(self, item: Item) -> str | None:
        """Why a central item cannot start now ("audio not cached"), or None (main loop, at a start).

        The audio thread verifies needed files ahead, so this is a stat; a file changed since is
        hashed again here, and a corrupt one is deleted (and fetched again by the audio thread).
        """
        if item.id.startswith(CENTRAL_COMMAND_PREFIX) or self.schedule.origin_of(item) != CENTRAL_ORIGIN:
            return None  # a command's audio was verified before it was played (command_audio)
        try:
            path = self.cache.path_of(item.audio)
        except ValueError:
            return f"{NOT_CACHED} ({item.audio!r} is not a sha256)"
        except OSError as error:  # a failing card must not stop the main loop
            logger.error("cached audio %s cannot be read: %s", item.audio, error)
            return f"{NOT_CACHED} (cannot be read: {type(error).__name__})"
        if path is None:
            self.downloads.wake()
            return NOT_CACHED
        return None

    def audio_ready(self, item: Item) -> bool:
        """Whether a central item's audio is in the verified cache, without waking anything (main
        loop, in the item's pre-roll: a stat, or a hash for a file new to this process)."""
        if item.id.startswith(CENTRAL_COMMAND_PREFIX) or self.schedule.origin_of(item) != CENTRAL_ORIGIN:
            return True
        try:
            return self.cache.ready(item.audio)
        except (ValueError, OSError):  # not a sha256, or a failing card: not there to play
            return False

    # -- a command's audio (the link's command thread) ---------------------------------------------

    def command_audio(self, sha256: str, url: str | None) -> Path:
        """The verified file of a command's audio: from the cache at once, else fetched from ``url``."""
        check_sha256(sha256)
        existed = (self.cache.dir / sha256).exists()
        try:
            path = self.cache.path_of(sha256)
        except OSError as error:  # a failing card: unreadable is as good as absent
            raise CommandAudioRefused(AUDIO_NOT_CACHED, f"audio {sha256} cannot be read: {error}") from None
        if path is not None:
            return path
        if url is None:
            if existed:
                raise CommandAudioRefused(
                    AUDIO_CORRUPT, f"the cached audio {sha256} does not match its sha256"
                )
            raise CommandAudioRefused(AUDIO_NOT_CACHED, f"audio {sha256} is not cached on this box")
        try:
            return self.cache.fetch(sha256, url, timeout=AUDIO_TIMEOUT)
        except WrongContent as error:
            raise CommandAudioRefused(AUDIO_CORRUPT, str(error)) from None
        except OSError as error:  # a CacheError, or the card refusing the write (full, read-only)
            raise CommandAudioRefused(AUDIO_FETCH_FAILED, str(error)) from None

    # -- the manifest thread ---------------------------------------------------------------------------

    def _manifest_loop(self) -> None:
        poll = self.central.manifest_poll.total_seconds()
        while not self._stop.is_set():
            if self.api_url is not None:
                try:
                    self._check_manifest(self.api_url)
                except Exception:  # a bug here must not end the thread that keeps the schedule fresh
                    logger.exception("manifest check failed")
            self._manifest_wake.wait(poll)
            self._manifest_wake.clear()

    def _check_manifest(self, api_url: str) -> None:
        try:
            if self._session is None:
                self._session = new_session()
            token, etag = fetch_manifest(self._session, api_url, self.config.device.id, self._etag)
        except NoManifest as none:
            logger.info("%s", none)
            self._fetched()
            return
        except ManifestFetchError as error:
            self._fetch_failed(str(error))
            return
        self._fetched()
        if token is None:
            logger.debug("manifest unchanged (ETag %s)", etag)
            return
        try:
            checked = self.origin.check(token, self._wall())
        except ManifestRefused as refused:
            self._refused(refused, etag)
            return
        logger.info("manifest %s fetched and verified", checked.manifest.version)
        self._etag = etag
        self._post(ManifestChecked(checked, etag))

    def _refused(self, refused: ManifestRefused, etag: str | None) -> None:
        if refused.reason is Reason.STALE and refused.version == self.origin.version:
            logger.debug("manifest %s is the one in force", refused.version)
        else:
            self._post(ManifestRefusedNote(refused))
        if refused.reason is not Reason.NOT_YET_VALID:  # the box's clock may be wrong: try it again
            self._etag = etag

    def _fetched(self) -> None:
        with self._lock:
            self._manifest_status = {"checked_at": iso(self._wall()), "error": None}
        self._fetch_failing = False

    def _fetch_failed(self, error: str) -> None:
        logger.warning("%s", error)
        with self._lock:
            self._manifest_status = {**self._manifest_status, "error": error}
        if not self._fetch_failing:  # once per streak of failures: a box offline for a day says it once
            self._post(SyncNote(EventKind.MANIFEST_FETCH_FAILED, error))
        self._fetch_failing = True

    # -- the audio thread ----------------------------------------------------------------------------

    # -- status ----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The manifest in force and the cache's readiness, for ``loa status`` (any thread)."""
        with self._lock:
            manifest = dict(self._manifest_status)
        cache = self.downloads.status()
        origin = self.origin.origin
        return {
            "manifest": {
                "version": origin.version or None,
                "url": self.origin.source if self.api_url else None,
                "poll": format_duration(self.central.manifest_poll),
                "items": len(origin.items),
                "refused": origin.error,
                **manifest,
            },
            "cache": cache,
        }
