"""The verified audio cache: content-addressed files under ``storage.dir/audio/<sha256>``.

A file becomes ``audio/<sha256>`` only after its bytes hash to that name: a download is written to
``audio/.partial/<sha256>``, resumed with an HTTP ``Range`` after a cut, hashed, fsynced and then
renamed into place, so a power cut or ``kill -9`` leaves at worst a partial file, never a wrong
final one.  A cached file is hashed again on its first use in each process (a flipped bit on the SD
card is found, deleted and reported).  Eviction keeps the quota by least recent use but never
removes audio needed within the horizon.  The link (a command's audio) and the ``central-audio``
thread of agent.central_sync (a schedule's audio) call this module; it owns no thread (each caller
fetches on its own) and holds a lock per hash so two callers never write one partial file at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from agent.central_http import new_session, request_errors
from foundation.errors import LoaError

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

DEFAULT_HORIZON = timedelta(days=7)
STALE_PARTIAL_S = 24 * 3600.0  # a partial untouched this long is not worth resuming
CHUNK = 64 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CacheError(LoaError, OSError):
    """Audio could not be fetched or verified: HTTP error, timeout, cut, wrong hash, too big."""


class WrongContent(CacheError):
    """What was fetched does not hash to the sha256 it was fetched as (it was discarded)."""


@dataclass(frozen=True)
class Wanted:
    """Audio that an item needs at ``needed_at``."""

    sha256: str
    url: str
    needed_at: datetime


@dataclass(frozen=True)
class Eviction:
    """What :meth:`AudioCache.evict` did: ``over_quota`` when the needed audio alone exceeds it."""

    evicted: list[str]
    freed: int
    needed_bytes: int
    over_quota: bool


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits (it names a file: no other name may)."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 (64 lowercase hex digits): {sha256!r}")
    return sha256


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AudioCache:
    """The audio cache of one agent under ``storage_dir/audio`` (see the module's docstring)."""

    def __init__(
        self,
        storage_dir: Path,
        *,
        max_bytes: int,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(storage_dir) / "audio"
        self.partial_dir = self.dir / ".partial"
        try:
            self.partial_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only or full card: what is cached still plays
            logger.error("audio cache %s cannot be created (%s): nothing will be downloaded", self.dir, error)
        self.max_bytes = max_bytes
        self._session = session  # made on the first download: requests is not loaded before
        self._clock = clock
        self._lock = threading.Lock()
        # sha256 -> (size, mtime_ns) of the file when it was last verified or used: a file whose
        # size or mtime changed since (rewritten in place) is hashed again before it is used
        self._verified: dict[str, tuple[int, int]] = {}
        self._fetching: dict[str, threading.Lock] = {}
        self._needed: set[str] = set()
        self.corrupt_deleted = 0

    # -- use --------------------------------------------------------------------------------------

    def path_of(self, sha256: str) -> Path | None:
        """The cached file of ``sha256`` if present and verified; its use is remembered for LRU.

        A file is hashed on its first use in a process and again whenever its size or mtime is not
        what this cache last left it with; otherwise this is a stat and a utime.
        """
        path = self.dir / check_sha256(sha256)
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._verified.pop(sha256, None)
            return None
        with self._lock:
            known = self._verified.get(sha256) == (stat.st_size, stat.st_mtime_ns)
        if not known and not self._verify(path, sha256):
            return None
        return path if self._used(path, sha256) else None

    def ready(self, sha256: str) -> bool:
        """Whether the file of ``sha256`` is present and verified, hashing it only when it is new to
        this process or changed; unlike :meth:`path_of` it does not count as a use (planning)."""
        path = os.path.join(self.dir, check_sha256(sha256))
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            with self._lock:
                self._verified.pop(sha256, None)
            return False
        with self._lock:
            if self._verified.get(sha256) == (stat.st_size, stat.st_mtime_ns):
                return True
        if not self._verify(Path(path), sha256):
            return False
        with self._lock:
            self._verified[sha256] = (stat.st_size, stat.st_mtime_ns)
        return True

    def _used(self, path: Path, sha256: str) -> bool:
        now = self._clock()
        try:
            os.utime(path, (now, now))
        except FileNotFoundError:  # evicted meanwhile
            with self._lock:
                self._verified.pop(sha256, None)
            return False
        except OSError as error:  # a read-only card: the file plays all the same, unmarked for LRU
            logger.debug("cannot mark %s as used: %s", path, error)
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._verified.pop(sha256, None)
            return False
        with self._lock:
            self._verified[sha256] = (stat.st_size, stat.st_mtime_ns)
        return True

    def _verify(self, path: Path, sha256: str) -> bool:
        try:
            actual = _hash_file(path)
        except FileNotFoundError:
            return False
        if actual != sha256:
            logger.error("cached audio %s is corrupt (its content hashes to %s): deleted", path, actual)
            path.unlink(missing_ok=True)
            with self._lock:
                self._verified.pop(sha256, None)
                self.corrupt_deleted += 1
            return False
        return True

    # -- download ---------------------------------------------------------------------------------

    def fetch(self, sha256: str, url: str, *, timeout: float) -> Path:
        """Download ``url`` as ``sha256`` (resuming a partial file), verify it, and return its path."""
        check_sha256(sha256)
        with self._lock:
            per_hash = self._fetching.setdefault(sha256, threading.Lock())
        with per_hash:
            cached = self.path_of(sha256)
            if cached is not None:
                return cached
            partial = self.partial_dir / sha256
            try:
                self._download(sha256, url, partial, timeout)
            except request_errors() as e:
                # the partial file keeps what arrived, for a Range resume next time
                raise CacheError(f"audio {sha256} from {url}: download failed: {e}") from e
            return self._install(sha256, url, partial)

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = new_session()
            return self._session

    def _download(self, sha256: str, url: str, partial: Path, timeout: float) -> None:
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._http().get(url, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 416 and offset:
                # the partial file is no prefix the server knows: start again from nothing
                partial.unlink(missing_ok=True)
                return self._download(sha256, url, partial, timeout)
            if response.status_code == 206 and offset:
                expected = f"bytes {offset}-"
                if not response.headers.get("Content-Range", "").startswith(expected):
                    raise CacheError(
                        f"audio {sha256} from {url}: asked for bytes from {offset}, the server sent"
                        f" {response.headers.get('Content-Range')!r}"
                    )
                mode = "ab"
            elif response.status_code == 200:
                offset, mode = 0, "wb"  # the server ignored Range: start again
            else:
                raise CacheError(f"audio {sha256} from {url}: HTTP {response.status_code} {response.reason}")
            self._write(sha256, url, partial, mode, offset, response)
        return None

    def _write(
        self, sha256: str, url: str, partial: Path, mode: str, offset: int, response: requests.Response
    ) -> None:
        size = offset
        with partial.open(mode) as f:
            for block in response.iter_content(CHUNK):
                size += len(block)
                if size > self.max_bytes:
                    f.close()
                    partial.unlink(missing_ok=True)
                    raise CacheError(
                        f"audio {sha256} from {url}: larger than the cache quota ({self.max_bytes} bytes)"
                    )
                f.write(block)
            f.flush()
            os.fsync(f.fileno())

    def _install(self, sha256: str, url: str, partial: Path) -> Path:
        actual = _hash_file(partial)
        if actual != sha256:
            partial.unlink(missing_ok=True)
            raise WrongContent(f"audio {sha256} from {url}: wrong content (it hashes to {actual}): discarded")
        final = self.dir / sha256
        os.replace(partial, final)
        _fsync_dir(self.dir)
        _fsync_dir(self.partial_dir)
        self._used(final, sha256)
        logger.info("audio %s cached from %s", sha256, url)
        return final

    # -- planning and quota -----------------------------------------------------------------------

    def plan(
        self, wanted: Iterable[tuple[str, str, datetime]], now: datetime, horizon: timedelta = DEFAULT_HORIZON
    ) -> list[Wanted]:
        """What to download, nearest start first: audio needed before ``now + horizon``, not cached.

        Remembers the hashes needed within the horizon for :meth:`status` and :meth:`needed`.
        """
        earliest: dict[str, Wanted] = {}
        for sha256, url, needed_at in wanted:
            check_sha256(sha256)
            if needed_at > now + horizon:
                continue
            known = earliest.get(sha256)
            if known is None or needed_at < known.needed_at:
                earliest[sha256] = Wanted(sha256, url, needed_at)
        with self._lock:
            self._needed = set(earliest)
        folder = str(self.dir)
        missing = [w for w in earliest.values() if not os.path.isfile(os.path.join(folder, w.sha256))]
        return sorted(missing, key=lambda w: w.needed_at)

    def needed(self) -> set[str]:
        """The hashes the last :meth:`plan` found needed within its horizon."""
        with self._lock:
            return set(self._needed)

    def _files(self) -> list[tuple[str, int, float]]:
        files = []
        for entry in os.scandir(self.dir):
            if entry.is_file(follow_symlinks=False) and _SHA256.fullmatch(entry.name):
                st = entry.stat(follow_symlinks=False)
                files.append((entry.name, st.st_size, st.st_mtime))
        return files

    def evict(self, needed: set[str]) -> Eviction:
        """Bring the cache under its quota: least recently used first, never a ``needed`` file."""
        files = self._files()
        total = sum(size for _, size, _ in files)
        needed_bytes = sum(size for name, size, _ in files if name in needed)
        evicted: list[str] = []
        freed = 0
        for name, size, _ in sorted((f for f in files if f[0] not in needed), key=lambda f: f[2]):
            if total - freed <= self.max_bytes:
                break
            (self.dir / name).unlink(missing_ok=True)
            with self._lock:
                self._verified.pop(name, None)
            evicted.append(name)
            freed += size
            logger.info("audio %s evicted (%d bytes, not needed within the horizon)", name, size)
        over = needed_bytes > self.max_bytes
        if over:
            logger.warning(
                "audio needed within the horizon takes %d bytes, more than the cache quota of %d",
                needed_bytes,
                self.max_bytes,
            )
        return Eviction(evicted, freed, needed_bytes, over)

    def clean_partials_at_start(self, max_age_s: float = STALE_PARTIAL_S) -> list[str]:
        """Remove partial downloads older than ``max_age_s`` (and stray files); keep the rest to resume."""
        removed = []
        now = self._clock()
        for entry in os.scandir(self.partial_dir):
            stale = now - entry.stat(follow_symlinks=False).st_mtime > max_age_s
            if stale or not _SHA256.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                if entry.is_dir(follow_symlinks=False):
                    continue
                os.unlink(entry.path)
                removed.append(entry.name)
        if removed:
            logger.info("removed %d stale partial downloads from %s", len(removed), self.partial_dir)
        return removed

    def status(self) -> dict[str, int]:
        """Files, bytes, quota, partial downloads, needed-but-missing audio, corrupt files deleted."""
        files = self._files()
        present = {name for name, _, _ in files}
        with self._lock:
            missing = len(self._needed - present)
            corrupt = self.corrupt_deleted
        return {
            "files": len(files),
            "bytes": sum(size for _, size, _ in files),
            "quota": self.max_bytes,
            "partials": sum(1 for _ in self.partial_dir.iterdir()),
            "missing_needed": missing,
            "corrupt_deleted": corrupt,
        }
