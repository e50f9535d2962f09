"""The 4G modem asked on its own thread: an AT exchange may take seconds (a dead modem its whole
timeout), which the main loop must never wait for.  The loop's health poll reads :meth:`latest`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from drivers.modem import Modem, ModemError, ModemReading

logger = logging.getLogger(__name__)

MODEM_EVERY = 15.0  # seconds between two questions to the modem


@dataclass(frozen=True)
class ModemState:
    reading: ModemReading | None  # the last good answer
    error: str | None  # the last question's failure; None once it answers again
    checked_at: datetime | None
    polls: int  # questions asked so far (tests wait on it)


class ModemProbe:
    """Asks the modem every ``interval`` on the ``modem-probe`` thread; :meth:`latest` is its answer."""

    def __init__(self, modem: Modem, interval: float = MODEM_EVERY) -> None:
        self.modem = modem
        self.interval = interval
        self._state = ModemState(None, None, None, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modem-probe", daemon=True)

    def start(self) -> None:
        logger.info("modem probe on %s started (every %g s)", self.modem.port, self.interval)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.modem.timeout_s * (self.modem.retries + 1) * 5 + 1)
        self.modem.close()
        logger.info("modem probe on %s stopped", self.modem.port)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def latest(self) -> ModemState:
        with self._lock:
            return self._state

    def _run(self) -> None:
        while True:
            self._ask()
            if self._stop.wait(self.interval):
                return

    def _ask(self) -> None:
        reading, error = self.latest().reading, None
        try:
            reading = self.modem.read()
        except ModemError as exc:
            error = str(exc)
        except Exception as exc:  # whatever the modem or the tty does, the probe goes on
            logger.exception("modem probe on %s", self.modem.port)
            error = f"modem on {self.modem.port}: {exc!r}"
        before = self.latest().error
        if error is not None and before is None:  # said once per change: the alarm follows if it lasts
            logger.warning("modem: %s", error)
        elif error is None and before is not None:
            logger.info("modem on %s answers again", self.modem.port)
        with self._lock:
            self._state = ModemState(reading, error, datetime.now(UTC), self._state.polls + 1)
