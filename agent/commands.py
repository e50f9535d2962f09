"""The one front door for requests to the agent.

Every request (today ``status``, ``reload``, ``play``, ``stop`` from the control socket; with the
central link ``play_now``, ``emergency``, ``set_volume``, ``relay_test``, ...) becomes a
:class:`Command` with an id and goes through :class:`CommandHandler`, which answers with an
:class:`Ack`: ``accepted`` (taken, not yet carried out), ``done`` (carried out: the audio plays,
the schedule is in force), ``rejected`` with the reason, or ``duplicate`` (an id seen before: no
effect).  Checks that need no agent state happen on the caller's thread; the rest is carried out
by the agent's main loop (:meth:`agent.runtime.Agent.execute`), which resolves the command's
:class:`Pending` answer.  Every outcome is logged and recorded as an event.

A ``stop``, from any origin, also cancels a ``play`` whose caller was still fetching its audio
when the stop came: the caller names the stops it had seen (:attr:`CommandHandler.stops`, read
when its command arrived) and the play is refused as cancelled if another has been submitted
since.  Both are decided under one lock, in the order their commands reach the main loop, so a
play is either cancelled or stopped by the stop that followed it, never played after it.  A play
already accepted and waiting behind what plays is cancelled by the main loop when it carries the
stop out (``Agent._command_stop``), and answered the same way: ``rejected``, ``cancelled`` in its
detail (the central link's reason code ``cancelled``).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.test_tone import (
    DEFAULT_FREQUENCY,
    DEFAULT_SECONDS,
    DIRECTORY,
    FREQUENCIES,
    MAX_SECONDS,
    ensure_tone,
)
from drivers.player import MAX_REPEAT, unreadable
from protocol.messages import AckResult as Result  # one set of answers, local and on the wire
from scheduler.items import Level

logger = logging.getLogger(__name__)

REMEMBERED_IDS = 1024  # ids kept to answer a repeated command as a duplicate
LEVELS = {level.name.lower(): level for level in Level}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Command:
    id: str
    name: str
    params: Mapping[str, Any]
    origin: str  # "local" (the control socket) or "central"


@dataclass(frozen=True)
class Ack:
    id: str
    result: Result
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "result": self.result.value,
            "reason": self.reason,
            "at": self.at,
            **self.detail,
        }


class Refused(Exception):
    """A command that cannot be carried out; the message is the reason, in plain words."""


class Pending:
    """The answer to one command, resolved from the main loop, awaited by the caller."""

    def __init__(self, command: Command) -> None:
        self.command = command
        self._ready = threading.Event()
        self._ack: Ack | None = None
        self.progress: Ack | None = None  # an "accepted" step while the final answer is awaited
        self._lock = threading.Lock()
        self._when_final: list[Callable[[Ack], None]] = []

    def resolve(self, result: Result, reason: str = "", **detail: Any) -> None:
        with self._lock:
            if self._ready.is_set():
                return
            ack = self._ack = Ack(self.command.id, result, reason, detail)
            self._ready.set()
            callbacks, self._when_final = self._when_final, []
        for callback in callbacks:
            _call(callback, ack)

    def when_final(self, callback: Callable[[Ack], None]) -> None:
        """Call ``callback`` with the final answer when it comes (at once if it is there).

        It runs on the thread that resolves (the main loop): it must only hand the answer on.
        """
        with self._lock:
            if not self._ready.is_set():
                self._when_final.append(callback)
                return
        assert self._ack is not None
        _call(callback, self._ack)

    def accept(self, reason: str = "", **detail: Any) -> None:
        self.progress = Ack(self.command.id, Result.ACCEPTED, reason, detail)

    @property
    def done(self) -> bool:
        return self._ready.is_set()

    def wait(self, timeout: float) -> Ack:
        """The final answer, or ``accepted`` if it is not there within ``timeout``."""
        if self._ready.wait(timeout) and self._ack is not None:
            return self._ack
        return self.progress or Ack(self.command.id, Result.ACCEPTED, "being carried out")


def _call(callback: Callable[[Ack], None], ack: Ack) -> None:
    try:
        callback(ack)
    except Exception:  # a bug in one listener must not stop the main loop that resolved
        logger.exception("a listener of command %s failed", ack.id)


@dataclass(frozen=True)
class Execute:
    """The main loop's event: carry out ``pending.command`` and resolve it."""

    pending: Pending


