"""Sign-in throttling: a few wrong passwords, then a wait before the next try that doubles with
each further wrong one (2 s, 4 s, 8 s, ... at most 15 min).

Counted twice, per user name and per client address, so guessing one account's password from
many addresses and guessing many accounts from one address both slow down.  An address gets more
free tries than a name, since a commune's operators may share one address behind its router.
While a name or address must wait, a sign-in is refused at once with HTTP 429, ``Retry-After`` and
a plain reason, before any password is checked, so a guess costs nothing to refuse and tells the
guesser nothing.  A right password clears its name's count (not its address's: signing in to
one's own account must not buy more guesses at another).

Counts live in the server's memory (one server process is the design, central.manifests): a
restart forgets them, which costs a guesser a restart of the server it cannot cause.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from foundation.errors import LoaError

FREE_PER_USER = 5
FREE_PER_ADDRESS = 20
FIRST_WAIT = 2.0  # seconds after the last free failure; doubles with each further one
LONGEST_WAIT = 900.0
FORGET_AFTER = 3600.0  # a count with no failure for this long starts again from nothing
MAX_TRACKED = 100_000  # names and addresses held at once; the oldest are forgotten past this


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0  # no sign-in before this moment (the monotonic clock)


class Throttled(LoaError, PermissionError):
    """A sign-in refused for now (HTTP 429): who must wait (``user`` or ``address``), how long."""

    def __init__(self, kind: str, name: str, wait_s: int) -> None:
        self.kind, self.name, self.wait_s = kind, name, wait_s
        who = f"user {name}" if kind == "user" else f"address {name}"
        super().__init__(f"too many wrong passwords for {who}: try again in {wait_s} s")


class LoginThrottle:
    """Failed sign-ins per user name and per client address; thread-safe (the API's worker threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}
        self._lock = threading.Lock()

    def check(self, user: str, address: str) -> None:
        """Throttled if a sign-in of ``user`` from ``address`` must wait."""
        now = self.clock()
        with self._lock:
            for key in _keys(user, address):
                count = self._counts.get(key)
                if count is not None and count.until > now:
                    raise Throttled(key[0], key[1], math.ceil(count.until - now))

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in _keys(user, address):
                count = self._counts.pop(key, None) or _Count()
                if now - count.last > FORGET_AFTER:
                    count = _Count()
                count.failures += 1
                count.last = now
                beyond = count.failures - (FREE_PER_USER if key[0] == "user" else FREE_PER_ADDRESS)
                if beyond >= 0:  # the last free failure already makes the next try wait
                    count.until = now + min(LONGEST_WAIT, FIRST_WAIT * 2 ** min(beyond, 20))
                self._counts[key] = count  # re-inserted last: the dict stays in order of last failure
            while len(self._counts) > MAX_TRACKED:
                del self._counts[next(iter(self._counts))]

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._counts.pop(("user", user.casefold()), None)


def _keys(user: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("user", user.casefold()), ("address", address)
