"""The gather step: fetch a source (conditionally, within the fetch slots), parse it (big feeds in
worker processes), complete its thin items from their pages, and store its articles.

Each source is reported, never raised past a section: a failing source is recorded (for health
reports) and the others go on.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from digest.compose.teasers import lede
from digest.config import Settings
from digest.errors import DigestError, LocatedError
from digest.factory import make_fetcher
from digest.gather.feeds import ParsedFeed, canonical_url, parse_feed, parse_feed_draft
from digest.gather.feeds.normalise import cap_article
from digest.gather.http import Fetcher, FetchResult, origin, page_url, read_file
from digest.gather.pages import extract_page
from digest.gather.sections import articles_for_section
from digest.models import Article
from digest.steps import heap
from digest.steps.parse_pool import ParsePool, ParseWorkerError
from digest.steps.progress import Progress, ProgressHook, report_progress
from digest.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageFailure:
    """An article page that could not be read: the article's link, what happened in a few
    words (to count by: "HTTP 404", "cannot resolve host") and the whole story in one line."""

    url: str
    reason: str
    detail: str


@dataclass(frozen=True)
class SourceReport:
    """What gathering one source did. ``warnings`` are about the feed (the report names the
    source, so they do not); ``page_failures`` list the article pages not read and
    ``left_thin`` the thin items over the page fetch limit."""

    source: str
    location: str
    status: str  # "updated", "not-modified", "failed"
    entries: int = 0
    new_ids: frozenset[str] = frozenset()
    error: str = ""
    warnings: tuple[str, ...] = ()
    articles: tuple[Article, ...] = field(default=(), repr=False)
    page_failures: tuple[PageFailure, ...] = ()
    left_thin: int = 0

    @property
    def new(self) -> int:
        return len(self.new_ids)

    @property
    def troubled(self) -> bool:
        """Whether the line deserves a warning: the source failed or left something out."""
        return self.status == "failed" or bool(
            self.warnings or self.page_failures or self.left_thin
        )

    def notes(self) -> str:
        """What went wrong short of failing, counted ('' when nothing did): "12 article pages
        not read (cannot resolve host: 9, HTTP 404: 3); 2 items left thin (page fetch limit)"."""
        parts = []
        if self.page_failures:
            kinds = Counter(f.reason for f in self.page_failures)
            counted = ", ".join(f"{reason}: {n}" for reason, n in kinds.most_common())
            pages = len(self.page_failures)
            parts.append(f"{pages} article page{'s' if pages != 1 else ''} not read ({counted})")
        if self.left_thin:
            parts.append(f"{self.left_thin} item(s) left thin (page fetch limit reached)")
        if self.warnings:
            parts.append(f"{len(self.warnings)} feed warning(s)")
        return "; ".join(parts)

    def line(self) -> str:
        """The one log line for this source: what it gave, with counts of what went wrong."""
        head = f"source {self.source!r}: "
        if self.status == "failed":
            return f"{head}failed: {self.error}"
        if self.status == "not-modified":
            return f"{head}not modified since the last gather"
        notes = self.notes()
        return f"{head}{self.entries} articles, {self.new} new" + (f"; {notes}" if notes else "")

    def details(self) -> list[str]:
        """One line per feed warning and per page not read (for debug logs)."""
        return [*self.warnings, *(f.detail for f in self.page_failures)]


def source_location(settings: Settings, key: str) -> str:
    src = settings.sources[key]
    return src.url or str(settings.resolve(src.path))


class FetchSlots:
    """At most ``total`` fetches at once, and at most ``per_host`` to any one host: feeds of
    one publication usually share a host, and hammering it gets a crawler blocked."""

    def __init__(self, total: int, per_host: int) -> None:
        self._total = threading.BoundedSemaphore(total)
        self._per_host = per_host
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            slot = self._hosts.setdefault(host, threading.BoundedSemaphore(self._per_host))
        # The host's slot first: a thread waiting for a busy host must not sit on one of the
        # shared slots that fetches from other hosts could use.
        with slot, self._total:
            yield


_SLOTS: dict[tuple[int, int], FetchSlots] = {}
_SLOTS_LOCK = threading.Lock()


def fetch_slots(settings: Settings) -> FetchSlots:
    """The process-wide slots for these limits (shared by every task of a run)."""
    key = (settings.http.concurrency, settings.http.per_host)
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(key, FetchSlots(*key))