Validator = Callable[[Mapping[str, Any]], dict[str, Any]]


class CommandHandler:
    """Gives each request an id and an outcome; thread-safe."""

    def __init__(
        self,
        post: Callable[[object], None],
        *,
        zones: frozenset[str],
        status: Callable[[], dict[str, Any]],
        wait: float = 5.0,
        storage: Path | None = None,
    ) -> None:
        self._post = post
        self._status = status
        self._wait = wait
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, Ack] = OrderedDict()
        self._stops = 0  # stops submitted so far, from any origin
        self._last_stop = ""  # which one, in words
        self._validators: dict[str, Validator] = {
            "reload": _no_params,
            "stop": _no_params,
            "play": lambda params: _play_params(params, zones),
            "set_volume": _volume_params,
            "relay_test": lambda params: _relay_test_params(params, zones),
            "test_tone": lambda params: _test_tone_params(params, zones, storage),
        }

    @property
    def names(self) -> list[str]:
        return ["status", *self._validators]

    @property
    def stops(self) -> int:
        """How many ``stop`` commands have been submitted: a caller that fetches a play's audio
        reads it when the play arrives and passes it to :meth:`submit` as ``unless_stopped_since``."""
        with self._lock:
            return self._stops

    def submit(
        self,
        name: str,
        params: Mapping[str, Any],
        *,
        origin: str,
        command_id: str | None = None,
        on_final: Callable[[Ack], None] | None = None,
        wait: float | None = None,
        unless_stopped_since: int | None = None,
    ) -> Ack:
        """Check, hand to the main loop, and wait (bounded: ``wait`` seconds, else the handler's
        own) for the outcome; ``wait=0`` on the main loop's own thread, which must never wait.

        An ``accepted`` answer is not final: ``on_final`` (if given) is called with the final one
        when the main loop resolves it.  A ``play`` given ``unless_stopped_since`` (a count of
        :attr:`stops`) is refused as cancelled when a stop has been submitted since.
        """
        command = Command(command_id or f"{origin}-{uuid.uuid4().hex[:12]}", name, dict(params), origin)
        with self._lock:  # taken under the lock: a resend racing the first is a duplicate too
            seen = self._seen.get(command.id)
            if seen is None:
                self._seen[command.id] = Ack(command.id, Result.ACCEPTED, "being carried out")
        if seen is not None:
            return Ack(command.id, Result.DUPLICATE, f"already answered {seen.result.value}")
        ack = self._answer(command, on_final, self._wait if wait is None else wait, unless_stopped_since)
        self._remember(command, ack)
        return ack

    def _answer(
        self,
        command: Command,
        on_final: Callable[[Ack], None] | None,
        wait: float,
        unless_stopped_since: int | None,
    ) -> Ack:
        if command.name == "status":
            return Ack(command.id, Result.DONE, detail={"status": self._status()})
        validator = self._validators.get(command.name)
        if validator is None:
            known = ", ".join(self.names)
            return self._refused(command, f"unknown command {command.name!r} (known: {known})")
        try:
            params = validator(command.params)
        except Refused as exc:
            return self._refused(command, str(exc))
        pending = Pending(Command(command.id, command.name, params, command.origin))
        with self._lock:  # a stop and a play reach the main loop in the order this lock decides
            if unless_stopped_since is not None and self._stops != unless_stopped_since:
                reason = f"cancelled: {self._last_stop} came while its audio was being fetched"
                logger.warning("command %s %s from %s %s", command.id, command.name, command.origin, reason)
                return Ack(command.id, Result.REJECTED, reason, {"cancelled": True})
            if command.name == "stop":
                self._stops += 1
                self._last_stop = f"stop ({command.origin} command {command.id})"
            self._post(Execute(pending))
        ack = pending.wait(wait)
        if on_final is not None and ack.result is Result.ACCEPTED:
            pending.when_final(on_final)
        return ack

    def _refused(self, command: Command, reason: str) -> Ack:
        logger.warning("command %s %s from %s rejected: %s", command.id, command.name, command.origin, reason)
        return Ack(command.id, Result.REJECTED, reason)

    def _remember(self, command: Command, ack: Ack) -> None:
        with self._lock:
            self._seen[command.id] = ack
            while len(self._seen) > REMEMBERED_IDS:
                self._seen.popitem(last=False)


