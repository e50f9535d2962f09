"""Each box's signed schedule manifest (docs/PROTOCOL.md, "Schedule manifests"), built from the
bulletins scheduled for it, and the retained notice that tells it a new version is waiting.

A box removed from service (``loa-central device remove``) has its retained notice cleared (an
empty retained message on its topic: how MQTT deletes one) by :func:`clear_removed_notices`: by the
command itself when it reaches the broker, and by ``loa-central serve`` each time its link connects
(central.notice_sweep), which also undoes a notice the broker brought back from its own store.

A manifest is per box (its ``aud`` is the device id): boxes of one commune may hold different
schedules once a commune operator has accepted or declined what a province offered.  Versions only
grow, one per rebuild, so a box never takes an old manifest again (``stale``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, exists, select

from central import db
from central.context import Central, Publisher
from protocol.manifest import sign_manifest
from protocol.topics import PREFIX

logger = logging.getLogger(__name__)

SCHEDULED = ("scheduled",)
# One rebuild at a time in this process: two at once could both read version N and sign N + 1.
# (Several server processes on one PostgreSQL would need a row lock here; one process is the design.)
_REBUILDING = threading.Lock()


def item_id(bulletin_id: int) -> str:
    return f"bulletin-{bulletin_id}"


def item_spec(bulletin_id: int, bulletin: Mapping[str, Any], audio: Any) -> dict[str, Any]:
    """A bulletin (its row, or what will be) as a schedule item (docs/SCHEDULING.md); ``audio`` as
    the manifest carries it."""
    item: dict[str, Any] = {"id": item_id(bulletin_id), "audio": audio, "priority": bulletin["level"]}
    if bulletin["at"] is not None:
        item["at"] = bulletin["at"].isoformat()
    else:
        item["rrule"], item["dtstart"] = bulletin["rrule"], bulletin["dtstart"]
    for key in ("valid_from", "valid_until", "volume", "zones"):
        if bulletin[key] is not None:
            item[key] = bulletin[key]
    return item


def shifted(item: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The item starting ``seconds`` later: its ``at``, or its rule's ``dtstart`` (the box's wall
    clock), moved; how a commune's order of colliding priority bulletins reaches its boxes with the
    protocol's own fields (central.collisions)."""
    if not seconds:
        return item
    moved = timedelta(seconds=seconds)
    if "at" in item:
        return item | {"at": (datetime.fromisoformat(item["at"]) + moved).isoformat()}
    start = datetime.fromisoformat(str(item["dtstart"])) + moved  # naive stays naive, an offset stays
    return item | {"dtstart": start.isoformat(sep=" ")}


def row_spec(row: Row[Any], audio: Any) -> dict[str, Any]:
    """A stored bulletin's row as the schedule item its boxes get (the report expands this too)."""
    return item_spec(row.id, {str(key): value for key, value in row._mapping.items()}, audio)


def notice_topic(device_id: str) -> str:
    return f"{PREFIX}/{device_id}/manifest"


def clear_retained(publisher: Publisher, topics: Mapping[str, list[str]], what: str) -> int:
    """An empty retained message on each of every box's ``topics``, which deletes what the broker
    retained there; how many boxes were wholly cleared.  The others are named in a warning (``what``
    was not cleared), to be cleared when the link connects next."""
    messages = [(topic, "") for device_id in sorted(topics) for topic in topics[device_id]]
    taken = publisher.publish_all(messages, retain=True, timeout=5.0 + len(messages) / 100)  # 10,000 in 105 s
    left = sorted({topic.split("/")[2] for (topic, _), published in zip(messages, taken, strict=True)
                   if not published})  # fmt: skip
    if left:
        logger.warning("%s of removed boxes not cleared (the broker did not take it): %s; cleared when the "
                       "link connects next", what, ", ".join(left))  # fmt: skip
    return len(topics) - len(left)


def removed_with_notices(engine: Engine, among: Iterable[str] | None = None) -> list[str]:
    """The boxes removed from service that had a manifest, so a retained notice (``among`` those:
    picked here, not in SQL, since a rebuild may name 10,000 boxes and removed ones are few)."""
    query = select(db.devices.c.id).where(
        db.devices.c.removed_at.is_not(None),
        exists().where(db.manifests.c.device_id == db.devices.c.id),
    )
    with engine.connect() as conn:
        removed = list(conn.execute(query.order_by(db.devices.c.id)).scalars())
    if among is None:
        return removed
    wanted = set(among)
    return [device_id for device_id in removed if device_id in wanted]


