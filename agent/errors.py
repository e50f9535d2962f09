"""The project's exception hierarchy.

Every error Loa raises on purpose derives from :class:`LoaError`, and also from the builtin it
resembles, so callers can catch either.  ``exit_code`` maps an error to the process exit status in
one place (``agent.daemon`` and ``agent.cli``).
"""

from __future__ import annotations

from collections.abc import Iterable


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
    """The daemon's control socket does not answer."""

    exit_code = 6
