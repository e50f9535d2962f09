"""The FM reader: a supervised thread from an IqSource to live PcmStreams, gated by the carrier.

The agent asks for a stream (``open_stream()``) when it decides to relay and hands it to the
player.  Audio reaches it only while the carrier detector says the configured station is present;
a single block whose quality falls below the close threshold is muted at once (zeros keep the
player's clock running) while the state itself follows the detector's hold times.  When the carrier
is lost the stream is finished (the player gets what is buffered, then b""); a later relay needs a
new stream.  Every change is reported through ``on_event`` (called on the reader thread:
hand it over and return).  :meth:`FmReceiver.source_health` says whether the source delivers at
all: a dongle that cannot be opened is a fault, not "no carrier".
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from fm_receiver.dsp import FmDemodulator
from fm_receiver.iq_source import EventSink, FmEvent, IqSource, SourceFinished
from fm_receiver.pcm_stream import PcmStream, to_s16le
from fm_receiver.quality import CarrierDetector, ChannelMeasurement
from fm_receiver.source_health import SourceHealth, health_of

__all__ = ["FmReceiver"]

logger = logging.getLogger(__name__)


class FmReceiver:
    """Reads ``source``, demodulates, decides carrier presence and feeds the stream of :meth:`open_stream`."""

    def __init__(
        self,
        source: IqSource,
        demod: FmDemodulator,
        detector: CarrierDetector,
        on_event: EventSink,
        *,
        frequency_hz: float | None = None,
        max_buffer_s: float = 2.0,
        starve_s: float = 1.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.source, self.demod, self.detector = source, demod, detector
        self._on_event = on_event
        self.frequency_hz = frequency_hz
        self.max_buffer_s = max_buffer_s
        self._stream: PcmStream | None = None
        self._stream_lock = threading.Lock()
        self.starve_s = starve_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: ChannelMeasurement | None = None
        self._fault: SourceHealth | None = None  # why the source could not be opened or failed
        self.finished = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fm-receiver", daemon=True)
        self._thread.start()
        logger.info(
            "FM receiver started (%s S/s, offset %.0f Hz)", self.source.sample_rate, self.source.offset_hz
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._end_stream()
        logger.info("FM receiver stopped")

    def open_stream(self, *, timeout_s: float = 2.0) -> PcmStream:
        """A new live stream of the station's audio (ends any previous one).

        It carries audio while the carrier is present and ends when the carrier is lost, the
        receiver stops, or no audio came for ``timeout_s``.
        """
        stream = PcmStream(self.demod.audio_rate, max_buffer_s=self.max_buffer_s, timeout_s=timeout_s)
        with self._stream_lock:
            previous, self._stream = self._stream, stream
        if previous is not None:
            previous.close()
        return stream

    def source_health(self) -> SourceHealth:
        """The source's own word; between failed opens (the source is closed), why the last one failed."""
        health, fault = self.source.health, self._fault
        return fault if fault is not None and not health.fault else health

    def status(self) -> dict[str, Any]:
        last = self._last
        health = self.source_health()
        return {
            "carrier": self.detector.present,
            "rssi_dbfs": None if last is None else round(last.level_dbfs, 1),
            "snr_db": None if last is None else round(last.snr_db, 1),
            "frequency_hz": self.frequency_hz,
            "offset_hz": self.source.offset_hz,
            "source": health.state,
            "source_error": health.error,
            "streaming": self._stream is not None and not self._stream.closed,
        }

    def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stop.is_set():
            try:
                self.source.open()
                self._fault = None
                delay = self.backoff_initial_s
                self._pump()
            except SourceFinished:
                self._fault = None
                self._restart_demodulation("source finished")
                self._emit("fm.source_finished", {})
                self.finished.set()
                return
            except Exception as exc:  # supervised: any failure restarts the source after a backoff
                self._fault = health_of(exc)
                logger.warning("FM source failed: %s (restart in %.1f s)", exc, delay)
                self._restart_demodulation("source error")
                self._emit("fm.source_error", {"error": str(exc), "retry_s": delay})
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
            finally:
                self.source.close()

    def _pump(self) -> None:
        last_block = time.monotonic()
        while not self._stop.is_set():
            block = self.source.read(timeout=min(0.25, self.starve_s / 2))
            if block is None:
                if self.detector.present and time.monotonic() - last_block > self.starve_s:
                    self._restart_demodulation("no samples")
                continue
            last_block = time.monotonic()
            self._handle(block)

    def _handle(self, block: npt.NDArray[np.complex64]) -> None:
        audio = self.demod.process(block)
        measurement = self.demod.meter.take()
        if measurement is not None:
            self._last = measurement
            change = self.detector.update(measurement.level_dbfs, measurement.snr_db, measurement.duration_s)
            if change is not None:
                self._carrier_changed(change.present, measurement, "quality")
        stream = self._stream
        if self.detector.present and len(audio) and stream is not None:
            stream.write(to_s16le(audio if self.detector.clean else np.zeros_like(audio)))

    def _end_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.finish()

    def _carrier_changed(self, present: bool, measurement: ChannelMeasurement | None, reason: str) -> None:
        if not present:
            self._end_stream()
        detail: dict[str, Any] = {"frequency_hz": self.frequency_hz, "reason": reason}
        if measurement is not None:
            detail.update(level_dbfs=round(measurement.level_dbfs, 1), snr_db=round(measurement.snr_db, 1))
        logger.info("FM carrier %s (%s)", "present" if present else "lost", reason)
        self._emit("fm.carrier_present" if present else "fm.carrier_lost", detail)

    def _restart_demodulation(self, reason: str) -> None:
        """The sample stream broke: carrier lost if it was present, and demodulate afresh."""
        was_present = self.detector.present
        self.detector.reset()
        self.demod.reset()
        if was_present:
            self._carrier_changed(False, None, reason)

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        try:
            self._on_event(FmEvent(kind, detail))
        except Exception:  # a faulty sink must not kill the reader
            logger.exception("FM event sink failed on %s", kind)
