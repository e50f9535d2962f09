"""The one door to requests, the agent's HTTP client for the central server (manifest, audio, time).

requests is loaded on first use, not at start: with urllib3, idna and http.cookiejar it is about
2.5 MB of the daemon's RSS, and a box linked by MQTT alone (no ``central.api_url``) whose audio is
all cached never fetches anything over HTTP.  When it loads, charset_normalizer (about 2 MB more)
is hidden from it, as agent/store.py hides numpy from sqlite-utils: requests uses it only to guess
the encoding of a text body whose server named none (``Response.apparent_encoding``), and without
it falls back to UTF-8.  The agent never asks for ``.text``: a manifest and a time answer are read
as ASCII bytes, audio as bytes, and JSON is UTF-8 (RFC 8259) anyway.  A process that has imported
charset_normalizer before keeps it for requests too.
"""

from __future__ import annotations

import sys
import threading
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

_HIDDEN = "charset_normalizer"
_loading = threading.Lock()  # two threads' first requests must not both hide and restore


def _load() -> None:
    if "requests" in sys.modules:
        return
    with _loading:
        if "requests" in sys.modules:
            return
        hide = _HIDDEN not in sys.modules and "chardet" not in sys.modules
        if hide:
            sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # import fails: requests goes without
        try:
            with warnings.catch_warnings():
                # requests' RequestsDependencyWarning for a missing encoding guesser: chosen here
                warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")
                import requests  # noqa: F401  # the first import, with charset_normalizer hidden
        finally:
            if hide and sys.modules.get(_HIDDEN, ...) is None:
                del sys.modules[_HIDDEN]


def new_session() -> requests.Session:
    """A requests Session (loading requests on the first call)."""
    _load()
    import requests

    return requests.Session()


def request_errors() -> type[Exception]:
    """requests' base exception, for an ``except`` clause (loading requests if it is not yet)."""
    _load()
    import requests

    return requests.RequestException
