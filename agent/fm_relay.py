"""The FM relay as the agent sees it: the receiver built from ``fm:``, and its audio path.

FM sits below every scheduled level.  The main loop asks :meth:`FmRelay.decide` each time it runs;
the pure policy (``fm_receiver.relay_policy``) says whether to relay, and this module only turns
the answer into actions:

- ``rtlsdr`` and ``iq_file``: the demodulated audio is a live stream handed to the player
  (``Player.play_stream``), so a scheduled item's ``play`` simply replaces it and FM resumes after;
- ``serial``: the tuner module's analog output reaches the amplifiers through an audio-source relay
  on GPIO (``fm.serial.audio_relay_pin``), closed while relaying and opened for scheduled audio.

When to start and stop is the output plan's decision (``agent.output_plan``), which gives FM the
same relay pre-roll and post-roll as every other source.  The central link does not exist yet:
until it does, the link counts as up, so only ``fm.relay_hours`` decide (``fallback_on_link_down``
takes effect once the link reports).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from agent.config import Config, FmConfig
from agent.events import EventKind, Severity
from agent.store import Store, iso
from drivers.gpio import AmplifierRelays
from drivers.player import Player, PlayerEvent
from fm_receiver.dsp import FmDemodulator
from fm_receiver.iq_file import IqFileSource
from fm_receiver.iq_source import FmEvent, IqSource
from fm_receiver.quality import CarrierDetector
from fm_receiver.receiver import FmReceiver
from fm_receiver.relay_policy import Decision, should_relay
from fm_receiver.rtlsdr_source import RtlSdrSource
from fm_receiver.serial_tuner import SerialTuner
from fm_receiver.source_health import SourceHealth
from fm_receiver.tuner_receiver import TunerReceiver

logger = logging.getLogger(__name__)

SOURCE_RELAY = "fm-audio"  # the serial tuner's audio-source relay, as a zone of its own
RESTART_GAP = timedelta(seconds=2)  # after a relay ends, wait this long before starting again
TUNER_MIN_DBUV = 20.0  # serial modules report RSSI in dBµV, not dBFS


def _detector(config: FmConfig, tuner: bool) -> CarrierDetector:
    squelch = config.squelch
    hold = squelch.hold.total_seconds()
    return CarrierDetector(
        open_snr_db=squelch.open_snr_db,
        close_snr_db=squelch.close_snr_db,
        min_level=TUNER_MIN_DBUV if tuner else squelch.min_level_dbfs,
        open_hold_s=hold,
        close_hold_s=min(hold, 0.5),  # close fast: never relay noise for long
    )


def _iq_source(config: FmConfig, on_event: Callable[[FmEvent], None]) -> IqSource:
    assert config.frequency is not None
    if config.backend == "iq_file":
        spec = config.iq_file
        assert spec.path is not None
        return IqFileSource(
            spec.path, spec.format, spec.sample_rate, spec.offset, loop=spec.loop, realtime=True
        )
    spec_r = config.rtlsdr
    return RtlSdrSource(
        config.frequency,
        sample_rate=spec_r.sample_rate,
        center_offset_hz=spec_r.center_offset,
        gain="auto" if spec_r.gain is None else spec_r.gain,
        ppm=spec_r.ppm,
        device_index=spec_r.device_index,
        on_event=on_event,
    )


class FmRelay:
    """Owns the FM receiver for the agent; decides from the policy, never touches agent state."""

    def __init__(
        self,
        config: Config,
        on_event: Callable[[FmEvent], None],
        *,
        player: Player,
        store: Store,
        source_relay: AmplifierRelays | None = None,
    ) -> None:
        self.player = player
        self.store = store
        self.source_relay = source_relay  # serial tuner: routes its analog audio to the amplifiers
        self.fm = config.fm
        self.tz = config.device.timezone
        self.zones = frozenset(config.fm.zones)
        self.receiver: FmReceiver | TunerReceiver
        us = self.fm.deemphasis.total_seconds() * 1e6
        if config.fm.backend in ("rtlsdr", "iq_file"):
            source = _iq_source(self.fm, on_event)
            demod = FmDemodulator(source.sample_rate, source.offset_hz, deemphasis_us=us)
            self.receiver = FmReceiver(
                source, demod, _detector(self.fm, False), on_event, frequency_hz=self.fm.frequency
            )
        else:
            assert self.fm.frequency is not None
            tuner = SerialTuner(self.fm.serial.port, baudrate=self.fm.serial.baudrate)
            self.receiver = TunerReceiver(
                tuner, self.fm.frequency, _detector(self.fm, True), on_event, deemphasis_us=round(us)
            )
        self.active_token: str | None = None
        self.last_end: datetime | None = None
        self.last_decision = Decision(False, "starting")
        self.reported_fault: SourceHealth | None = None  # the source fault last written to the store

    def start(self) -> None:
        self.receiver.start()
        logger.info("FM relay for %.1f MHz started (%s)", (self.fm.frequency or 0) / 1e6, self.fm.backend)

    def stop(self) -> None:
        self.receiver.stop()
        logger.info("FM relay stopped")

    @property
    def uses_player(self) -> bool:
        """Demodulated here and played through the player (else the tuner's own audio path)."""
        return isinstance(self.receiver, FmReceiver)

    @property
    def carrier_present(self) -> bool:
        return bool(self.receiver.detector.present)

    @staticmethod
    def is_event(event: object) -> bool:
        return isinstance(event, FmEvent)

    def decide(
        self, now: datetime, *, clock_trusted: bool, scheduled_busy: bool, link_up: bool = True
    ) -> Decision:
        """The policy's answer for ``now`` (aware), with a restart gap after a relay ended; a source
        fault is noted on the way (once per change)."""
        self._note_source(self.receiver.source_health())
        decision = should_relay(
            now.astimezone(self.tz).time(),
            relay_hours=self.fm.relay_hours,
            link_up=link_up,
            fallback_on_link_down=self.fm.fallback_on_link_down,
            carrier_present=self.carrier_present,
            scheduled_busy=scheduled_busy,
            clock_trusted=clock_trusted,
        )
        if decision.relay and self.last_end is not None and now - self.last_end < RESTART_GAP:
            decision = Decision(False, "restart_backoff")
        self.last_decision = decision
        return decision

    # -- called by the agent's main loop only ----------------------------------------------------

    def _note_source(self, health: SourceHealth) -> None:
        """A source fault is an error event once per change (not per pass); its end is noted too."""
        if health.fault and health != self.reported_fault:
            logger.error("FM source fault: %s", health.error)
            self.store.add_event(EventKind.FM_SOURCE_FAULT, health.error or health.state)
            self.reported_fault = health
        elif health.state == "ok" and self.reported_fault is not None:
            logger.info("FM source delivers again")
            self.store.add_event(EventKind.FM_SOURCE_OK, f"was: {self.reported_fault.error}")
            self.reported_fault = None

    def begin(self, now: datetime) -> None:
        """Start relaying (the output plan says so, its zones have settled)."""
        token = f"fm@{iso(now)}"
        self.active_token = token
        if isinstance(self.receiver, FmReceiver):
            self.player.play_stream(token, self.receiver.open_stream(), self.fm.volume)
        elif self.source_relay is not None:
            self.source_relay.apply({SOURCE_RELAY})
        reason = self.last_decision.reason
        logger.info("FM relay on (%s)", reason)
        self.store.add_event(EventKind.FM_RELAY_ON, reason)

    def end(self, now: datetime, *, replaced: bool) -> None:
        """Stop relaying; ``replaced``: the player already plays something else (do not stop it)."""
        if self.active_token is None:
            return
        self.active_token = None
        self.last_end = now
        if self.uses_player and not replaced:
            self.player.stop()
        if self.source_relay is not None:
            self.source_relay.apply(frozenset())
        reason = self.last_decision.reason if not self.last_decision.relay else "a scheduled item"
        logger.info("FM relay off (%s)", reason)
        self.store.add_event(EventKind.FM_RELAY_OFF, reason)

    def on_player_event(self, event: PlayerEvent, now: datetime) -> None:
        """The player's word on the FM stream: anything final ends this relay."""
        if event.kind == "playing":
            return
        self.active_token = None
        self.last_end = now
        self.store.add_event(EventKind.FM_STREAM_ENDED, f"stream {event.kind}: {event.detail}")

    def on_fm_event(self, event: FmEvent) -> None:
        """A receiver event (carrier, source): logged and kept in the store."""
        try:
            kind = EventKind(event.kind)
        except ValueError:  # a receiver event this agent has no kind for yet
            kind = EventKind.FM_SOURCE_ERROR
        warning = kind.severity is not Severity.INFO
        logger.log(logging.WARNING if warning else logging.INFO, "%s %s", event.kind, event.detail)
        self.store.add_event(kind, json.dumps(event.detail, default=str))

    def status(self) -> dict[str, Any]:
        return {
            "backend": self.fm.backend,
            "frequency_mhz": round((self.fm.frequency or 0) / 1e6, 2),
            "relaying": self.active_token is not None,
            "decision": self.last_decision.reason,
            **self.receiver.status(),
        }
