"""Supervises a serial tuner module: tunes it, polls RSSI/SNR, decides carrier presence.

The module's analog output goes to the amplifier through the agent's audio-source relay; this
class only says whether the station is present (events ``fm.carrier_present`` / ``fm.carrier_lost``)
and keeps the module muted while it is not, so that noise cannot pass even if the relay is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fm_receiver.iq_source import EventSink, FmEvent
from fm_receiver.quality import CarrierDetector
from fm_receiver.serial_tuner import SerialTuner
from fm_receiver.source_health import CLOSED, OK, OPENING, SourceHealth, health_of
from foundation.errors import HardwareError

__all__ = ["TunerReceiver"]

logger = logging.getLogger(__name__)


class TunerReceiver:
    """Polls ``tuner`` every ``poll_s`` on its own thread; reopens it with backoff on failure."""

    def __init__(
        self,
        tuner: SerialTuner,
        frequency_hz: float,
        detector: CarrierDetector,
        on_event: EventSink,
        *,
        deemphasis_us: int = 50,
        poll_s: float = 0.5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.tuner, self.frequency_hz, self.detector = tuner, frequency_hz, detector
        self._on_event = on_event
        self.deemphasis_us = deemphasis_us
        self.poll_s = poll_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rssi: int | None = None
        self._snr: int | None = None
        self._health = OPENING

    def present(self) -> bool:
        return self.detector.present

    def source_health(self) -> SourceHealth:
        """Whether the module answers; after a failure, why (kept until it answers again)."""
        return self._health

    def status(self) -> dict[str, Any]:
        health = self._health
        return {
            "carrier": self.detector.present,
            "rssi_dbuv": self._rssi,
            "snr_db": self._snr,
            "frequency_hz": self.frequency_hz,
            "source": health.state,
            "source_error": health.error,
        }

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fm-tuner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stop.is_set():
            try:
                self._open()
                delay = self.backoff_initial_s
                self._poll_loop()
            except HardwareError as exc:
                logger.warning("FM tuner failed: %s (retry in %.1f s)", exc, delay)
                self._health = health_of(exc)
                self._lose_carrier("tuner error")
                self._emit("fm.source_error", {"source": "serial", "error": str(exc), "retry_s": delay})
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
            finally:
                self.tuner.close()
        self._health = CLOSED

    def _open(self) -> None:
        self.tuner.open()
        self.tuner.set_mute(True)
        self.tuner.set_deemphasis(self.deemphasis_us)
        self.tuner.tune(self.frequency_hz)
        self._health = OK
        logger.info("FM tuner tuned to %.2f MHz", self.frequency_hz / 1e6)

    def _poll_loop(self) -> None:
        previous = time.monotonic()
        while not self._stop.wait(self.poll_s):
            self._rssi, self._snr = self.tuner.rssi(), self.tuner.snr()
            now = time.monotonic()
            change = self.detector.update(float(self._rssi), float(self._snr), now - previous)
            previous = now
            if change is not None:
                self.tuner.set_mute(not change.present)
                self._report(change.present, "quality")

    def _lose_carrier(self, reason: str) -> None:
        was_present = self.detector.present
        self.detector.reset()
        if was_present:
            self._report(False, reason)

    def _report(self, present: bool, reason: str) -> None:
        detail = {
            "frequency_hz": self.frequency_hz,
            "rssi_dbuv": self._rssi,
            "snr_db": self._snr,
            "reason": reason,
        }
        logger.info("FM tuner carrier %s (%s)", "present" if present else "lost", reason)
        self._emit("fm.carrier_present" if present else "fm.carrier_lost", detail)

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        try:
            self._on_event(FmEvent(kind, detail))
        except Exception:  # a faulty sink must not kill the poller
            logger.exception("FM event sink failed on %s", kind)
