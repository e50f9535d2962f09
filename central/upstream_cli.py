"""``loa-central feeds ...``: what a technician types for upstream feeds (central.upstream).

    loa-central --config FILE feeds add URL [--name NAME]
    loa-central --config FILE feeds list
    loa-central --config FILE feeds pull [URL ...]      (every registered feed by default)

``feeds pull`` exits 1 if a feed could not be read or an enclosure was refused (each is said), so a
systemd timer running it shows the failure.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from central import db, upstream
from central.audio_store import AudioStore
from central.config import CentralServerConfig
from foundation.errors import LoaError, UsageError


def add_parsers(sub: Any) -> None:
    feeds = sub.add_parser("feeds", help="upstream feeds (RSS 2.0 / Atom with audio enclosures)")
    actions = feeds.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register a feed")
    add.add_argument("url")
    add.add_argument("--name", help="what operators see (default: the URL)")
    actions.add_parser("list", help="the feeds and how their last pull went")
    pull = actions.add_parser("pull", help="import what the feeds offer that is not imported yet")
    pull.add_argument("urls", nargs="*", metavar="URL", help="these feeds only (default: every feed)")


def run(config: CentralServerConfig, args: argparse.Namespace) -> int:
    engine = db.open_engine(config.database_url)
    try:
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
