"""``loa-central device remove|rotate-password``: a box taken out of service, a box's new password.

    loa-central --config FILE device remove ID
    loa-central --config FILE device rotate-password ID --out DIR

Both change the database first, then rewrite the embedded broker's password file and ACL and send
the running broker SIGHUP.  Mosquitto 2.0 checks every connected client against the files it
rereads and disconnects one whose account is gone or whose password no longer matches
(``tests/test_central_revoke.py`` checks this on the real broker): a removed box, or a box still on
its old password, is cut off at once and refused when it connects again.  Every other box keeps its
connection.

A removed box is never deleted: its row, play logs, records and acks stay for the reports.  Its id
is not registered again (``registry.add_device`` refuses it): a box back in service takes a new id,
so that no report mixes two boxes' records under one id.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import Engine

from central import broker, db, registry
from central.config import CentralServerConfig
from central.files import write_atomically
from central.passwords import mosquitto_hash, new_secret

PASSWORD_NAME = "mqtt-password"
CLI_USER = "loa-central"  # who the audit log names for what was done on the server's command line


def write_password(out: Path, password: str) -> Path:
    """The box's broker password as the technician copies it to the box (mode 0600); its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / PASSWORD_NAME
    write_atomically(path, (password + "\n").encode(), mode=0o600)
    return path


def update_broker(config: CentralServerConfig, engine: Engine) -> None:
    """The embedded broker's files from the database, reread by the running broker at once."""
    if config.mqtt.embedded:
        broker.write_files(config, engine)
        broker.reload(config)


def add_parsers(device: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remove = device.add_parser("remove", help="take a box out of service (its records stay)")
    remove.add_argument("id", help="the box's device.id")
    rotate = device.add_parser("rotate-password", help="give a box a new broker password, written into --out")
    rotate.add_argument("id", help="the box's device.id")
    rotate.add_argument("--out", type=Path, required=True, help="where to write the box's new password file")


def run(config: CentralServerConfig, args: argparse.Namespace) -> None:
    engine = db.open_engine(config.database_url)
    try:
        if args.action == "remove":
            _remove(config, engine, args.id)
        else:
            _rotate(config, engine, args.id, args.out)
    finally:
        engine.dispose()


def _remove(config: CentralServerConfig, engine: Engine, device_id: str) -> None:
    """Again for a box removed before, it writes the broker's files again: a removal cut short between
    the database and the broker is finished by running it once more."""
    at, now_removed = registry.remove_device(engine, device_id)
    update_broker(config, engine)
    if not now_removed:
        print(f"device {device_id} was removed from service on {at:%Y-%m-%d}; the broker refuses it")
        return
    registry.record_audit(engine, CLI_USER, "device.remove", device_id, {"removed_at": at.isoformat()})
    print(f"device {device_id} removed from service: the broker refuses it; its records stay for the reports")
    _external_note(config, f"remove the account {device_id} from it")


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
