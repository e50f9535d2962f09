"""The kinds of event the agent records: one enumeration, each with its severity.

Events go to the store's outbox (``events`` table): each gets a sequence number, and the link to
the central server sends them in order from a delivered cursor, once (``Store.undelivered_events``
and ``Store.mark_delivered``).  ``loa status`` shows the recent errors.  The wire names (the
values) are part of docs/PROTOCOL.md once the link exists: add kinds, never rename them.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EventKind(StrEnum):
    AGENT_STARTED = "agent.started"
    AGENT_STOPPED = "agent.stopped"
    CLOCK_TRUSTED = "clock.trusted"
    CLOCK_UNTRUSTED = "clock.untrusted"
    WATERMARK_DROPPED = "clock.watermark_dropped"
    CLOCK_STEPPED_BACK = "clock.stepped_back"
    SCHEDULE_LOADED = "schedule.loaded"
    SCHEDULE_REFUSED = "schedule.refused"
    PLAY_FAILED = "play.failed"
    PLAY_CUT_BY_RESTART = "play.cut_by_restart"
    COMMAND = "command"
    COMMAND_REFUSED = "command.refused"
    FM_UNAVAILABLE = "fm.unavailable"
    FM_RELAY_ON = "fm.relay_on"
    FM_RELAY_OFF = "fm.relay_off"
    FM_STREAM_ENDED = "fm.stream_ended"
    FM_CARRIER_PRESENT = "fm.carrier_present"
    FM_CARRIER_LOST = "fm.carrier_lost"
    FM_SOURCE_REOPENED = "fm.source_reopened"
    FM_SOURCE_STALLED = "fm.source_stalled"
    FM_SOURCE_OPEN_FAILED = "fm.source_open_failed"
    FM_SOURCE_ERROR = "fm.source_error"
    FM_SOURCE_FINISHED = "fm.source_finished"
    FM_SOURCE_FAULT = "fm.source_fault"
    FM_SOURCE_OK = "fm.source_ok"
    PLAYER_FAULT = "player.fault"
    STORAGE_FAULT = "storage.fault"
    STORAGE_RECOVERED = "storage.recovered"
    ALARM_RAISED = "alarm.raised"  # detail: "<code>: <what>" (agent/alarms.py, docs/OPERATIONS.md)
    ALARM_CLEARED = "alarm.cleared"
    CLOCK_CENTRAL_REFUSED = "clock.central_refused"  # a time answer forged, replayed or misaddressed
    CLOCK_CENTRAL_UNUSABLE = "clock.central_unusable"  # unreachable, too slow, or the clock too far off
    CLOCK_SET = "clock.set"  # the clock was set from the central server's signed time
    MANIFEST_FETCH_FAILED = "manifest.fetch_failed"
    AUDIO_DOWNLOAD_FAILED = "audio.download_failed"
    AUDIO_LATE = "audio.late"
    AUDIO_CORRUPT = "audio.corrupt"

    @property
    def severity(self) -> Severity:
        return _SEVERITY.get(self, Severity.INFO)

    @property
    def security(self) -> bool:
        """A sign of tampering: the outbox never drops one (docs/PROTOCOL.md, "The spool")."""
        return self in SECURITY


_SEVERITY = {
    EventKind.CLOCK_UNTRUSTED: Severity.WARNING,
    EventKind.WATERMARK_DROPPED: Severity.WARNING,
    EventKind.CLOCK_STEPPED_BACK: Severity.WARNING,
    EventKind.SCHEDULE_REFUSED: Severity.ERROR,
    EventKind.PLAY_FAILED: Severity.ERROR,
    EventKind.PLAY_CUT_BY_RESTART: Severity.WARNING,
    EventKind.COMMAND_REFUSED: Severity.WARNING,
    EventKind.FM_UNAVAILABLE: Severity.ERROR,
    EventKind.FM_CARRIER_LOST: Severity.WARNING,
    EventKind.FM_SOURCE_STALLED: Severity.WARNING,
    EventKind.FM_SOURCE_OPEN_FAILED: Severity.WARNING,
    EventKind.FM_SOURCE_ERROR: Severity.WARNING,
    EventKind.FM_SOURCE_FINISHED: Severity.WARNING,
    EventKind.FM_SOURCE_FAULT: Severity.ERROR,
    EventKind.PLAYER_FAULT: Severity.ERROR,
    EventKind.STORAGE_FAULT: Severity.ERROR,
    EventKind.ALARM_RAISED: Severity.WARNING,
    EventKind.CLOCK_CENTRAL_REFUSED: Severity.WARNING,
    EventKind.CLOCK_CENTRAL_UNUSABLE: Severity.WARNING,
    EventKind.CLOCK_SET: Severity.WARNING,
    EventKind.MANIFEST_FETCH_FAILED: Severity.WARNING,
    EventKind.AUDIO_DOWNLOAD_FAILED: Severity.WARNING,
    EventKind.AUDIO_LATE: Severity.WARNING,
    EventKind.AUDIO_CORRUPT: Severity.ERROR,
}

SECURITY = frozenset({EventKind.COMMAND_REFUSED, EventKind.SCHEDULE_REFUSED, EventKind.CLOCK_CENTRAL_REFUSED})
