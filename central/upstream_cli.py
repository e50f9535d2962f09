"""``loa-central feeds ...`` and ``loa-central token add``: what a technician types for upstream systems.

    loa-central --config FILE feeds add URL [--name NAME]
    loa-central --config FILE feeds list
    loa-central --config FILE feeds pull [URL ...]      (every registered feed by default)
    loa-central --config FILE token add USER --out FILE [--days N]

``token add`` gives a read-only user (role ``upstream`` or ``viewer``) a long-lived API token, written
to a file readable by its owner alone (it is never printed): the province's or the Ministry's
system reads the registry and the reports with it, and can change nothing.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from central import db, registry, upstream
from central.audio_store import AudioStore
from central.config import CentralServerConfig
from central.files import write_atomically
from central.passwords import new_secret
from foundation.errors import LoaError, UsageError

READ_ONLY = ("upstream", "viewer")


def add_parsers(sub: Any) -> None:
    feeds = sub.add_parser("feeds", help="upstream feeds (RSS 2.0 / Atom with audio enclosures)")
    actions = feeds.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register a feed")
    add.add_argument("url")
    add.add_argument("--name", help="what operators see (default: the URL)")
    actions.add_parser("list", help="the feeds and how their last pull went")
    pull = actions.add_parser("pull", help="import what the feeds offer that is not imported yet")
    pull.add_argument("urls", nargs="*", metavar="URL", help="these feeds only (default: every feed)")
    token = sub.add_parser("token", help="API tokens for upstream systems")
    tokens = token.add_subparsers(dest="action", required=True)
    token_add = tokens.add_parser("add", help="a long-lived read-only token for an upstream or viewer user")
    token_add.add_argument("user")
    token_add.add_argument("--out", type=Path, required=True, help="the file to write the token into (0600)")
    token_add.add_argument("--days", type=int, default=365, help="valid for this many days (%(default)s)")


def run(config: CentralServerConfig, args: argparse.Namespace) -> int:
    engine = db.open_engine(config.database_url)
    try:
        if args.command == "token":
            return _token(engine, args)
        return _feeds(config, engine, args)
    finally:
        engine.dispose()


def _feeds(config: CentralServerConfig, engine: Any, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    if args.action == "add":
        upstream.add_feed(engine, args.url, args.name, now)
        print(f"feed {args.url} added")
        return 0
    known = upstream.feed_list(engine)
    if args.action == "list":
        for feed in known:
            pulled = f"pulled {feed.pulled_at:%Y-%m-%d %H:%M} UTC" if feed.pulled_at else "never pulled"
            state = f"failed: {feed.error}" if feed.error else pulled
            print(f"{feed.url}\t{feed.name}\t{state}")
        return 0
    urls = args.urls or [feed.url for feed in known]
    if not urls:
        raise UsageError("no feed registered: loa-central feeds add URL first")
    audio, failures = AudioStore(config.audio_dir, config.audio_max_bytes), 0
    for url in urls:
        try:
            result = upstream.pull(engine, audio, url, now)
        except LoaError as error:
            print(f"{url}: {error}")
            failures += 1
            continue
        print(f"{url}: {len(result.imported)} imported, {result.known} already there, "
              f"{len(result.failed)} refused")  # fmt: skip
        for title, reason in result.failed:
            print(f"  not imported: {title}: {reason}")
        failures += bool(result.failed)
    return 1 if failures else 0


def _token(engine: Any, args: argparse.Namespace) -> int:
    found = registry.user_with_hash(engine, args.user)
    if found is None:
        raise UsageError(f"no user {args.user}: add it first (loa-central user add {args.user} "
                         "--role upstream)")  # fmt: skip
    user = found[0]
    if user.role not in READ_ONLY:
        raise UsageError(f"{user.name} is a {user.role}: long-lived tokens are for read-only users "
                         f"({' or '.join(READ_ONLY)}); operators sign in")  # fmt: skip
    if not 1 <= args.days <= 3660:
        raise UsageError(f"--days {args.days}: expected 1 to 3660")
    token = new_secret(32)
    write_atomically(args.out, (token + "\n").encode(), mode=0o600)
    registry.add_token(engine, user.id, token, "upstream", datetime.now(UTC) + timedelta(days=args.days))
    registry.record_audit(engine, "loa-central", "token.add", user.name, {"days": args.days})
    print(f"a read-only token for {user.name}, valid {args.days} days, written to {args.out}")
    return 0
