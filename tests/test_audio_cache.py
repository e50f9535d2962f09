"""The audio cache against a real HTTP server on loopback and real files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from agent.audio_cache import AudioCache, CacheError
from tests.http_stand_in import serving

REPO = Path(__file__).resolve().parent.parent


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    cut_after: int | None = None  # bytes of body sent before the connection is cut (once)
    chunk_delay: float = 0.0  # seconds between 4 KiB chunks: a slow server
    ranges: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.state
        body = state.files.get(self.path.lstrip("/"))
        rng = self.headers.get("Range")
        with state.lock:
            state.ranges.append(rng)
            cut, state.cut_after = state.cut_after, None
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and state.honour_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if cut is not None:
            part = part[:cut]
            self.close_connection = True
        try:
            for i in range(0, len(part), 4096):
                self.wfile.write(part[i : i + 4096])
                self.wfile.flush()
                if state.chunk_delay:
                    time.sleep(state.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@dataclass
class Server:
    state: ServerState
    base: str

    def add(self, body: bytes) -> tuple[str, str]:
        sha = hashlib.sha256(body).hexdigest()
        self.state.files[sha] = body
        return sha, f"{self.base}/{sha}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = ServerState()
    handler = type("BoundHandler", (Handler,), {"state": state})
    with serving(handler) as base:
        yield Server(state, base)


def audio(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed * 13 + i // 251) % 256 for i in range(n))


def test_download_is_verified_and_final(server: Server, tmp_path: Path) -> None:
    sha, url = server.add(audio(300_000))
    cache = AudioCache(tmp_path, max_bytes=10_000_000)
    assert cache.path_of(sha) is None
    path = cache.fetch(sha, url, timeout=5)
    assert path == tmp_path / "audio" / sha
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert list((tmp_path / "audio" / ".partial").iterdir()) == []
    assert cache.path_of(sha) == path
    assert server.state.ranges == [None]


def test_cut_mid_download_resumes_with_range(server: Server, tmp_path: Path) -> None:
    sha, url = server.add(audio(300_000))
    server.state.cut_after = 150_000
    cache = AudioCache(tmp_path, max_bytes=10_000_000)
    with pytest.raises(CacheError, match=sha):
        cache.fetch(sha, url, timeout=5)
    assert not (tmp_path / "audio" / sha).exists()
    partial_size = (tmp_path / "audio" / ".partial" / sha).stat().st_size
    assert 0 < partial_size <= 150_000
    path = cache.fetch(sha, url, timeout=5)
    assert server.state.ranges == [None, f"bytes={partial_size}-"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    body = audio(200_000)
    sha, url = server.add(body)
    partial = tmp_path / "audio" / ".partial" / sha
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff" * 50_000)  # not even a prefix: resuming onto it would be wrong
    server.state.honour_range = False
    path = AudioCache(tmp_path, max_bytes=10_000_000).fetch(sha, url, timeout=5)
    assert server.state.ranges == ["bytes=50000-"]
    assert path.read_bytes() == body


def test_wrong_hash_never_becomes_a_final_file(server: Server, tmp_path: Path) -> None:
    _, url = server.add(audio(10_000))
    claimed = hashlib.sha256(b"something else").hexdigest()
    cache = AudioCache(tmp_path, max_bytes=10_000_000)
    with pytest.raises(CacheError, match="wrong content"):
        cache.fetch(claimed, url, timeout=5)
    assert not (tmp_path / "audio" / claimed).exists()
    assert not (tmp_path / "audio" / ".partial" / claimed).exists()
    assert cache.path_of(claimed) is None


def test_http_error_is_a_cache_error(server: Server, tmp_path: Path) -> None:
    sha = hashlib.sha256(b"absent").hexdigest()
    with pytest.raises(CacheError, match="HTTP 404"):
        AudioCache(tmp_path, max_bytes=1000).fetch(sha, f"{server.base}/{sha}", timeout=5)
    assert not (tmp_path / "audio" / sha).exists()


def test_corrupted_cached_file_is_detected_and_fetched_again(server: Server, tmp_path: Path) -> None:
    body = audio(100_000)
    sha, url = server.add(body)
    AudioCache(tmp_path, max_bytes=10_000_000).fetch(sha, url, timeout=5)
    final = tmp_path / "audio" / sha
    data = bytearray(final.read_bytes())
    data[12_345] ^= 0x01
    final.write_bytes(bytes(data))
    cache = AudioCache(tmp_path, max_bytes=10_000_000)  # a new process verifies on first use
    assert cache.path_of(sha) is None
    assert not final.exists()
    assert cache.status()["corrupt_deleted"] == 1
    assert cache.fetch(sha, url, timeout=5).read_bytes() == body


def test_quota_evicts_least_recently_used_never_needed(tmp_path: Path) -> None:
    clock = [1000.0]
    cache = AudioCache(tmp_path, max_bytes=250, clock=lambda: clock[0])
    shas = []
    for i in range(4):  # 4 files of 100 bytes, used at 1000, 1001, 1002, 1003
        body = audio(100, seed=i)
        sha = hashlib.sha256(body).hexdigest()
        (tmp_path / "audio" / sha).write_bytes(body)
        clock[0] += 1
        assert cache.path_of(sha) is not None
        shas.append(sha)
    # the oldest file is needed: keep it; evict the next least recently used until under 250
    result = cache.evict({shas[0]})
    assert result.evicted == [shas[1], shas[2]]
    assert not result.over_quota
    assert sorted(p.name for p in (tmp_path / "audio").iterdir() if p.is_file()) == sorted([shas[0], shas[3]])
    over = AudioCache(tmp_path, max_bytes=150).evict({shas[0], shas[3]})
    assert over.evicted == [] and over.over_quota and over.needed_bytes == 200


def test_plan_nearest_first_within_horizon(tmp_path: Path) -> None:
    now = datetime(2099, 1, 1, tzinfo=UTC)
    a, b, c, d = (hashlib.sha256(bytes([i])).hexdigest() for i in range(4))
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / d).write_bytes(bytes([3]))
    cache = AudioCache(tmp_path, max_bytes=1000)
    wanted = [
        (a, "http://x/a", now + timedelta(days=2)),
        (b, "http://x/b", now + timedelta(days=8)),  # beyond the horizon
        (c, "http://x/c", now + timedelta(hours=1)),
        (a, "http://x/a", now + timedelta(hours=3)),
        (d, "http://x/d", now),  # already cached
    ]
    plan = cache.plan(wanted, now)
    assert [(w.sha256, w.needed_at) for w in plan] == [
        (c, now + timedelta(hours=1)),
        (a, now + timedelta(hours=3)),
    ]
    assert cache.needed() == {a, c, d}
    assert cache.status()["missing_needed"] == 2


def test_stale_partials_removed_recent_kept(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=1000, clock=lambda: 10 * 86400.0)
    old, new = (hashlib.sha256(bytes([i])).hexdigest() for i in range(2))
    for name, mtime in ((old, 8 * 86400.0), (new, 10 * 86400.0 - 60)):
        p = cache.partial_dir / name
        p.write_bytes(b"x")
        os.utime(p, (mtime, mtime))
    (cache.partial_dir / "stray.tmp").write_bytes(b"x")
    assert sorted(cache.clean_partials_at_start()) == sorted([old, "stray.tmp"])
    assert [p.name for p in cache.partial_dir.iterdir()] == [new]


def test_bad_hash_names_are_refused(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, max_bytes=1000)
    for bad in ("../etc/passwd", "A" * 64, "ab"):
        with pytest.raises(ValueError):
            cache.path_of(bad)


CHILD = """
import sys
from pathlib import Path
from agent.audio_cache import AudioCache
AudioCache(Path(sys.argv[1]), max_bytes=10_000_000).fetch(sys.argv[2], sys.argv[3], timeout=30)
"""


def test_kill_9_mid_download_then_resume(server: Server, tmp_path: Path) -> None:
    body = audio(400_000)
    sha, url = server.add(body)
    server.state.chunk_delay = 0.01  # about 1 s for the whole body
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), sha, url], env=env)
    partial = tmp_path / "audio" / ".partial" / sha
    deadline = time.monotonic() + 30
    try:
        while not (partial.exists() and partial.stat().st_size > 0):
            assert child.poll() is None, "the child ended before it wrote anything"
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert not (tmp_path / "audio" / sha).exists()
    server.state.chunk_delay = 0.0
    cache = AudioCache(tmp_path, max_bytes=10_000_000)
    assert cache.clean_partials_at_start() == []  # a fresh partial is kept for resume
    size = partial.stat().st_size
    assert 0 < size < len(body)
    path = cache.fetch(sha, url, timeout=5)
    assert server.state.ranges[-1] == f"bytes={size}-"
    assert path.read_bytes() == body
    assert list(cache.partial_dir.iterdir()) == []


def test_range_not_satisfiable_restarts_from_nothing(server: Server, tmp_path: Path) -> None:
    body = audio(50_000)
    sha, url = server.add(body)
    partial = tmp_path / "audio" / ".partial" / sha
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x00" * 60_000)  # longer than the audio: the server answers 416
    path = AudioCache(tmp_path, max_bytes=10_000_000).fetch(sha, url, timeout=5)
    assert server.state.ranges == ["bytes=60000-", None]
    assert path.read_bytes() == body
