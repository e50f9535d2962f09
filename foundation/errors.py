"""The project's exception hierarchy.

Every error Loa raises on purpose derives from :class:`LoaError`, and also from the builtin it
resembles, so callers can catch either.  ``exit_code`` maps an error to the process exit status, and
:func:`report` is the one place that turns an error into what a command prints and returns
(``loa-agent``, ``loa`` and ``loa fm``).  A leaf module: it imports nothing of ours.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO


class LoaError(Exception):
    """Base class of every error Loa raises on purpose."""

    exit_code = 1


class ConfigError(LoaError, ValueError):
    """The configuration (or a file it names) is invalid; ``problems`` lists every finding."""

    exit_code = 2

    def __init__(self, problems: Iterable[object]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ScheduleError(LoaError, ValueError):
    """A schedule is invalid; ``problems`` lists every finding."""

    exit_code = 2

    def __init__(self, problems: Iterable[object]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlayerError(LoaError, RuntimeError):
    """The audio player cannot start or has failed."""

    exit_code = 3


class HardwareError(LoaError, OSError):
    """A hardware driver (GPIO, tuner, dongle) cannot be opened or has failed."""

    exit_code = 4


class StoreError(LoaError, OSError):
    """The local store cannot be opened or written."""

    exit_code = 5


class NotRunningError(LoaError, ConnectionError):
    """Nobody listens on the daemon's control socket: the agent is not running."""

    exit_code = 6


class NoAnswerError(LoaError, TimeoutError):
    """The agent holds its control socket but did not answer in time: busy or stuck, not stopped."""

    exit_code = 6


class NoPermissionError(LoaError, PermissionError):
    """The user may not use the agent's socket or store (not root, not in its group)."""

    exit_code = 8


class UsageError(LoaError, ValueError):
    """A command line that cannot be carried out as written (a wrong argument, a missing file)."""

    exit_code = 2


def report(prog: str, error: LoaError, stream: TextIO | None = None) -> int:
    """Print ``error`` as a command's plain words (every problem on its own line); return its exit code."""
    out = stream if stream is not None else sys.stderr
    problems = getattr(error, "problems", None) or [error]
    if len(problems) > 1:
        print(f"{prog}: {len(problems)} problems:", file=out)
    for problem in problems:
        print(f"{prog}: {problem}", file=out)
    return error.exit_code


class AlreadyRunningError(LoaError, RuntimeError):
    """Another agent already runs with the same storage directory."""

    exit_code = 7
