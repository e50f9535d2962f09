"""A real HTTP server on loopback for the tests and benches: an ``http.server`` handler served on a
free port by a daemon thread, shut down and closed on exit.

Standard library only: ``tests/test_central_http.py`` counts what a fresh interpreter has loaded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serving(handler: Callable[[Any, Any, Any], BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` (a request handler class, or a partial of one) on 127.0.0.1, one thread a request;
    the server's base URL (``http://127.0.0.1:PORT``), which refuses connections after the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="http-stand-in", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
