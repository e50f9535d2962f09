"""Upstream: programmes that newsrooms publish as RSS 2.0 or Atom feeds with audio enclosures, imported
into the audio library, where operators schedule them like their own audio.

``loa-central feeds add URL`` registers a feed; ``loa-central feeds pull`` fetches each feed and every
audio enclosure not imported yet.  An enclosure goes through the same store as an upload (the
first bytes must be MP3, WAV or OGG, its length readable, the size within ``audio.max_mb``), so
the library holds only audio the boxes can play, under its sha256 and named by the entry's title.
A feed that cannot be read, or an enclosure that is refused, is recorded with its reason and
tried again at the next pull; nothing else is lost.

Feeds are parsed by defusedxml (no DTD, no entities: a hostile feed cannot expand or reach files)
and the feed itself is read up to :data:`FEED_MAX_BYTES`.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from sqlalchemy import (
    Column,
    Engine,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from central import bulletins, db, registry
from central.audio_store import AudioRefused, AudioStore
from foundation.errors import LoaError, UsageError

logger = logging.getLogger(__name__)

FEED_MAX_BYTES = 5 * 1024 * 1024
TIMEOUT = 30.0
ATOM = "{http://www.w3.org/2005/Atom}"
AUDIO_SUFFIXES = (".mp3", ".wav", ".ogg", ".oga", ".opus")
USER = "upstream-feeds"  # who the audit log names for an import

feeds = Table(
    "upstream_feeds",
    db.metadata,
    Column("url", String(1000), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("added_at", db.UtcDateTime, nullable=False),
    Column("pulled_at", db.UtcDateTime, nullable=True),
    Column("error", Text, nullable=True),  # why the last pull failed, None when it worked
)

# One row per feed entry with audio: imported (audio_sha256) or not yet (error says why).
items = Table(
    "upstream_items",
    db.metadata,
    Column("feed_url", String(1000), nullable=False),
    Column("guid", String(1000), nullable=False),
    Column("title", String(300), nullable=False),
    Column("published", db.UtcDateTime, nullable=True),
    Column("audio_url", String(2000), nullable=False),
    Column("audio_sha256", String(db.SHA), nullable=True),
    Column("error", Text, nullable=True),
    Column("seen_at", db.UtcDateTime, nullable=False),
    PrimaryKeyConstraint("feed_url", "guid"),
)


class FeedError(LoaError, ValueError):
    """A feed that cannot be fetched or read; the message names the feed and says why."""


@dataclass(frozen=True)
class Entry:
    guid: str
    title: str
    published: datetime | None
    audio_url: str


@dataclass
class PullResult:
    url: str
    imported: list[str] = field(default_factory=list)  # titles
    known: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)


def create_tables(engine: Engine) -> None:
    feeds.create(engine, checkfirst=True)
    items.create(engine, checkfirst=True)


# -- reading a feed --------------------------------------------------------------------------------


def parse_feed(body: bytes, url: str) -> list[Entry]:
    """The entries of an RSS 2.0 or Atom document that carry audio; FeedError if it is neither."""
    try:
        root = fromstring(body)
    except DefusedXmlException as error:
        kind = type(error).__name__
        raise FeedError(f"feed {url}: refused: it declares a DTD or entities ({kind})") from None
    except (ParseError, ValueError) as error:
        raise FeedError(f"feed {url}: not well-formed XML ({type(error).__name__}: {error})"[:400]) from None
    if root.tag == "rss":
        found = [_rss_entry(item, url) for item in root.iterfind("channel/item")]
    elif root.tag == f"{ATOM}feed":
        found = [_atom_entry(entry, url) for entry in root.iterfind(f"{ATOM}entry")]
    else:
        raise FeedError(f"feed {url}: expected RSS 2.0 (<rss>) or Atom (<feed>), found <{root.tag[:80]}>")
    return [entry for entry in found if entry is not None]


def _text(element: Element, path: str) -> str:
    return " ".join((element.findtext(path) or "").split())


def _audio_url(href: str | None, kind: str | None, base: str) -> str | None:
    if not href:
        return None
    absolute = urljoin(base, href.strip())
    if urlsplit(absolute).scheme not in ("http", "https"):
        return None
    is_audio = (kind or "").lower().startswith("audio/")
    suffix = PurePosixPath(urlsplit(absolute).path).suffix.lower()
    return absolute if is_audio or suffix in AUDIO_SUFFIXES else None


def _rss_entry(item: Element, base: str) -> Entry | None:
    enclosure = item.find("enclosure")
    audio = None if enclosure is None else _audio_url(enclosure.get("url"), enclosure.get("type"), base)
    if audio is None:
        return None
    published = None
    if date := _text(item, "pubDate"):
        try:
            published = email.utils.parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            published = None
    title = _text(item, "title") or audio.rsplit("/", 1)[-1]
    return Entry(_text(item, "guid") or audio, title[:300], published, audio)


def _atom_entry(entry: Element, base: str) -> Entry | None:
    links = [link for link in entry.iterfind(f"{ATOM}link") if link.get("rel") == "enclosure"]
    found = (_audio_url(link.get("href"), link.get("type"), base) for link in links)
    audio = next((url for url in found if url is not None), None)
    if audio is None:
        return None
    published = None
    if date := (_text(entry, f"{ATOM}published") or _text(entry, f"{ATOM}updated")):
        try:
            published = datetime.fromisoformat(date.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            published = None
    title = _text(entry, f"{ATOM}title") or audio.rsplit("/", 1)[-1]
    return Entry(_text(entry, f"{ATOM}id") or audio, title[:300], published, audio)


def fetch_feed(url: str) -> bytes:
    try:
        with requests.get(url, timeout=TIMEOUT, stream=True) as answer:
            answer.raise_for_status()
            body = b""
            for chunk in answer.iter_content(1 << 16):
                body += chunk
                if len(body) > FEED_MAX_BYTES:
                    raise FeedError(f"feed {url}: larger than {FEED_MAX_BYTES // (1024 * 1024)} MB")
            return body
    except requests.RequestException as error:
        raise FeedError(f"feed {url}: cannot fetch ({type(error).__name__}: {error})"[:400]) from None


# -- importing -------------------------------------------------------------------------------------


def add_feed(engine: Engine, url: str, name: str | None, now: datetime) -> None:
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise UsageError(f"feed {url[:200]}: expected an http:// or https:// URL")
    create_tables(engine)
    with engine.begin() as conn:
        if conn.execute(select(feeds.c.url).where(feeds.c.url == url)).first() is None:
            conn.execute(insert(feeds).values(url=url, name=(name or url)[:200], added_at=now))


def feed_list(engine: Engine) -> list[Any]:
    create_tables(engine)
    with engine.connect() as conn:
        return list(conn.execute(select(feeds).order_by(feeds.c.name)).all())


def pull(engine: Engine, audio: AudioStore, url: str, now: datetime) -> PullResult:
    """Fetch one feed and import every audio entry not imported yet; FeedError if the feed is unreadable."""
    create_tables(engine)
    result = PullResult(url)
    try:
        entries = parse_feed(fetch_feed(url), url)
    except FeedError as error:
        _feed_done(engine, url, now, str(error))
        raise
    with engine.connect() as conn:
        done = set(conn.execute(select(items.c.guid).where(
            items.c.feed_url == url, items.c.audio_sha256.is_not(None))).scalars())  # fmt: skip
    for entry in entries:
        if entry.guid in done:
            result.known += 1
            continue
        sha, reason = _import(engine, audio, entry, now)
        _item_done(engine, url, entry, sha, reason, now)
        if sha is not None:
            result.imported.append(entry.title)
        else:
            result.failed.append((entry.title, reason or ""))
    _feed_done(engine, url, now, None)
    if result.imported:
        registry.record_audit(engine, USER, "upstream.import", url[:300], {"titles": result.imported[:50]})
    return result


def _import(engine: Engine, audio: AudioStore, entry: Entry, now: datetime) -> tuple[str | None, str | None]:
    try:
        with requests.get(entry.audio_url, timeout=TIMEOUT, stream=True) as answer:
            answer.raise_for_status()
            stored = audio.put(_chunks(answer), name=entry.title)
    except (requests.RequestException, AudioRefused) as error:
        reason = f"{entry.audio_url}: {type(error).__name__}: {error}"[:500]
        logger.warning("upstream: %s not imported: %s", entry.title, reason)
        return None, reason
    bulletins.register_audio(engine, stored, entry.title, USER, now)
    logger.info("upstream: imported %s (%s)", entry.title, stored.sha256[:12])
    return stored.sha256, None


def _chunks(answer: requests.Response) -> Iterator[bytes]:
    yield from answer.iter_content(1 << 16)


def _item_done(engine: Engine, url: str, entry: Entry, sha: str | None, error: str | None,
               now: datetime) -> None:  # fmt: skip
    values = {"title": entry.title, "published": entry.published, "audio_url": entry.audio_url[:2000],
              "audio_sha256": sha, "error": error, "seen_at": now}  # fmt: skip
    with engine.begin() as conn:
        where = (items.c.feed_url == url) & (items.c.guid == entry.guid[:1000])
        if conn.execute(select(items.c.guid).where(where)).first() is None:
            conn.execute(insert(items).values(feed_url=url, guid=entry.guid[:1000], **values))
        else:
            conn.execute(update(items).where(where).values(**values))


def _feed_done(engine: Engine, url: str, now: datetime, error: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(update(feeds).where(feeds.c.url == url).values(pulled_at=now, error=error))


def imported(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """What the feeds brought, newest first, as the library shows it."""
    create_tables(engine)
    query = select(items).order_by(items.c.seen_at.desc(), items.c.published.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
