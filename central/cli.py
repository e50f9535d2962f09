"""``loa-central``: what a technician types on the central server.

    loa-central --config FILE check-config
    loa-central --config FILE init --admin NAME --password-file F
    loa-central --config FILE device add ID --province P [--district D] --commune C --out DIR
        [--box-dir /etc/loa]
    loa-central --config FILE device remove ID
    loa-central --config FILE device rotate-password ID --out DIR
    loa-central --config FILE user add NAME --role operator --unit U --password-file F
    loa-central --config FILE token add --user NAME --label L [--days 365]
    loa-central --config FILE serve
    loa-central --config FILE prune [--dry-run]

Errors are printed by foundation.errors.report with their exit codes; no password is ever printed
or accepted on the command line (files only).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from central import broker, db, device_cli, registry, retention, upstream_cli
from central.config import CentralServerConfig, load_central_config
from central.files import write_atomically
from central.passwords import MIN_PASSWORD_CHARS, hash_password, mosquitto_hash, new_secret
from central.signing import create_key_pair
from foundation.errors import LoaError, UsageError, report

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/loa/central.yaml")
PUBLIC_KEY_NAME = "central-signing-key.pub.pem"
PASSWORD_NAME = device_cli.PASSWORD_NAME
CA_NAME = "central-broker-ca.pem"  # the CA a box trusts the broker's TLS certificate by (mqtt.box_ca_file)


def read_password_file(path: Path) -> str:
    """The first line of ``path``; UsageError naming the file (never its content) if unfit."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as error:
        raise UsageError(f"{path}: cannot read the password file ({type(error).__name__})") from None
    password = lines[0].strip() if lines else ""
    if len(password) < MIN_PASSWORD_CHARS:
        raise UsageError(f"{path}: the password must have at least {MIN_PASSWORD_CHARS} characters")
    return password


def init(config: CentralServerConfig, admin: str, password_file: Path) -> None:
    password = read_password_file(password_file)
    config.storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = db.open_engine(config.database_url)
    try:
        if registry.user_with_hash(engine, admin) is not None:
            raise UsageError(f"user {admin} already exists: init has been run on this database")
        create_key_pair(config.signing_key_file, config.public_key_file)
        registry.add_user(engine, admin, hash_password(password), "admin", None)
        if config.mqtt.embedded:
            broker.write_files(config, engine)
    finally:
        engine.dispose()
    print(f"initialized {config.storage_dir}: database, signing key pair, admin {admin}")