_IN_FLIGHT: dict[int, threading.BoundedSemaphore] = {}


def sources_in_flight(settings: Settings) -> threading.BoundedSemaphore:
    """The process-wide limit on sources being gathered at once (``http.concurrency``): a
    flow submits every source of a section at once, each in a thread of its own, and a source
    holds its body, then its parsed articles, until they are stored."""
    with _SLOTS_LOCK:
        return _IN_FLIGHT.setdefault(
            settings.http.concurrency, threading.BoundedSemaphore(settings.http.concurrency)
        )


# Parsing is CPU work: under the GIL, threads fetching in parallel still parse one at a time.
# Big feeds go to worker processes instead (digest.steps.parse_pool: they import the parser
# only); small ones are not worth the round trip. The pool has a worker fewer than there are
# cores: when all are busy the fetching thread parses, so this process is a parser too.
POOL_MIN_BYTES = 64_000
PARSE_TIMEOUT = 120.0  # seconds; a 5 MB feed parses in about two
# A feed this big is parsed by a worker only (waiting for one): parsing takes many times its
# size in memory, and the gathering process should not swell by that much.
WORKER_ONLY_BYTES = 1_000_000
_POOL: ParsePool | None = None
_POOL_LOCK = threading.Lock()


def parse_workers(settings: Settings) -> int:
    """How many worker processes parse big feeds (0: none, the fetching threads do): the
    configured number (1 meaning none), else one fewer than there are cores."""
    configured = settings.http.parse_workers
    if configured:
        return 0 if configured == 1 else configured
    return (os.cpu_count() or 1) - 1


def _parse_pool(workers: int) -> ParsePool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ParsePool(workers)
        return _POOL


def parse(
    settings: Settings,
    body: bytes,
    *,
    source: str,
    url: str,
    now: datetime,
    content_type: str | None,
) -> ParsedFeed:
    """``parse_feed``, in a worker process when the feed is big and a worker is free."""
    workers = parse_workers(settings)
    options: dict[str, Any] = {
        "source": source,
        "url": url,
        "now": now,
        "content_type": content_type,
        "max_items": settings.http.max_feed_items,
    }
    if workers and len(body) >= POOL_MIN_BYTES:
        try:
            # Either way a DraftFeed (what a worker answers), made a ParsedFeed here.
            draft = _parse_pool(workers).parse(
                body,
                options,
                PARSE_TIMEOUT,
                here=lambda: parse_feed_draft(body, **options),
                here_ok=len(body) < WORKER_ONLY_BYTES,
            )
            return draft.parsed()
        except ParseWorkerError as e:
            # A worker died (killed, out of memory) or hung: it is gone, the next big feed
            # starts a fresh one, and this one is parsed here.
            log.warning("feed %r: %s; parsing it in the gathering process", source, e)
    return parse_feed(body, **options)


