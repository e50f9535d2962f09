"""What boxes send, as boxes send it: play-log records through the central's real ingest path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from central.context import Central
from central.ingest import Ingestor
from central.mqtt_link import Incoming
from protocol.json_wire import format_time
from protocol.topics import Kind, device_topic


def playlog(
    device: str,
    seq: int,
    start: datetime,
    outcome: str,
    *,
    audio: str,
    level: str = "normal",
    played_s: float | None = None,
    reason: str = "",
    item: str = "bulletin-1",
) -> Incoming:
    """One play-log record of ``item`` scheduled at ``start``; played ``played_s`` seconds if given."""
    ended = None if played_s is None else format_time(start + timedelta(seconds=played_s))
    # the key as the box's scheduler writes it: the item's id @ its start in UTC
    data = {"key": f"{item}@{start.astimezone(UTC).isoformat()}", "item_id": item, "audio": audio,
            "level": level, "zones": [], "scheduled_start": format_time(start),
            "actual_start": format_time(start) if played_s is not None else None, "ended": ended,
            "outcome": outcome, "reason": reason, "origin": "central"}  # fmt: skip
    body = {"v": 1, "id": f"{device}:{seq}", "at": format_time(start), "data": data}
    return Incoming(device_topic(device, Kind.PLAYLOG), json.dumps(body).encode())


def ingest(central: Central, *messages: Incoming) -> Ingestor:
    """Every message through the ingest the server runs; each must be stored."""
    ingestor = Ingestor(central.engine, central.clock)
    for message in messages:
        assert ingestor.handle(message), message.topic
    return ingestor