def _chain(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    chain = [(args.province, "province", args.province_name or args.province)]
    if args.district:
        chain.append((args.district, "district", args.district_name or args.district))
    return [*chain, (args.commune, "commune", args.commune_name or args.commune)]


def device_add(config: CentralServerConfig, args: argparse.Namespace) -> None:
    out: Path = args.out
    if not config.public_key_file.exists():
        raise UsageError(f"{config.public_key_file}: no signing key yet: run loa-central init first")
    engine = db.open_engine(config.database_url)
    try:
        units = registry.ensure_unit_chain(engine, _chain(args))
        groups = [unit.id for unit in reversed(units)]  # the commune first, then up to the province
        password = new_secret()
        registry.add_device(engine, args.id, units[-1].id, groups, mosquitto_hash(password))
        device_cli.update_broker(config, engine)
    finally:
        engine.dispose()
    box_dir: Path = args.box_dir
    device_cli.write_password(out, password)
    write_atomically(out / PUBLIC_KEY_NAME, config.public_key_file.read_bytes())
    if config.mqtt.box_ca_file is not None:
        write_atomically(out / CA_NAME, config.mqtt.box_ca_file.read_bytes())
    write_atomically(out / "central.yaml", central_section(config, args.id, groups, box_dir).encode())
    print(f"device {args.id} registered in {units[-1].id}; copy {out}/* to {box_dir} on the box")


def central_section(config: CentralServerConfig, device_id: str, groups: Sequence[str], box_dir: Path) -> str:
    """The agent's ``central:`` section for a box, naming its files under ``box_dir``."""
    group_list = ", ".join(groups)
    return (
        f"\n# The link to the central server, for {device_id} (written by loa-central device add).\n"
        "central:\n"
        f"  mqtt_url: {config.box_mqtt_url}\n"
        f"  api_url: {config.api_url}\n"
        f"  username: {device_id}\n"
        f"  password_file: {box_dir / PASSWORD_NAME}\n"
        f"  signing_public_key_files: [{box_dir / PUBLIC_KEY_NAME}]\n"
        f"  groups: [{group_list}]\n"
        + (f"  ca_file: {box_dir / CA_NAME}\n" if config.mqtt.box_ca_file is not None else "")
    )


def user_add(config: CentralServerConfig, args: argparse.Namespace) -> None:
    password = read_password_file(args.password_file)
    engine = db.open_engine(config.database_url)
    try:
        registry.add_user(engine, args.name, hash_password(password), args.role, args.unit)
    finally:
        engine.dispose()
    print(f"user {args.name} ({args.role}{' of ' + args.unit if args.unit else ''}) added")


def token_add(config: CentralServerConfig, args: argparse.Namespace) -> None:
    """A long-lived API token for a user (an upstream system's read-only account), printed once."""
    engine = db.open_engine(config.database_url)
    try:
        found = registry.user_with_hash(engine, args.user)
        if found is None:
            raise UsageError(f"no user {args.user}: add it first (loa-central user add)")
        token = new_secret(32)
        expires = registry.now() + timedelta(days=args.days) if args.days else None
        registry.add_token(engine, found[0].id, token, args.label, expires)
        registry.record_audit(engine, "loa-central", "token.add", args.user, {"label": args.label})
    finally:
        engine.dispose()
    print(token)  # the one time it is shown: only its hash is kept


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loa-central", description="Loa's thin central server")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check-config", help="validate the config file, then exit")
    init_parser = sub.add_parser("init", help="create the database, the signing key pair and the first admin")
    init_parser.add_argument("--admin", required=True, help="the first admin's user name")
    init_parser.add_argument("--password-file", type=Path, required=True, help="a file holding its password")
    device = sub.add_parser("device", help="boxes").add_subparsers(dest="action", required=True)
    add = device.add_parser("add", help="register a box and write what it needs into --out")
    add.add_argument("id", help="the box's device.id, e.g. xa-quang-son-01")
    for level in ("province", "district", "commune"):
        add.add_argument(f"--{level}", required=level != "district", help=f"the {level}'s unit id")
        add.add_argument(f"--{level}-name", help=f"the {level}'s name, when it is new (default: its id)")
    add.add_argument("--out", type=Path, required=True, help="where to write the box's files")
    add.add_argument("--box-dir", type=Path, default=Path("/etc/loa"), help="where they go on the box")
    device_cli.add_parsers(device)  # remove, rotate-password
    user = sub.add_parser("user", help="operators").add_subparsers(dest="action", required=True)
    user_parser = user.add_parser("add", help="add an operator scoped to a unit")
    user_parser.add_argument("name")
    user_parser.add_argument("--role", choices=registry.ROLES, default="operator")
    user_parser.add_argument("--unit", help="the unit it may act on (and below); none: every unit")
    user_parser.add_argument("--password-file", type=Path, required=True)
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    token_parser = token.add_parser("add", help="print a new API token for a user (e.g. an upstream system)")
    token_parser.add_argument("--user", required=True)
    token_parser.add_argument("--label", required=True, help="what it is for, e.g. so-tttt-quang-tri")
    token_parser.add_argument("--days", type=int, default=365, help="valid this many days; 0: no expiry")
    sub.add_parser("serve", help="run the API and the embedded broker")
    upstream_cli.add_parsers(sub)  # feeds add|list|pull
    retention.add_parser(sub)  # prune [--dry-run]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_central_config(args.config)
        if args.command == "feeds":
            return upstream_cli.run(config, args)
        if args.command == "prune":
            return retention.run(config, args)
        if args.command == "check-config":
            print(f"{args.config}: valid")
        elif args.command == "init":
            init(config, args.admin, args.password_file)
        elif args.command == "device" and args.action == "add":
            device_add(config, args)
        elif args.command == "device":
            device_cli.run(config, args)
        elif args.command == "user":
            user_add(config, args)
        elif args.command == "token":
            token_add(config, args)
        elif args.command == "serve":
            from central.server import serve  # FastAPI and uvicorn only for the server

            serve(config)
        return 0
    except LoaError as error:
        return report("loa-central", error)


if __name__ == "__main__":
    sys.exit(main())
