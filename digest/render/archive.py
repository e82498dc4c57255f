"""The public archive of editions that went out: one entry per edition (its subject, when it went
out, its lead titles, its web version) and the Atom 1.0 feed of them (RFC 4287), built with
lxml, which escapes every text. Pure: the entries come in, the feed's bytes go out.

Addresses: the archive is ``<links base>/archive`` (every digest) and ``/archive/<digest>``
(one), their feeds the same plus ``.atom``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from lxml import etree

from digest.config import Settings
from digest.models import Edition
from digest.render.email import dateline, view_url

ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml"
# Lead titles in an entry's summary: the first teaser of each section, at most this many.
LEAD_TITLES = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One edition in the archive."""

    id: str  # a tag: URI, stable for ever (publication host, day it was made, edition id)
    edition_id: str
    digest_title: str
    title: str
    url: str
    sent_at: datetime
    date: str  # the day it went out, in the digest's timezone, as the email writes dates
    summary: str


def archive_path(digest: str | None = None) -> str:
    return "/archive" if digest is None else f"/archive/{quote(digest, safe='')}"


def feed_url(settings: Settings, digest: str | None = None) -> str:
    return f"{settings.links_base}{archive_path(digest)}.atom"


def archive_url(settings: Settings, digest: str | None = None) -> str:
    return f"{settings.links_base}{archive_path(digest)}"


def lead_titles(edition: Edition, limit: int = LEAD_TITLES) -> tuple[str, ...]:
    """The first title of each section, in the edition's order, at most ``limit``."""
    return tuple(s.teasers[0].title for s in edition.sections if s.teasers)[:limit]


def entry(
    edition: Edition, settings: Settings, *, sent_at: datetime, created_at: datetime
) -> Entry:
    digest = settings.digests[edition.digest]
    host = urlsplit(settings.publication.url).hostname or "localhost"
    local = sent_at.astimezone(ZoneInfo(digest.schedule.timezone))
    return Entry(
        id=f"tag:{host},{created_at.astimezone(UTC):%Y-%m-%d}:digest/{edition.id}",
        edition_id=edition.id,
        digest_title=digest.title,
        title=edition.subject or f"{digest.title} {edition.period}",
        url=view_url(edition, settings, None),
        sent_at=sent_at,
        date=dateline(local, settings.publication.lang or "en"),
        summary=" · ".join(lead_titles(edition)),
    )


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_feed(
    entries: list[Entry],
    *,
    title: str,
    self_url: str,
    page_url: str,
    lang: str,
    author: str,
    updated: datetime,
) -> bytes:
    """The Atom document: ``updated`` is the feed's when it has no entry (else the newest's)."""

    def sub(parent: etree._Element, tag: str, text: str = "", **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text:
            el.text = text
        return el

    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    feed.set("{http://www.w3.org/XML/1998/namespace}lang", lang)
    sub(feed, "id", self_url)
    sub(feed, "title", title)
    sub(feed, "updated", _stamp(max((e.sent_at for e in entries), default=updated)))
    sub(sub(feed, "author"), "name", author)
    sub(feed, "link", rel="self", type=ATOM_TYPE, href=self_url)
    sub(feed, "link", rel="alternate", type="text/html", href=page_url)
    for e in entries:
        item = sub(feed, "entry")
        sub(item, "id", e.id)
        sub(item, "title", e.title)
        sub(item, "published", _stamp(e.sent_at))
        sub(item, "updated", _stamp(e.sent_at))
        sub(item, "link", rel="alternate", type="text/html", href=e.url)
        sub(item, "category", term=e.digest_title)
        sub(item, "summary", e.summary or e.title)
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="utf-8"))
