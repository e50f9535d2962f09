"""RTL-SDR dongle as an IQ source; the only module that imports pyrtlsdr.

The dongle is tuned ``center_offset_hz`` below the station so that its DC spike and I/Q imbalance
image stay out of the channel.  Dongles stall (rtl_fm keeps waiting forever): a reader thread pulls
raw cu8 blocks and a watchdog thread closes and reopens the device when no block has arrived for
``watchdog_s`` seconds or the reader failed, retrying with exponential backoff and reporting each
step as an event.  The device class is injected (``device_factory``) so tests drive a fake dongle.

:attr:`RtlSdrSource.health` says whether the dongle delivers (``fm_receiver.source_health``): a
stall that a reopen cures is only ``opening`` for a moment; a dongle that is gone, busy or refuses
to open is ``missing`` or ``failed`` with the reason; one that opens but sends nothing, or whose
open never returns, is ``stalled``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fm_receiver.dsp import iq_from_bytes
from fm_receiver.iq_source import EventSink, FmEvent, ignore_event
from fm_receiver.source_health import CLOSED, OK, OPENING, SourceFault, SourceHealth, health_of
from foundation.errors import HardwareError

__all__ = [
    "DeviceFactory",
    "RtlSdrDevice",
    "RtlSdrSource",
    "configure_device",
    "missing_dongle",
    "open_fault",
    "open_rtlsdr_device",
]

logger = logging.getLogger(__name__)


class RtlSdrDevice(Protocol):
    """The part of ``rtlsdr.RtlSdr`` this package uses (a fake implements the same)."""

    sample_rate: float
    center_freq: float
    gain: float | str

    def read_bytes(self, num_bytes: int) -> bytes | bytearray: ...

    def close(self) -> None: ...


DeviceFactory = Callable[[], RtlSdrDevice]


# libusb error codes that librtlsdr's rtlsdr_open passes on (pyrtlsdr's LibUSBError.errno)
_LIBUSB_ACCESS, _LIBUSB_NO_DEVICE, _LIBUSB_BUSY = -3, -4, -6


def _dongle(device_index: int) -> str:
    return f"RTL-SDR dongle (device {device_index})"


def missing_dongle(device_index: int, plugged_in: int = 0) -> SourceFault:
    """The fault for "no dongle at ``device_index``", as the crew reads it."""
    where = f"device {device_index}" + (f"; {plugged_in} plugged in" if plugged_in else "")
    return SourceFault(f"no RTL-SDR dongle found ({where}) - check the USB cable", "missing")


def open_fault(exc: BaseException, device_index: int) -> SourceFault:
    """What a failed ``rtlsdr_open`` means, from the libusb code pyrtlsdr puts in ``errno``."""
    code = getattr(exc, "errno", None)
    if code == _LIBUSB_NO_DEVICE:
        return missing_dongle(device_index)
    if code == _LIBUSB_BUSY:
        return SourceFault(
            f"{_dongle(device_index)} is busy - another program (rtl_fm, rtl_tcp) or the "
            "dvb_usb_rtl28xxu kernel driver holds it"
        )
    if code == _LIBUSB_ACCESS:
        return SourceFault(f"{_dongle(device_index)}: permission denied - install the rtl-sdr udev rules")
    return SourceFault(f"{_dongle(device_index)} cannot be opened: {exc}")


def open_rtlsdr_device(device_index: int = 0) -> RtlSdrDevice:
    """Open a real dongle through pyrtlsdr; any failure becomes a SourceFault saying why."""
    try:
        from rtlsdr import RtlSdr
        from rtlsdr.librtlsdr import librtlsdr
    except Exception as exc:  # pyrtlsdr raises AttributeError/OSError when librtlsdr does not match
        raise SourceFault(f"RTL-SDR: pyrtlsdr cannot load librtlsdr: {exc}") from exc
    # librtlsdr reports "no such dongle" as a generic I/O error: count the dongles first.
    plugged_in = int(librtlsdr.rtlsdr_get_device_count())
    if device_index >= plugged_in:
        raise missing_dongle(device_index, plugged_in)
    try:
        device: RtlSdrDevice = RtlSdr(device_index=device_index)
    except Exception as exc:
        raise open_fault(exc, device_index) from exc
    return device


def configure_device(
    device: RtlSdrDevice, *, sample_rate: int, center_hz: float, gain: float | str, ppm: int = 0
) -> None:
    """Set rate, frequency, gain and correction; failures become a SourceFault."""
    try:
        device.sample_rate = sample_rate
        device.center_freq = center_hz
        device.gain = gain
        if ppm:  # librtlsdr rejects setting the correction it already has (0 at open)
            device.freq_correction = ppm  # type: ignore[attr-defined]
    except Exception as exc:
        raise SourceFault(
            f"RTL-SDR: cannot tune to {center_hz / 1e6:.3f} MHz at {sample_rate} S/s: {exc}"
        ) from exc


class RtlSdrSource:
    """IqSource for a station received with an RTL-SDR dongle, supervised by a watchdog."""

    def __init__(
        self,
        station_hz: float,
        *,
        sample_rate: int = 1_024_000,
        center_offset_hz: float = 250_000.0,
        gain: float | str = "auto",
        ppm: int = 0,
        device_index: int = 0,
        block_samples: int = 65_536,
        device_factory: DeviceFactory | None = None,
        on_event: EventSink = ignore_event,
        watchdog_s: float = 2.0,
        open_timeout_s: float = 10.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.station_hz = float(station_hz)
        self.center_hz = self.station_hz - center_offset_hz
        self._sample_rate = int(sample_rate)
        self._offset_hz = float(center_offset_hz)
        self.gain, self.ppm = gain, ppm
        self.device_index = device_index
        self.block_samples = block_samples
        self._factory = device_factory or (lambda: open_rtlsdr_device(device_index))
        self._on_event = on_event
        self.watchdog_s = watchdog_s
        self.open_timeout_s = open_timeout_s  # an open still running after this is a stalled dongle
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self._blocks: queue.Queue[tuple[int, bytes]] = queue.Queue(maxsize=32)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._device: RtlSdrDevice | None = None
        self._generation = 0
        self._last_block = 0.0
        self._reader_failed = False
        self._health = OPENING
        self._opening_since: float | None = None  # monotonic start of an open still under way
        self._watchdog: threading.Thread | None = None
        self.reopen_count = 0

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def offset_hz(self) -> float:
        return self._offset_hz

    @property
    def health(self) -> SourceHealth:
        since = self._opening_since
        if since is not None and time.monotonic() - since >= self.open_timeout_s:
            return SourceHealth(
                "stalled",
                f"{_dongle(self.device_index)} does not answer: opening it has not finished in "
                f"{self.open_timeout_s:g} s - unplug it and plug it back in",
            )
        return self._health

    def open(self) -> None:
        """Open the dongle now (SourceFault saying why if impossible) and start the watchdog."""
        self._stop.clear()
        self._connect()
        self._watchdog = threading.Thread(target=self._watch, name="rtlsdr-watchdog", daemon=True)
        self._watchdog.start()
        logger.info(
            "RTL-SDR started: station %.3f MHz, centre %.3f MHz", self.station_hz / 1e6, self.center_hz / 1e6
        )

    def close(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5.0)
            self._watchdog = None
        self._disconnect()
        self._health = CLOSED
        logger.info("RTL-SDR stopped")

    def read(self, timeout: float) -> npt.NDArray[np.complex64] | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                generation, data = self._blocks.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return None
            if generation == self._generation:
                return iq_from_bytes(data, "cu8")

    def _connect(self) -> None:
        self._opening_since = time.monotonic()
        try:
            device = self._open_configured()
        except Exception as exc:
            self._health = health_of(exc)
            raise
        finally:
            self._opening_since = None
        with self._lock:
            self._generation += 1
            self._device = device
            self._last_block = time.monotonic()
            self._reader_failed = False
            generation = self._generation
            if self._health.state != "stalled":  # a dongle that sent nothing stays stalled until it does
                self._health = OPENING
        threading.Thread(
            target=self._read_loop, args=(device, generation), name="rtlsdr-reader", daemon=True
        ).start()

    def _open_configured(self) -> RtlSdrDevice:
        device = self._factory()
        try:
            configure_device(
                device, sample_rate=self._sample_rate, center_hz=self.center_hz, gain=self.gain, ppm=self.ppm
            )
        except HardwareError:
            _close_quietly(device)
            raise
        return device

    def _disconnect(self) -> None:
        with self._lock:
            device, self._device = self._device, None
            self._generation += 1  # blocks still queued or in flight from the old device are dropped
        if device is not None:
            # A stalled libusb transfer can make close() block too: never let it hold the watchdog.
            threading.Thread(target=_close_quietly, args=(device,), name="rtlsdr-close", daemon=True).start()

    def _read_loop(self, device: RtlSdrDevice, generation: int) -> None:
        num_bytes = 2 * self.block_samples
        while not self._stop.is_set() and generation == self._generation:
            try:
                data = bytes(device.read_bytes(num_bytes))
            except Exception as exc:
                if generation == self._generation and not self._stop.is_set():
                    logger.warning("RTL-SDR read failed: %s", exc)
                    self._reader_failed = True
                return
            if generation != self._generation:
                return
            self._last_block = time.monotonic()
            if self._health is not OK:
                self._delivering(generation)
            self._put((generation, data))

    def _delivering(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._health = OK

    def _put(self, item: tuple[int, bytes]) -> None:
        while True:
            try:
                self._blocks.put_nowait(item)
                return
            except queue.Full:  # the consumer is behind: drop the oldest block, keep latency bounded
                with contextlib.suppress(queue.Empty):
                    self._blocks.get_nowait()

    def _watch(self) -> None:
        while not self._stop.wait(min(0.2, self.watchdog_s / 4)):
            silent = time.monotonic() - self._last_block
            if self._reader_failed or silent >= self.watchdog_s:
                reason = "read error" if self._reader_failed else f"no samples for {silent:.1f} s"
                self._recover(reason)

    def _recover(self, reason: str) -> None:
        logger.warning("RTL-SDR stalled (%s): reopening", reason)
        if self._health.state == "ok":  # it delivered: a reopen usually cures this
            self._health = OPENING
        else:
            self._health = SourceHealth(
                "stalled",
                f"{_dongle(self.device_index)} opens but sends no samples - unplug it and plug it back in",
            )
        self._on_event(FmEvent("fm.source_stalled", {"source": "rtlsdr", "reason": reason}))
        self._disconnect()
        delay = self.backoff_initial_s
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                self._connect()
            except Exception as exc:  # the factory's HardwareError, or anything a driver raises
                logger.warning("RTL-SDR reopen attempt %d failed: %s (next in %.1f s)", attempt, exc, delay)
                self._on_event(
                    FmEvent(
                        "fm.source_open_failed", {"source": "rtlsdr", "error": str(exc), "retry_s": delay}
                    )
                )
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_max_s)
                continue
            self.reopen_count += 1
            self._on_event(FmEvent("fm.source_reopened", {"source": "rtlsdr", "attempts": attempt}))
            return


def _close_quietly(device: RtlSdrDevice) -> None:
    try:
        device.close()
    except Exception as exc:  # closing a dongle that vanished fails; nothing more can be done
        logger.debug("RTL-SDR close failed: %s", exc)