def shutdown_parse_pool() -> None:
    """Stop the worker processes (they start again when needed)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


class SourceCounter:
    """Counts sources as they finish and tells a progress hook (from any thread)."""

    def __init__(self, task: str, total: int, progress: ProgressHook | None) -> None:
        self.task, self.total, self.progress = task, total, progress
        self.done = self.failed = 0
        self._lock = threading.Lock()

    def finished(self, r: SourceReport) -> None:
        with self._lock:
            self.done += 1
            self.failed += r.status == "failed"
            event = Progress(self.task, self.done, self.total, note=r.source, failed=self.failed)
        report_progress(self.progress, event)


def gather_sources(
    settings: Settings,
    store: Store | None,
    keys: Sequence[str],
    *,
    now: datetime,
    progress: ProgressHook | None = None,
) -> list[SourceReport]:
    """Gather many sources at once (``http.concurrency`` threads, big feeds parsed in worker
    processes); a failing source is recorded and reported, never raised. ``progress`` hears
    of each source as it finishes. With a store, each source's articles are stored as it
    finishes and the reports carry none (without one, they carry them all)."""
    heap.tune()  # before the threads start: each would otherwise have an arena of its own
    counter = SourceCounter("gather", len(keys), progress)

    def one(key: str) -> SourceReport:
        try:
            r = fetch_source(settings, store, key, now=now)
        except Exception as e:  # every failure is reported, none stops the others
            r = record_source_failure(settings, store, key, e, now=now)
        counter.finished(r)
        # Stored as each source finished: the reports do not hold every source's articles.
        return replace(r, articles=()) if store else r

    with ThreadPoolExecutor(max_workers=settings.http.concurrency) as threads:
        return list(threads.map(one, keys))


def fetch_source(
    settings: Settings, store: Store | None, key: str, *, now: datetime
) -> SourceReport:
    """:func:`gather_source` with a fetcher of its own: sources are fetched in parallel threads
    and a fetcher's session is not thread-safe. At most ``http.concurrency`` sources are
    gathered at once in this process; the others wait their turn."""
    with sources_in_flight(settings), make_fetcher(settings) as fetcher:
        return gather_source(settings, store, fetcher, key, now=now)


def fetch_source_for_section(
    settings: Settings, store: Store | None, key: str, *, now: datetime
) -> SourceReport:
    """:func:`fetch_source` for :func:`gather_section`: with a store the articles are stored,
    and the report's keep only what a section's filters and counts read (no summary, content
    or image), because reports wait for their section to read them and the whole articles of
    every source would otherwise wait with them. Without one (a dry run) they are whole."""
    report = fetch_source(settings, store, key, now=now)
    if store is None:
        return report
    return replace(report, articles=tuple(map(headline, report.articles)))


def headline(article: Article) -> Article:
    """``article`` without its summary, content and image (what sections filter on stays)."""
    return article.model_copy(update={"summary_html": "", "content_html": "", "image": None})


def gather_source(
    settings: Settings,
    store: Store | None,
    fetcher: Fetcher,
    key: str,
    *,
    now: datetime,
) -> SourceReport:
    """Fetch one source (conditionally), parse it and store its articles.

    With ``store=None`` nothing is read or recorded (dry runs): the fetch is unconditional and
    the parsed articles come back in the report. Raises FetchError or FeedError; the caller
    decides about retries and then calls :func:`record_source_failure`.
    """
    src = settings.sources[key]
    location = source_location(settings, key)
    state = store.source_state(key) if store else None
    if src.path:
        result: FetchResult = read_file(Path(location), settings.http.max_bytes)
    else:
        same_url = state is not None and state.url == location
        with fetch_slots(settings).hold(location):
            result = fetcher.fetch(
                location,
                etag=state.etag if state and same_url else None,
                last_modified=state.last_modified if state and same_url else None,
                allow_private=src.local,
            )
    if result.status == 304:
        if store:
            store.record_fetch_success(
                key, location, etag=result.etag, last_modified=result.last_modified, now=now
            )
        return SourceReport(key, location, "not-modified")
    parsed = parse(
        settings,
        result.body,
        source=key,
        url=result.url,
        now=now,
        content_type=result.content_type,
    )
    result = replace(result, body=b"")  # the body is not needed past parsing
    articles, warnings = list(parsed.articles), list(parsed.warnings)
    del parsed
    # Paging is for URLs; "first" means this source never succeeded before.
    first_gather = not src.path and (state is None or state.last_success_at is None)
    if src.backfill_pages and first_gather:
        articles += backfill(settings, fetcher, key, result.url, articles, warnings, now=now)
    fetch_pages = src.fetch_pages if src.fetch_pages is not None else bool(src.url)
    thin = ThinResult(articles)
    if fetch_pages and settings.http.max_page_fetches:
        thin = fill_thin(settings, store, fetcher, key, articles)
    new: set[str] = set()
    done = SourceReport(
        key,
        location,
        "updated",
        entries=len(thin.articles),
        warnings=tuple(warnings),
        articles=tuple(thin.articles),
        page_failures=tuple(thin.failures),
        left_thin=thin.left_thin,
    )
    if store:
        new = store.save_articles(done.articles, now=now)
        store.record_fetch_success(
            key,
            location,
            etag=result.etag,
            last_modified=result.last_modified,
            now=now,
            note=source_note(done),
        )
    return replace(done, new_ids=frozenset(new))


# What ``digest sources`` shows of a gather that worked but left something out: the counts,
# then the pages not read, at most this many.
NOTE_PAGES = 20


def source_note(r: SourceReport) -> str | None:
    """What to remember of a source's gather that worked but left something out (shown by
    ``digest sources``): the counts, then each warning and page not read (the first
    ``NOTE_PAGES``); None when nothing was."""
    notes = r.notes()
    if not notes:
        return None
    details = r.details()
    lines = [notes, *details[:NOTE_PAGES]]
    if len(details) > NOTE_PAGES:
        lines.append(f"… and {len(details) - NOTE_PAGES} more")
    return "\n".join(lines)


def backfill(
    settings: Settings,
    fetcher: Fetcher,
    key: str,
    url: str,
    first: Sequence[Article],
    warnings: list[str],
    *,
    now: datetime,
) -> list[Article]:
    """Older pages of a paged feed, read once on the source's first gather.

    Stops at the configured number of pages, at a page that brings nothing new (a CMS that
    ignores the parameter serves page 1 again), or at the first failure (a warning).
    """
    src = settings.sources[key]
    seen = {a.id for a in first}
    older: list[Article] = []
    # ``url`` is where the feed ended up; the private licence stays with the source's origin.
    private_ok = src.local and origin(url) == origin(src.url)
    for page in range(2, src.backfill_pages + 2):
        target = page_url(url, src.page_param, page)
        try:
            with fetch_slots(settings).hold(target):
                result = fetcher.fetch(target, allow_private=private_ok)
            parsed = parse(
                settings,
                result.body,
                source=key,
                url=result.url,
                now=now,
                content_type=result.content_type,
            )
        except DigestError as e:
            warnings.append(f"feed {key!r}: backfill stopped at page {page}: {e}")
            break
        fresh = [a for a in parsed.articles if a.id not in seen]
        if not fresh:
            break
        seen.update(a.id for a in fresh)
        older += fresh
    return older


# Below this many characters of lede an item is "thin": a title and a link, or a teaser stub.
THIN_CHARS = 80


def is_thin(article: Article) -> bool:
    """Whether the feed gave too little of the article's own text to make a teaser."""
    text = lede(article, max_paragraphs=2, budget=10_000)
    return sum(len(p) for p in text) < THIN_CHARS


