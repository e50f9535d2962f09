"""Audio kept by its SHA-256 on disk (``storage.dir/audio/<sha256>``): uploads and synthesized speech.

An upload is streamed into ``audio/.partial/`` while it is hashed and counted; it is refused (and
deleted) as soon as it passes the size limit, and after the last byte unless its first bytes are
those of an MP3, a WAV or an OGG file *and* mutagen can read its duration from it.  Only then is it
fsynced and renamed into place, so a file under its hash is always whole and always audio; a
refused upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mutagen
from mutagen.mp3 import MP3
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from central.files import fsync_directory
from foundation.errors import LoaError

SHA256_HEX = 64


class AudioRefused(LoaError, ValueError):
    """An upload that is not audio the boxes can play, or too large; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class StoredAudio:
    sha256: str
    size: int
    mime: str
    duration_s: float


def sniff(head: bytes) -> str | None:
    """The MIME type the first bytes announce, among the three the boxes play; None for anything else."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


_READERS: dict[str, tuple[type[mutagen.FileType], ...]] = {
    "audio/wav": (WAVE,),
    "audio/ogg": (OggVorbis, OggOpus),
    "audio/mpeg": (MP3,),
}


def duration_of(path: Path, mime: str) -> float | None:
    """The length in seconds mutagen reads for ``mime``; None when the file is not that."""
    for reader in _READERS[mime]:
        try:
            info = reader(path).info
            length = float(info.length) if info is not None else 0.0
        except (mutagen.MutagenError, ValueError, EOFError, OverflowError, IndexError):
            continue
        if length > 0:
            return length
    return None


class AudioStore:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory, self.max_bytes = directory, max_bytes
        self.partial = directory / ".partial"
        self.partial.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path | None:
        if len(sha256) != SHA256_HEX or not all(c in "0123456789abcdef" for c in sha256):
            return None
        path = self.directory / sha256
        return path if path.is_file() else None

    def put(self, chunks: Iterable[bytes], *, name: str = "upload") -> StoredAudio:
        """Store what ``chunks`` hold if it is playable audio within the limit; else AudioRefused."""
        handle, temporary = tempfile.mkstemp(dir=self.partial)
        path = Path(temporary)
        try:
            digest, size, head = hashlib.sha256(), 0, b""
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise AudioRefused(
                            f"{name}: larger than {self.max_bytes // (1024 * 1024)} MB: refused", 413
                        )
                    if len(head) < 16:
                        head = (head + chunk)[:16]
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            stored = self._check(path, head, size, digest.hexdigest(), name)
            os.replace(path, self.directory / stored.sha256)
            fsync_directory(self.directory)
            return stored
        finally:
            path.unlink(missing_ok=True)

    def _check(self, path: Path, head: bytes, size: int, sha256: str, name: str) -> StoredAudio:
        mime = sniff(head)
        if size == 0:
            raise AudioRefused(f"{name}: empty file: refused", 400)
        if mime is None:
            raise AudioRefused(f"{name}: not MP3, WAV or OGG audio: refused", 415)
        duration = duration_of(path, mime)
        if duration is None:
            raise AudioRefused(f"{name}: looks like {mime} but cannot be read as such: refused", 415)
        return StoredAudio(sha256, size, mime, round(duration, 3))
