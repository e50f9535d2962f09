"""``loa-central device list|remove|rotate-password``: the boxes, a box taken out of service, a box's
new password.

    loa-central --config FILE device list [--json]
    loa-central --config FILE device remove ID
    loa-central --config FILE device rotate-password ID --out DIR

Both change the database first, then rewrite the embedded broker's password file and ACL and send
the running broker SIGHUP.  Mosquitto 2.0 checks every connected client against the files it
rereads and disconnects one whose account is gone or whose password no longer matches
(``tests/test_central_revoke.py`` checks this on the real broker): a removed box, or a box still on
its old password, is cut off at once and refused when it connects again.  Every other box keeps its
connection.

Removal also clears what the box left retained on the broker (an empty retained message on each
topic): its manifest notice, and the ``status`` and ``state`` it retained itself, so that no
subscriber goes on seeing it; it connects for that as a client of its own.  When the broker cannot
be reached (``serve`` not running, the broker down), ``serve`` clears them when its link connects
next (central.notice_sweep).

A removed box is never deleted: its row, play logs, records and acks stay for the reports.  Its id
is not registered again (``registry.add_device`` refuses it): a box back in service takes a new id,
so that no report mixes two boxes' records under one id.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from central import broker, db, manifests, notice_sweep, registry
from central.config import CentralServerConfig
from central.files import write_atomically
from central.ingest import service_status
from central.mqtt_link import publish_once
from central.passwords import mosquitto_hash, new_secret

PASSWORD_NAME = "mqtt-password"
CLI_USER = "loa-central"  # who the audit log names for what was done on the server's command line


def write_password(out: Path, password: str) -> Path:
    """The box's broker password as the technician copies it to the box (mode 0600); its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / PASSWORD_NAME
    write_atomically(path, (password + "\n").encode(), mode=0o600)
    return path


def update_broker(config: CentralServerConfig, engine: Engine) -> bool:
    """The embedded broker's files from the database, reread by the running broker at once; whether
    a broker may be running to take what comes next (an external one always may)."""
    if not config.mqtt.embedded:
        return True
    broker.write_files(config, engine)
    return broker.reload(config)


def add_parsers(device: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = device.add_parser("list", help="every box: its commune, online or not, last seen")
    listing.add_argument("--json", action="store_true", help="one JSON list (times in UTC)")
    remove = device.add_parser("remove", help="take a box out of service (its records stay)")
    remove.add_argument("id", help="the box's device.id")
    rotate = device.add_parser("rotate-password", help="give a box a new broker password, written into --out")
    rotate.add_argument("id", help="the box's device.id")
    rotate.add_argument("--out", type=Path, required=True, help="where to write the box's new password file")


def run(config: CentralServerConfig, args: argparse.Namespace) -> None:
    engine = db.open_engine(config.database_url)
    try:
        if args.action == "list":
            _list(config, engine, as_json=args.json)
        elif args.action == "remove":
            _remove(config, engine, args.id)
        else:
            _rotate(config, engine, args.id, args.out)
    finally:
        engine.dispose()


def boxes(config: CentralServerConfig, engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """Every registered box, removed ones too: id, unit (id and name), status, last seen (UTC)."""
    units = registry.all_units(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(db.devices).order_by(db.devices.c.id)).all()
    listed = []
    for row in rows:
        unit = units.get(row.unit)
        listed.append({
            "id": row.id, "unit": row.unit, "unit_name": unit.name if unit else row.unit,
            "status": service_status(row, now, config.offline_after),
            "last_seen": row.last_seen, "removed_at": row.removed_at,
        })  # fmt: skip
    return listed


def _list(config: CentralServerConfig, engine: Engine, *, as_json: bool) -> None:
    listed = boxes(config, engine, datetime.now(UTC))
    if as_json:
        print(json.dumps(listed, default=lambda at: at.isoformat(), ensure_ascii=False, indent=2))
        return
    zone = config.box_timezone

    def local(at: datetime | None) -> str:
        return f"{at.astimezone(zone):%Y-%m-%d %H:%M}" if at is not None else "never"

    rows = [("BOX", "COMMUNE", "STATUS", "LAST SEEN")]
    for box in listed:
        status = f"removed {local(box['removed_at'])[:10]}" if box["status"] == "removed" else box["status"]
        rows.append((box["id"], box["unit_name"], status, local(box["last_seen"])))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]  # the last one is not padded
    for *padded, last in rows:
        cells = [cell.ljust(width) for cell, width in zip(padded, widths, strict=True)]
        print(*cells, last, sep="  ")
    if not listed:
        print("(no box registered yet: loa-central device add)")


def _remove(config: CentralServerConfig, engine: Engine, device_id: str) -> None:
    """Again for a box removed before, it writes the broker's files again: a removal cut short between
    the database and the broker is finished by running it once more."""
    at, now_removed = registry.remove_device(engine, device_id)
    running = update_broker(config, engine)
    if not now_removed:
        print(f"device {device_id} was removed from service on {at:%Y-%m-%d}; the broker refuses it")
    else:
        registry.record_audit(engine, CLI_USER, "device.remove", device_id, {"removed_at": at.isoformat()})
        print(f"device {device_id} removed from service: the broker refuses it; its records stay for the "
              "reports")  # fmt: skip
    print(_clear_retained(config, engine, device_id, running))
    if now_removed:
        _external_note(config, f"remove the account {device_id} from it")


def _clear_retained(config: CentralServerConfig, engine: Engine, device_id: str, running: bool) -> str:
    """Clear the box's retained status, state and manifest notice on the broker, if it is reachable;
    what was done."""
    had_notice = bool(manifests.removed_with_notices(engine, [device_id]))
    later = (
        "loa-central serve clears its retained status, state and manifest notice when it connects to "
        "the broker next"
    )
    if not running:
        return f"the broker is not running: {later}"
    topics = notice_sweep.own_topics(device_id) + ([manifests.notice_topic(device_id)] if had_notice else [])
    endpoint = broker.central_endpoint(config)
    taken = publish_once(endpoint.host, endpoint.port, username=endpoint.username, password=endpoint.password,
                         messages=[(topic, "") for topic in topics], retain=True)  # fmt: skip
    if taken != [True] * len(topics):
        return f"the broker was not reached: {later}"
    if had_notice:
        return "its retained status, state and manifest notice are cleared from the broker"
    return "its retained status and state are cleared from the broker (it never had a manifest notice)"


def _rotate(config: CentralServerConfig, engine: Engine, device_id: str, out: Path) -> None:
    registry.require_in_service(engine, device_id, "rotate the password of")
    password = new_secret()
    path = write_password(out, password)  # first: a file that cannot be written changes nothing
    registry.set_device_password(engine, device_id, mosquitto_hash(password))
    update_broker(config, engine)
    registry.record_audit(engine, CLI_USER, "device.rotate_password", device_id, {})
    print(f"device {device_id} has a new broker password, the old one is refused; copy {path} to the box")
    _external_note(config, f"give the account {device_id} the password in {path} there")


def _external_note(config: CentralServerConfig, what: str) -> None:
    if not config.mqtt.embedded:
        print(f"the broker is external ({config.mqtt.broker}): {what} as well")