@dataclass
class ThinResult:
    """The articles after :func:`fill_thin`, the pages it could not read and how many thin
    items it left for lack of page fetches."""

    articles: list[Article]
    failures: list[PageFailure] = field(default_factory=list)
    left_thin: int = 0


def page_failure(url: str, error: DigestError) -> PageFailure:
    """An article page not read: ``url`` is the article's link; the error names where it
    failed (a redirect may have taken the fetch elsewhere), said once."""
    if isinstance(error, LocatedError) and error.url:
        where = url if error.url == url else f"{url} (at {error.url})"
        return PageFailure(url, error.reason, f"article page {where}: {error.detail}")
    return PageFailure(url, "failed", f"article page {url}: {error}")


def fill_thin(
    settings: Settings,
    store: Store | None,
    fetcher: Fetcher,
    key: str,
    articles: list[Article],
) -> ThinResult:
    """Complete thin items from their article pages (same safe fetch), each page once.

    Only an article seen for the first time has its page fetched: one already stored keeps
    what its first fetch gave (a lede and the page's URL, or nothing when that page failed).
    At most ``http.max_page_fetches`` pages are fetched per source and run. A page that fails
    leaves the item as the feed gave it, and is counted by what happened to it.
    """
    thin = [a for a in articles if is_thin(a)]
    out = ThinResult(articles)
    if not thin:
        return out
    stored = store.articles_by_id([a.id for a in thin]) if store else {}
    src = settings.sources[key]
    # A "local" source may sit on a private address; the links in it get no such licence,
    # except to that same origin (an intranet CMS linking to itself): same scheme, host and
    # port, so a link to another port of the same machine is checked as a public fetch. The
    # fetch carries the licence to redirect hops on that origin only.
    own_origin = origin(src.url) if src.local and src.url else None
    done: dict[str, Article] = {}
    budget = settings.http.max_page_fetches
    for a in thin:
        known = stored.get(a.id)
        if known is not None:
            done[a.id] = a.model_copy(
                update={
                    "content_html": known.content_html,
                    "image": a.image or known.image,
                    "url": known.url,
                }
            )
            continue
        if budget <= 0:
            out.left_thin += 1
            continue
        budget -= 1
        private_ok = own_origin is not None and origin(a.url) == own_origin
        try:
            with fetch_slots(settings).hold(a.url):
                page = fetcher.fetch(a.url, allow_private=private_ok)
            extract = extract_page(page.body, url=page.url)
        except DigestError as e:
            out.failures.append(page_failure(a.url, e))
            continue
        body = "".join(f"<p>{html.escape(p)}</p>" for p in extract.paragraphs)
        # The page's own address, after redirects, is the article's canonical URL (the id
        # stays as it was: it came from the guid or the feed's link).
        done[a.id] = cap_article(
            a.model_copy(
                update={
                    "content_html": body,
                    "image": a.image or extract.image,
                    "url": canonical_url(page.url),
                }
            )
        )
    out.articles = [done.get(a.id, a) for a in articles]
    return out


