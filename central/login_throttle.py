"""Sign-in throttling: a few wrong passwords, then a wait before the next try that doubles with
each further wrong one (2 s, 4 s, 8 s, ... at most 15 min).

Counted twice, per user name and per client address, so guessing one account's password from
many addresses and guessing many accounts from one address both slow down.  An address gets more
free tries than a name, since a commune's operators may share one address behind its router.
While a name or address must wait, a sign-in is refused at once with HTTP 429, ``Retry-After`` and
a plain reason, before any password is checked, so a guess costs nothing to refuse and tells the
guesser nothing.  A right password clears its name's count (not its address's: signing in to
one's own account must not buy more guesses at another).

Counts live in the database (``login_failures``: a count and the time of the last failure per name
and per address; the wait follows from the two), so a restart forgets nothing and every
``loa-central serve`` process on one database counts together.  A failure is counted by one
``INSERT ... ON CONFLICT DO UPDATE`` (``failures + 1``, or 1 after an hour without failures), which
both databases apply atomically: two processes counting the same name lose neither failure.  Rows
with no failure for ``FORGET_AFTER`` are deleted whenever a failure is counted, so the table holds
at most the names and addresses that failed in the last hour.  Times are the server's wall clock
(``Central.clock``), the one clock every process shares.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, case, delete, or_, select
from sqlalchemy.exc import DBAPIError

from central import db
from foundation.errors import LoaError

logger = logging.getLogger(__name__)

FREE_PER_USER = 5
FREE_PER_ADDRESS = 20
FIRST_WAIT = 2.0  # seconds after the last free failure; doubles with each further one
LONGEST_WAIT = 900.0
FORGET_AFTER = 3600.0  # a count with no failure for this long starts again from nothing
KEY_CHARS = 128  # a name or address is kept to this many characters (the column's width)

_failures = db.login_failures


class Throttled(LoaError, PermissionError):
    """A sign-in refused for now (HTTP 429): who must wait (``user`` or ``address``), how long."""

    def __init__(self, kind: str, name: str, wait_s: int) -> None:
        self.kind, self.name, self.wait_s = kind, name, wait_s
        who = f"user {name}" if kind == "user" else f"address {name}"
        super().__init__(f"too many wrong passwords for {who}: try again in {wait_s} s")


def check(engine: Engine, user: str, address: str, now: datetime) -> None:
    """Throttled if a sign-in of ``user`` from ``address`` must wait at ``now``."""
    keys = _keys(user, address)
    matches = [and_(_failures.c.kind == kind, _failures.c.name == name) for kind, name in keys]
    query = select(_failures.c.kind, _failures.c.name, _failures.c.failures, _failures.c.last_at)
    with engine.connect() as conn:
        rows = {(row.kind, row.name): row for row in conn.execute(query.where(or_(*matches)))}
    for key in keys:  # the name first: its reason is the one a person can act on
        row = rows.get(key)
        wait = None if row is None else _wait(key[0], row.failures)
        if row is not None and wait is not None:
            left = (row.last_at + timedelta(seconds=wait) - now).total_seconds()
            if left > 0:
                raise Throttled(key[0], key[1], math.ceil(left))


def failed(engine: Engine, user: str, address: str, now: datetime) -> None:
    """One more wrong password for ``user`` and for ``address``; then the stale counts deleted."""
    forget_before = now - timedelta(seconds=FORGET_AFTER)
    statement = db.dialect_insert(engine, _failures)
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "name"],
        set_={
            "failures": case((_failures.c.last_at < forget_before, 1), else_=_failures.c.failures + 1),
            "last_at": statement.excluded.last_at,
        },
    )
    with engine.begin() as conn:  # the name's row, then the address's: every process locks in this order
        for kind, name in _keys(user, address):
            conn.execute(statement, {"kind": kind, "name": name, "failures": 1, "last_at": now})
    _prune(engine, forget_before)


def succeeded(engine: Engine, user: str) -> None:
    """A right password: the name's count is cleared (the address's stays)."""
    kind, name = _keys(user, "")[0]
    with engine.begin() as conn:
        conn.execute(delete(_failures).where(_failures.c.kind == kind, _failures.c.name == name))


def _prune(engine: Engine, forget_before: datetime) -> None:
    """Counts with no failure since ``forget_before`` deleted; a failure here (two processes pruning
    at once, one chosen as a deadlock's victim) is left to the next failure's pruning."""
    try:
        with engine.begin() as conn:
            conn.execute(delete(_failures).where(_failures.c.last_at < forget_before))
    except DBAPIError as error:
        logger.info("sign-in counts: stale rows left for the next pruning (%s)", type(error.orig).__name__)


def _wait(kind: str, failures: int) -> float | None:
    """Seconds a sign-in must wait after the last of ``failures``; None while free tries are left."""
    beyond = failures - (FREE_PER_USER if kind == "user" else FREE_PER_ADDRESS)
    if beyond < 0:  # the last free failure already makes the next try wait
        return None
    return min(LONGEST_WAIT, FIRST_WAIT * 2 ** min(beyond, 20))


def _keys(user: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("user", user.casefold()[:KEY_CHARS]), ("address", address[:KEY_CHARS])
