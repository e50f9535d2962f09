"""agent.central_http: requests is loaded on first use, without charset_normalizer, and still works.

Each case runs in a fresh interpreter (what is in ``sys.modules`` is the point), with warnings as
errors, against a real HTTP server on loopback that this process serves, so that the fresh interpreter
holds only what its case loads.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.http_stand_in import serving

ROOT = Path(__file__).resolve().parent.parent

BODY = "Loa phường Tân Định: bản tin 6 giờ".encode()


class News(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))  # no Content-Type: requests must guess
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    """Where the news is served."""
    with serving(News) as base:
        yield f"{base}/news"


def _run(url: str, script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"URL = {url!r}\n{script}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_central_modules_load_without_requests(url: str) -> None:
    out = _run(
        url,
        "import sys\n"
        "import agent.audio_cache, agent.central_sync, agent.central_time, agent.link\n"
        "import agent.manifest_origin\n"
        "loaded = ('requests', 'urllib3', 'charset_normalizer', 'idna')\n"
        "print(sorted(m for m in loaded if m in sys.modules))\n",
    )
    assert out.strip() == "[]"


def test_the_first_session_loads_requests_without_charset_normalizer_and_decodes_utf8(url: str) -> None:
    out = _run(
        url,
        "import sys\n"
        "from agent.central_http import new_session, request_errors\n"
        "response = new_session().get(URL, timeout=10)\n"
        "print(response.text)\n"
        "print('requests' in sys.modules, 'charset_normalizer' in sys.modules, request_errors().__name__)\n"
        "import charset_normalizer  # hidden from requests only while it loaded: others still find it\n"
        "print(charset_normalizer.__name__)\n",
    )
    assert out.splitlines() == [
        "Loa phường Tân Định: bản tin 6 giờ",
        "True False RequestException",
        "charset_normalizer",
    ]


def test_a_process_that_loaded_charset_normalizer_first_keeps_it_for_requests(url: str) -> None:
    out = _run(
        url,
        "import charset_normalizer\n"
        "from agent.central_http import new_session\n"
        "import requests.compat\n"
        "print(requests.compat.chardet is charset_normalizer)\n"
        "print(new_session().get(URL, timeout=10).apparent_encoding)\n",
    )
    assert out.splitlines() == ["True", "utf-8"]


def test_an_unreachable_server_raises_what_request_errors_names() -> None:
    with serving(News) as base:
        pass  # shut down and closed: nothing answers there now
    out = _run(
        f"{base}/news",
        "from agent.central_http import new_session, request_errors\n"
        "try:\n"
        "    new_session().get(URL, timeout=5)\n"
        "except request_errors() as error:\n"
        "    print(type(error).__name__)\n",
    )
    assert out.strip() == "ConnectionError"
