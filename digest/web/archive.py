"""The public archive: the editions that went out, newest first, each linking its web version,
and their Atom feed, for every digest or for one.

- ``/archive`` and ``/archive/<digest>``: the pages, ``PER_PAGE`` editions each (``?page=2``, …);
- ``/archive.atom`` and ``/archive/<digest>.atom``: the feeds, the newest ``FEED_ENTRIES``.

Only editions that went out are listed (sent, or sending again after they were): never a draft,
an approved or rejected one, one whose first sending is still under way, nor any personal link
(an entry links the web version, the same for everyone). Addresses in them are the public base
URL's, never the request's Host. Both answer ``ETag`` and (the feeds) ``Last-Modified``, and a
repeat with ``If-None-Match`` or ``If-Modified-Since`` gets a 304.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from digest.render.archive import (
    ATOM_TYPE,
    Entry,
    archive_path,
    atom_feed,
    entry,
    feed_url,
)
from digest.render.archive import archive_url as page_url
from digest.web.site import Site, SiteDep

PER_PAGE = 50
FEED_ENTRIES = 50
# Past this, a page number is not one a reader followed: refused before any query.
MAX_PAGE_DIGITS = 6
CACHE = "public, max-age=300"

router = APIRouter()


def _entries(site: Site, digest: str | None, *, limit: int, offset: int = 0) -> list[Entry]:
    digests = list(site.settings.digests) if digest is None else [digest]
    return [
        entry(s.edition, site.settings, sent_at=s.sent_at, created_at=s.created_at)
        for s in site.store.sent_editions(digests, limit=limit, offset=offset)
    ]


def _known(site: Site, digest: str | None) -> bool:
    return digest is None or digest in site.settings.digests


def _page_number(page: str | None) -> int | None:
    if page is None:
        return 1
    if not page.isdigit() or len(page) > MAX_PAGE_DIGITS or int(page) < 1:
        return None
    return int(page)


def _cached(
    request: Request, body: bytes, media_type: str, last_modified: datetime | None
) -> Response:
    """``body`` with its validators, or a 304 when the request's validators still match it."""
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": CACHE}
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)
    if _not_modified(request, etag, last_modified):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _not_modified(request: Request, etag: str, last_modified: datetime | None) -> bool:
    # RFC 9110 13.2.2: If-None-Match, when present, decides; If-Modified-Since only without it.
    if (match := request.headers.get("if-none-match")) is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since is None or last_modified is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        return False
    return last_modified.replace(microsecond=0) <= when


# Feeds -------------------------------------------------------------------------------------------
def _feed(request: Request, site: Site, digest: str | None) -> Response:
    if not _known(site, digest):
        return site.nothing_here()
    settings = site.settings
    pub = settings.publication
    entries = _entries(site, digest, limit=FEED_ENTRIES)
    title = pub.name if digest is None else f"{settings.digests[digest].title} · {pub.name}"
    body = atom_feed(
        entries,
        title=title,
        self_url=feed_url(settings, digest),
        page_url=page_url(settings, digest),
        lang=pub.lang or "en",
        author=pub.name,
        updated=site.clock(),
    )
    newest = entries[0].sent_at if entries else None
    return _cached(request, body, ATOM_TYPE, newest)


@router.api_route("/archive.atom", methods=["GET", "HEAD"])
def archive_feed(request: Request, site: SiteDep) -> Response:
    return _feed(request, site, None)


# Declared before the digest's page: its path would take "<digest>.atom" as a digest key.
@router.api_route("/archive/{digest}.atom", methods=["GET", "HEAD"])
def digest_feed(request: Request, site: SiteDep, digest: str) -> Response:
    return _feed(request, site, digest)


# Pages -------------------------------------------------------------------------------------------
def _page(request: Request, site: Site, digest: str | None, page: str | None) -> Response:
    number = _page_number(page)
    if number is None or not _known(site, digest):
        return site.nothing_here()
    settings = site.settings
    digests = list(settings.digests) if digest is None else [digest]
    total = site.store.count_sent_editions(digests)
    pages = max(1, -(-total // PER_PAGE))
    if number > pages:
        return site.nothing_here()
    entries = _entries(site, digest, limit=PER_PAGE, offset=(number - 1) * PER_PAGE)
    path = archive_path(digest)
    heading = "Archive" if digest is None else f"{settings.digests[digest].title}: archive"
    rendered = site.pages.render(
        "archive",
        title=heading,
        heading=heading,
        entries=entries,
        feed_url=feed_url(settings, digest),
        digests=[(key, d.title, archive_path(key)) for key, d in settings.digests.items()],
        current=digest,
        all_path=archive_path(),
        newer=None if number == 1 else (path if number == 2 else f"{path}?page={number - 1}"),
        older=None if number == pages else f"{path}?page={number + 1}",
        number=number,
        pages=pages,
    )
    return _cached(request, bytes(rendered.body), "text/html; charset=utf-8", None)


@router.api_route("/archive", methods=["GET", "HEAD"])
def archive(request: Request, site: SiteDep, page: str | None = None) -> Response:
    return _page(request, site, None, page)


@router.api_route("/archive/{digest}", methods=["GET", "HEAD"])
def digest_archive(
    request: Request, site: SiteDep, digest: str, page: str | None = None
) -> Response:
    return _page(request, site, digest, page)
