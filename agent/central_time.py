"""Clock trust from the central server's signed time, for boxes whose network blocks NTP.

On its own thread (``central-time``) the box asks ``GET <api_url>/v1/time?device=<id>&nonce=<n>``
with a fresh nonce, measures the round trip on the monotonic clock, and checks the answer with
:mod:`protocol.time_sync`: the signature (``central.signing_public_key_files``, as for commands),
the audience, the nonce, then the round trip (``central.time_max_round_trip``) and the offset
(``central.time_tolerance``).  :class:`agent.clock_trust.ClockTrust` asks :meth:`CentralTime.good`
on the main loop, and records the notes this thread leaves (:meth:`CentralTime.drain_notes`) as
events there, since only the main thread writes the store.

- A good answer trusts the clock (source ``central``) for the rest of the run, like an NTP sync
  seen earlier in the boot: a box whose link drops keeps playing.  It is checked again every
  10 minutes; a later good answer that finds the clock off by more than the tolerance takes the
  trust away at once, and so does a step of the clock (wall and monotonic clocks disagree).
- A refused answer (bad signature, stale nonce, foreign audience, malformed) never trusts the
  clock, and is recorded as a ``clock.central_refused`` event (a security event); an unreachable
  server or a slow answer as ``clock.central_unusable``, once per reason until it changes.
- A clock off by more than the tolerance: with ``central.time_set_clock`` (default) and NTP not
  vouching for the clock, the clock is set from a good answer (``clock_settime``, root
  only; a ``clock.set`` event), and the next answer, asked at once, must confirm it before the
  clock is trusted.  Without the right to set it, the box stays untrusted and reports the offset.
- While NTP vouches for the clock (``ntp_synced``: the kernel reports it synchronized, or a sync
  was seen earlier this boot, agent/clock_trust.py), nothing is asked and nothing is set: NTP is
  the better source, and a clock it set is never stepped by this module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.central_http import new_session, request_errors
from agent.events import EventKind
from protocol.time_sync import (
    CONTENT_TYPE,
    MAX_ANSWER_CHARS,
    TimeCheck,
    TimeReason,
    TimeRefused,
    judge_answer,
    new_nonce,
    time_url,
    verify_time_answer,
)

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

RECHECK_UNTRUSTED = 30.0  # seconds between questions while the clock is not trusted
RECHECK_TRUSTED = 600.0  # and once it is
STEP_DETECTED = timedelta(seconds=1)  # wall and monotonic clocks parting by more: the clock was set
SECURITY_REASONS = frozenset(TimeReason) - {
    TimeReason.UNREACHABLE,
    TimeReason.TOO_SLOW,
    TimeReason.OFFSET_TOO_LARGE,
}

Fetch = Callable[[str, float], str]  # (url, timeout in seconds) -> the answer's body


def fetch_answer(session: requests.Session, url: str, timeout: float) -> str:
    """The body of a ``200`` answer, at most MAX_ANSWER_CHARS, within ``timeout`` in all (requests'
    own timeout is per read: a server trickling bytes would hold the thread); a failure raises
    (RequestException, OSError, or TimeRefused for an answer too long)."""
    import requests  # loaded by agent.central_http, which made the session

    deadline = time.monotonic() + timeout
    with session.get(url, timeout=timeout, stream=True, headers={"Accept": CONTENT_TYPE}) as response:
        if response.status_code != 200:
            raise requests.HTTPError(f"HTTP {response.status_code} from {url.split('?')[0]}")
        body = b""
        for chunk in response.iter_content(1):  # byte by byte: a read returns as each byte comes
            body += chunk
            if time.monotonic() > deadline:
                raise requests.Timeout(f"no whole answer within {timeout:g} s")
            if len(body) > MAX_ANSWER_CHARS:
                raise TimeRefused(TimeReason.MALFORMED, f"an answer longer than {MAX_ANSWER_CHARS} bytes")
        return body.decode("ascii", errors="replace").strip()


def set_system_clock(moment: datetime) -> None:
    """Step the system clock (needs CAP_SYS_TIME: PermissionError otherwise)."""
    time.clock_settime(time.CLOCK_REALTIME, moment.timestamp())


@dataclass(frozen=True)
class Verdict:
    check: TimeCheck
    wall: datetime  # the box's clock when the answer came
    mono: float  # and its monotonic clock


class CentralTime:
    """Asks the central server for its signed time; thread-safe reads for the main loop."""

    def __init__(
        self,
        api_url: str,
        device_id: str,
        keys: list[Ed25519PublicKey],
        *,
        max_round_trip: timedelta,
        tolerance: timedelta,
        set_clock: bool,
        ntp_synced: Callable[[], bool],
        fetch: Fetch | None = None,
        step: Callable[[datetime], None] = set_system_clock,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_url = api_url
        self.device_id = device_id
        self.keys = keys
        self.max_round_trip = max_round_trip
        self.tolerance = tolerance
        self.set_clock = set_clock
        self._ntp_synced = ntp_synced
        self._session = new_session()  # kept alive: a cold TLS connection makes a slow answer
        self._fetch: Fetch = fetch or (lambda url, timeout: fetch_answer(self._session, url, timeout))
        self._step = step
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._problem: str | None = None  # the last answer's problem, for the untrusted reason
        self._last_reason: str | None = None  # notes are left once per reason until it changes
        self._notes: list[tuple[EventKind, str]] = []
        self._stepped_at: float | None = None  # the clock is set at most once per RECHECK_UNTRUSTED
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central-time", daemon=True)

    # -- the main loop's side --------------------------------------------------------------------

    def good(self) -> Verdict | None:
        """The good answer that trusts the clock now, or None (also after a step of the clock)."""
        with self._lock:
            verdict = self._verdict
        if verdict is None:
            return None
        drift = (self._wall() - verdict.wall) - timedelta(seconds=self._mono() - verdict.mono)
        return verdict if abs(drift) <= STEP_DETECTED else None

    def problem(self) -> str | None:
        with self._lock:
            return self._problem

    def drain_notes(self) -> list[tuple[EventKind, str]]:
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    # -- the thread --------------------------------------------------------------------------------

    def start(self) -> None:
        logger.info("central time: asking %s when NTP is not synchronized", self.api_url)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        again = True
        while again or not self._stop.wait(RECHECK_TRUSTED if self.good() else RECHECK_UNTRUSTED):
            again = False
            if self._ntp_synced():
                continue
            try:
                again = self.ask_once() == "stepped"
            except Exception:  # a bug here must not end the thread: the next question may succeed
                logger.exception("central time: asking failed")

    def ask_once(self) -> str:
        """One question and its answer: ``trusted``, ``stepped`` (ask again to confirm) or the
        reason code of what was wrong.  A slow answer is asked once more at once: the first one on
        a cold connection (DNS, TCP, TLS) is often slow."""
        result = self._exchange()
        if isinstance(result, TimeRefused) and result.reason is TimeReason.TOO_SLOW:
            result = self._exchange()
        if isinstance(result, Verdict):
            self._trusted(result)
            return "trusted"
        if result.check is not None and self._may_step():
            return self._set_clock(result.check)
        return self._refused(result)

    def _exchange(self) -> Verdict | TimeRefused:
        nonce = new_nonce()
        timeout = max(1.0, 2 * self.max_round_trip.total_seconds())
        sent = self._mono()
        try:
            body = self._fetch(time_url(self.api_url, self.device_id, nonce), timeout)
        except TimeRefused as refused:
            return refused
        except (request_errors(), OSError, ValueError) as exc:
            return TimeRefused(TimeReason.UNREACHABLE, f"{type(exc).__name__}: {exc}")
        received, local = self._mono(), self._wall()
        try:
            answer = verify_time_answer(body, keys=self.keys, device_id=self.device_id, nonce=nonce)
            check = judge_answer(
                answer, round_trip=timedelta(seconds=received - sent), local_at_receipt=local,
                max_round_trip=self.max_round_trip, tolerance=self.tolerance,
            )  # fmt: skip
        except TimeRefused as refused:
            return refused
        return Verdict(check, local, received)

    def _trusted(self, verdict: Verdict) -> None:
        check = verdict.check
        with self._lock:
            self._verdict, self._problem, self._last_reason = verdict, None, None
        logger.info(
            "central time: clock within %+.3f s (± %.3f s) of the central server's",
            check.offset.total_seconds(), check.uncertainty.total_seconds(),
        )  # fmt: skip

    def _refused(self, refused: TimeRefused) -> str:
        """Log and note a refusal: an event once per reason until the reason changes or a good
        answer comes (a misconfigured server must not fill the outbox with one event a minute)."""
        reason, words = refused.reason, "; ".join(map(str, refused.problems))
        security = reason in SECURITY_REASONS
        kind = EventKind.CLOCK_CENTRAL_REFUSED if security else EventKind.CLOCK_CENTRAL_UNUSABLE
        with self._lock:
            if reason is TimeReason.OFFSET_TOO_LARGE:  # the clock is known wrong: no trust left
                self._verdict = None
            self._problem = f"{reason.value}: {words}"
            new = self._last_reason != reason.value
            self._last_reason = reason.value
            if new:
                self._notes.append((kind, self._problem))
        (logger.warning if new else logger.info)("central time answer not used (%s): %s", reason.value, words)
        return reason.value

    def _may_step(self) -> bool:
        """Never while NTP keeps the clock; never twice in a row (an answer that does not confirm a
        step leaves the clock untrusted until the next question)."""
        recent = self._stepped_at is not None and self._mono() - self._stepped_at < RECHECK_UNTRUSTED
        return self.set_clock and not recent and not self._ntp_synced()

    def _set_clock(self, check: TimeCheck) -> str:
        offset = check.offset.total_seconds()
        try:
            self._step(self._wall() + check.offset)
        except OSError as exc:
            words = f"the clock is off by {offset:+.3f} s and cannot be set ({exc}): it stays untrusted"
            return self._refused(TimeRefused(TimeReason.OFFSET_TOO_LARGE, words))
        within = check.uncertainty.total_seconds()
        words = f"clock set by {offset:+.3f} s (± {within:.3f} s) from the central server's time"
        logger.warning("central time: %s", words)
        self._stepped_at = self._mono()
        with self._lock:
            self._verdict, self._problem = None, "the clock was just set: confirming"
            self._notes.append((EventKind.CLOCK_SET, words))
        return "stepped"

    def status(self) -> dict[str, Any]:
        verdict = self.good()
        if verdict is None:
            return {"trusted": False, "problem": self.problem()}
        check = verdict.check
        return {
            "trusted": True,
            "offset_ms": round(check.offset.total_seconds() * 1000),
            "round_trip_ms": round(check.round_trip.total_seconds() * 1000),
        }