def record_source_failure(
    settings: Settings, store: Store | None, key: str, error: BaseException, *, now: datetime
) -> SourceReport:
    """Remember a source's failure (for health reports) and say what happened."""
    location = source_location(settings, key)
    message = str(error) if isinstance(error, DigestError) else f"{type(error).__name__}: {error}"
    if store:
        store.record_fetch_failure(key, location, error=message, now=now)
    return SourceReport(key, location, "failed", error=message)


# A section -----------------------------------------------------------------------------------


@dataclass
class SectionGathered:
    """What gathering one section did: its articles, how many are new, each source's report.

    ``failed`` names each failing source with its error; ``no_working_source``: every source
    of the section failed, so its news is missing (a failure, where some failing is a warning).
    """

    section: str
    articles: int = 0
    new: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    no_working_source: bool = False

    def problem(self) -> str:
        """One line on what failed ('' when every source worked)."""
        if self.no_working_source:
            return (
                f"section {self.section!r}: no working source, all {len(self.sources)} "
                f"failed: {'; '.join(self.failed)}"
            )
        if self.failed:
            return (
                f"section {self.section!r}: {len(self.failed)} of {len(self.sources)} "
                f"source(s) failed, gathered from the others: {'; '.join(self.failed)}"
            )
        return ""


class PendingReport(Protocol):
    """A source's report on its way (a future: a thread's, or a Prefect task's)."""

    def result(self) -> SourceReport: ...


def gather_section(
    settings: Settings,
    store: Store | None,
    section: str,
    *,
    now: datetime,
    submit: Callable[[str], PendingReport],
    logger: logging.Logger | logging.LoggerAdapter[Any] = log,
    progress: ProgressHook | None = None,
) -> tuple[SectionGathered, list[Article]]:
    """Gather every source of ``section`` and keep the articles that belong to it.

    ``submit(key)`` starts one source's :func:`fetch_source_for_section` (every source is
    started before any result is read); a source that fails is recorded and reported, never
    raised. Some failing is a warning; all failing sets ``no_working_source`` (the caller fails
    the run). Each source is one line in the log (a warning when it left something out, with
    counts), its details at debug level; ``progress`` hears of each source as it is read.
    """
    out = SectionGathered(section)
    found: list[Article] = []
    sec = settings.sections[section]
    futures = {key: submit(key) for key in sec.sources}
    counter = SourceCounter(f"gather {section}", len(futures), progress)
    for key, fut in futures.items():
        try:
            report = fut.result()
        except Exception as e:  # every failure is reported, none stops the others
            report = record_source_failure(settings, store, key, e, now=now)
            logger.error("%s", report.line())
        else:
            logger.log(logging.WARNING if report.troubled else logging.INFO, "%s", report.line())
            for detail in report.details():
                logger.debug("%s", detail)
        counter.finished(report)
        if report.status == "failed":
            out.failed.append(f"{key}: {report.error}")
        mine = articles_for_section(report.articles, section, sec, key)
        found.extend(mine)
        out.articles += len(mine)
        new_here = sum(a.id in report.new_ids for a in mine)
        out.new += new_here
        out.sources.append(
            {
                "source": key,
                "status": report.status,
                "entries": report.entries,
                "new": report.new,
                "new_in_section": new_here,
                "error": report.error,
            }
        )
    out.no_working_source = bool(out.sources) and len(out.failed) == len(out.sources)
    if out.failed and not out.no_working_source:
        logger.warning("%s", out.problem())
    return out, found