def clear_removed_notices(engine: Engine, publisher: Publisher, among: Iterable[str] | None = None) -> int:
    """Clear the retained notices of the removed boxes (``among`` those); how many were cleared.
    Idempotent: clearing a topic with no retained message leaves it so."""
    removed = removed_with_notices(engine, among)
    if not removed:
        return 0
    topics = {device_id: [notice_topic(device_id)] for device_id in removed}
    return clear_retained(publisher, topics, "retained manifest notices")


def _items(central: Central, device_id: str) -> list[dict[str, Any]]:
    query = (
        select(db.bulletins)
        .join(db.bulletin_targets, db.bulletin_targets.c.bulletin_id == db.bulletins.c.id)
        .where(db.bulletin_targets.c.device_id == device_id, db.bulletin_targets.c.status.in_(SCHEDULED))
        .order_by(db.bulletins.c.id)
    )
    with central.engine.connect() as conn:
        rows = conn.execute(query).all()
        shifts = _shifts(conn, device_id, {row.id for row in rows})
    return [shifted(row_spec(row, {"sha256": row.audio_sha256, "url": central.audio_url(row.audio_sha256)}),
                    shifts.get(row.id, 0)) for row in rows]  # fmt: skip


def _shifts(conn: Any, device_id: str, scheduled: set[int]) -> dict[int, int]:
    """Bulletin id -> seconds it starts later on this box, by its commune's order of colliding
    priority bulletins (only where the box has both; after two firsts, it follows the later end)."""
    unit = select(db.devices.c.unit).where(db.devices.c.id == device_id).scalar_subquery()
    orders = select(db.bulletin_orders).where(db.bulletin_orders.c.unit == unit)
    shifts: dict[int, int] = {}
    for order in conn.execute(orders):
        if order.first_id in scheduled and order.second_id in scheduled:
            shifts[order.second_id] = max(shifts.get(order.second_id, 0), order.shift_s)
    return shifts


def rebuild(central: Central, device_ids: Iterable[str]) -> dict[str, int]:
    """A new signed manifest for each box, and its notice; the version each box now has."""
    with _REBUILDING:
        versions = {device_id: _rebuild_one(central, device_id) for device_id in sorted(set(device_ids))}
        notices = [(notice_topic(device_id), json.dumps({"v": 1, "version": str(version)}))
                   for device_id, version in versions.items()]  # fmt: skip
        taken = central.publisher.publish_all(notices, retain=True)  # at once, not one wait per box
    for (device_id, version), published in zip(versions.items(), taken, strict=True):
        if not published:
            logger.warning(
                "manifest %d of %s: notice not published (the box polls hourly)", version, device_id
            )
    # A box removed while this rebuild ran (device remove is another process) may have had its notice
    # cleared before this one went out: checked after publishing, so one of the two clears it.
    clear_removed_notices(central.engine, central.publisher, among=versions)
    return versions


def _rebuild_one(central: Central, device_id: str) -> int:
    """Sign and store ``device_id``'s next manifest; its version (the notice goes out with the others)."""
    items = _items(central, device_id)
    now = central.clock()
    with central.engine.begin() as conn:
        current = conn.execute(
            select(db.manifests.c.version).where(db.manifests.c.device_id == device_id)
        ).scalar_one_or_none()
        version = (current or 0) + 1
        claims = {
            "v": 1,
            "aud": device_id,
            "iat": int(now.timestamp()),
            "version": str(version),
            "items": items,
        }
        token = sign_manifest(claims, central.key.private, kid=central.key.kid)
        row = {
            "device_id": device_id,
            "version": version,
            "token": token,
            "etag": f'"{version}"',
            "issued_at": now,
        }
        columns = ["version", "token", "etag", "issued_at"]
        conn.execute(db.upsert(central.engine, db.manifests, ["device_id"], columns), row)
    return version


def manifest_of(engine: Engine, device_id: str) -> tuple[str, str] | None:
    """``(token, etag)`` of a box's manifest in force, or None before its first."""
    with engine.connect() as conn:
        row = conn.execute(
            select(db.manifests.c.token, db.manifests.c.etag).where(db.manifests.c.device_id == device_id)
        ).first()
    return None if row is None else (row.token, row.etag)