def _no_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _volume_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``volume`` (0-100): the volume of what plays next."""
    volume = params.get("volume")
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
        raise Refused("'volume' must be a whole number from 0 to 100")
    return {"volume": volume}


def _relay_test_params(params: Mapping[str, Any], zones: frozenset[str]) -> dict[str, Any]:
    """``zones`` (names; default all), ``seconds`` (1-300, default 10)."""
    seconds = _whole(params, "seconds", 10, 1, 300)
    return {"zones": _known_zones(params, zones) or sorted(zones), "seconds": seconds}


def _test_tone_params(
    params: Mapping[str, Any], zones: frozenset[str], storage: Path | None
) -> dict[str, Any]:
    """``zones`` (names; default all), ``seconds`` (1-60, default 5), ``frequency`` (Hz, default
    1000).  The tone's WAV is made here, on the caller's thread, so the main loop never waits on it."""
    seconds = _whole(params, "seconds", DEFAULT_SECONDS, 1, MAX_SECONDS)
    frequency = _whole(params, "frequency", DEFAULT_FREQUENCY, *FREQUENCIES)
    chosen = _known_zones(params, zones)
    if storage is None:
        raise Refused("this agent has no storage directory to keep a test tone in")
    try:
        path = ensure_tone(storage, frequency, seconds)
    except OSError as exc:
        raise Refused(f"cannot write the test tone in {storage / DIRECTORY}: {exc.strerror or exc}") from None
    return {"file": str(path), "zones": chosen, "seconds": seconds, "frequency": frequency}


def _whole(params: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"'{key}' must be a whole number from {low} to {high}")
    return value


def _known_zones(params: Mapping[str, Any], zones: frozenset[str]) -> list[str]:
    wanted = params.get("zones") or []
    if not isinstance(wanted, list) or not all(isinstance(zone, str) for zone in wanted):
        raise Refused("'zones' must be a list of zone names")
    unknown = sorted(set(wanted) - zones)
    if unknown:
        raise Refused(f"no amplifier for zone(s) {', '.join(unknown)} (zones: {', '.join(sorted(zones))})")
    return sorted(wanted)


def _play_params(params: Mapping[str, Any], zones: frozenset[str]) -> dict[str, Any]:
    """``file`` (absolute path), ``level`` (normal, priority, emergency), ``zones`` (names);
    optional ``volume`` (0-100: this play only; else the agent's volume), ``repeat`` (1-10 times
    back to back, default 1) and ``sha256`` (the file is that cached audio: the play log names it)."""
    file = params.get("file")
    if not isinstance(file, str) or not Path(file).is_absolute():
        raise Refused("'file' must be the absolute path of an audio file")
    problem = unreadable(Path(file))
    if problem:
        raise Refused(problem)  # it names the file
    level = params.get("level") or "normal"
    if level not in LEVELS:
        raise Refused(f"level {level!r} is not one of {', '.join(LEVELS)}")
    volume = None if params.get("volume") is None else _whole(params, "volume", 0, 0, 100)
    sha256 = params.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise Refused("'sha256' must be 64 lowercase hex digits")
    return {
        "file": file, "level": level, "zones": _known_zones(params, zones), "volume": volume,
        "repeat": _whole(params, "repeat", 1, 1, MAX_REPEAT), "sha256": sha256,
    }  # fmt: skip
