"""Click analytics: recording a click on an edition's link, and an edition's clicks as editors
read them (the web page, ``digest stats``, the Prefect summary a day after sending).

What is recorded, per edition and article, is two numbers: clicks by readers, and requests
taken for link scanners and prefetchers (``filtered``). A request is a scanner's when it is a
HEAD, when its User-Agent contains one of ``analytics.scanner_agents``, or when it comes before
the edition was sent or within ``analytics.scanner_window_seconds`` after (security gateways
fetch every link of a message as it arrives). Repeated clicks by one reader on one link count
once a day: the visitor is a SHA-256 of a random salt, the client's address and User-Agent and
the link; the salt is made each UTC day and held only in the web app's memory, so the stored
hash cannot be turned back into an address, and a day's hashes are deleted the next day. Who
clicked is not recorded, unless the operator turns on per-subscriber analytics for the digest
(``analytics.per_subscriber``; the email's footer then says so): a counted click on a link that
names its subscriber (``digest.render.clicks.reader_part``) is kept per (edition, article,
subscriber) while they stay subscribed, and editors see only how many subscribers clicked each
article (``clickers``). The web app writes clicks on a thread of its own, in batches
(``ClickRecorder``), after the redirect has been answered.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.config import Settings
from digest.render.clicks import ClickTarget, per_subscriber
from digest.store import ClickRow, Store

log = logging.getLogger(__name__)

# How long after sending an edition's click summary is made.
SUMMARY_AFTER = timedelta(hours=24)


class Visitors:
    """The day's salt and the visitor hash made with it (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day = ""
        self._salt = b""

    def key(
        self, day: str, client: str, agent: str, target: ClickTarget, subscriber: int = 0
    ) -> str:
        """``subscriber``: the one a personal link names, so that two subscribers behind one
        address and browser are two visitors."""
        with self._lock:
            if day != self._day:
                self._day, self._salt = day, secrets.token_bytes(32)
            salt = self._salt
        parts: tuple[str, ...] = (client, agent, target.edition_id, target.article_id, target.url)
        if subscriber:
            parts += (str(subscriber),)
        return hashlib.sha256(salt + "\0".join(parts).encode("utf-8", "replace")).hexdigest()


def scanner_reason(settings: Settings, method: str, agent: str) -> str:
    """Why a request is a scanner's from what it says of itself ("" when it does not look so)."""
    if method.upper() == "HEAD":
        return "HEAD request"
    lowered = agent.lower()
    for pattern in settings.analytics.scanner_agents:
        if pattern and pattern.lower() in lowered:
            return f"agent matches {pattern!r}"
    return ""


@dataclass(frozen=True, slots=True)
class Click:
    """A click as the web app saw it."""

    target: ClickTarget
    method: str
    agent: str
    client: str
    at: datetime
    # The subscriber a personal link names (its signature checked), 0 for none.
    subscriber_id: int = 0


def record_clicks(
    settings: Settings, store: Store, clicks: list[Click], visitors: Visitors, *, forget: bool
) -> int:
    """Record ``clicks`` in one transaction; how many counted as readers'. ``forget``: delete
    the visitor hashes of days before the last click's first."""
    window = timedelta(seconds=settings.analytics.scanner_window_seconds)
    editions: dict[str, tuple[str, datetime | None] | None] = {}
    rows = []
    for click in clicks:
        edition_id = click.target.edition_id
        if edition_id not in editions:
            editions[edition_id] = store.click_edition(edition_id)
        found = editions[edition_id]
        if found is None:
            continue  # the edition is gone: nothing to count against
        digest, sent_at = found
        early = sent_at is None or click.at < sent_at + window
        counted = not early and not scanner_reason(settings, click.method, click.agent)
        day = click.at.date().isoformat()
        # Kept per subscriber only while the digest still asks for it.
        sid = click.subscriber_id if counted and per_subscriber(settings, digest) else 0
        visitor = visitors.key(day, click.client, click.agent, click.target, sid) if counted else ""
        t = click.target
        rows.append(
            ClickRow(edition_id, t.article_id, t.section, counted, visitor, day, sid, click.at)
        )
    if not rows:
        return 0
    forget_before = max(r.day for r in rows) if forget else ""
    return store.record_clicks(rows, forget_before=forget_before)


def record_click(
    settings: Settings,
    store: Store,
    target: ClickTarget,
    *,
    method: str,
    agent: str,
    client: str,
    now: datetime,
    visitors: Visitors,
    subscriber_id: int = 0,
) -> bool:
    """Record one click on ``target`` now; True when it counted as a reader's."""
    click = Click(target, method, agent, client, now, subscriber_id)
    return record_clicks(settings, store, [click], visitors, forget=True) == 1


class ClickRecorder:
    """Records the web app's clicks on a thread of its own, in batches (one transaction for
    what came in while the last one was written), so the redirect never waits for the store.
    ``flush`` waits until everything submitted is written; ``close`` flushes and stops.
    Clicks still queued when the process is killed are lost (never more than one batch)."""

    def __init__(self, settings: Settings, store: Store, *, batch: int = 500) -> None:
        self.settings, self.store, self.batch = settings, store, batch
        self.visitors = Visitors()
        self._queue: queue.SimpleQueue[Click | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._day = ""
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def submit(self, click: Click) -> None:
        with self._idle:
            self._pending += 1
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="click-recorder", daemon=True
                    )
                    self._thread.start()
        self._queue.put(click)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every click submitted is written (or lost to an error); False on
        timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            clicks = [first]
            while len(clicks) < self.batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                clicks.append(more)
            try:
                day = max(c.at for c in clicks).date().isoformat()
                record_clicks(
                    self.settings, self.store, clicks, self.visitors, forget=day != self._day
                )
                self._day = day
            except Exception as e:  # a lost count must never stop the recorder; it is logged
                log.warning("%d click(s) not recorded: %s", len(clicks), e)
            finally:
                with self._idle:
                    self._pending -= len(clicks)
                    self._idle.notify_all()


@dataclass(frozen=True, slots=True)
class ArticleClicks:
    article_id: str
    title: str
    section: str
    clicks: int
    # Subscribers who clicked it (per-subscriber analytics only; an aggregate).
    clickers: int = 0


@dataclass(frozen=True, slots=True)
class SectionClicks:
    key: str
    title: str
    clicks: int
    # Clicks per recipient of the edition (0 without recipients).
    rate: float


@dataclass(frozen=True, slots=True)
class EditionClicks:
    edition_id: str
    subject: str
    sent_at: datetime | None
    recipients: int
    articles: tuple[ArticleClicks, ...]  # most clicked first
    sections: tuple[SectionClicks, ...]  # in the edition's order
    clicks: int
    filtered: int
    tracking: bool
    # Per-subscriber analytics on for the digest: ``clickers`` are counted.
    per_subscriber: bool = False

    @property
    def shows_clickers(self) -> bool:
        """Whether editors see unique clickers: counted now, or counted while they were."""
        return self.per_subscriber or any(a.clickers for a in self.articles)


def edition_clicks(settings: Settings, store: Store, edition_id: str) -> EditionClicks | None:
    """The edition's clicks, or None when there is no such edition."""
    edition = store.edition(edition_id)
    if edition is None:
        return None
    counts = {c.article_id: c for c in store.click_counts(edition_id)}
    titles = {s.key: s.title for s in edition.sections}
    recipients = store.delivery_counts(edition_id).get("submitted", 0)
    articles = sorted(
        (
            ArticleClicks(
                t.article_id,
                t.title,
                section.key,
                counts[t.article_id].clicks if t.article_id in counts else 0,
                counts[t.article_id].clickers if t.article_id in counts else 0,
            )
            for section in edition.sections
            for t in section.teasers
        ),
        key=lambda a: -a.clicks,  # stable: the edition's order among equals
    )
    sections = []
    for key, title in titles.items():
        n = sum(c.clicks for c in counts.values() if c.section == key)
        sections.append(SectionClicks(key, title, n, n / recipients if recipients else 0.0))
    digest = settings.digests.get(edition.digest)
    _, sent_at = store.click_edition(edition_id) or ("", None)
    return EditionClicks(
        edition_id=edition.id,
        subject=edition.subject,
        sent_at=sent_at,
        recipients=recipients,
        articles=tuple(articles),
        sections=tuple(sections),
        clicks=sum(c.clicks for c in counts.values()),
        filtered=sum(c.filtered for c in counts.values()),
        tracking=bool(digest and digest.click_tracking),
        per_subscriber=per_subscriber(settings, edition.digest),
    )


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def clicks_lines(stats: EditionClicks) -> list[str]:
    """The edition's clicks as lines of text (``digest stats``)."""
    sent = stats.sent_at.strftime("%Y-%m-%d %H:%M UTC") if stats.sent_at else "not sent"
    lines = [
        f"Edition    {stats.edition_id}",
        f"Subject    {stats.subject}",
        f"Sent       {sent}, {stats.recipients} recipients",
        f"Clicks     {stats.clicks} by readers, {stats.filtered} not counted (link scanners)",
    ]
    if not stats.tracking:
        lines.append("           click tracking is off for this digest (click_tracking = false)")
    clickers = stats.shows_clickers
    if clickers:
        lines.append("           unique clickers: subscribers who clicked each article")
    lines.append(
        "\nArticles, most clicked first" + (": clicks, unique clickers" if clickers else "")
    )
    width = max((len(str(a.clicks)) for a in stats.articles), default=1)
    cwidth = max((len(str(a.clickers)) for a in stats.articles), default=1)
    for a in stats.articles:
        count = f"{a.clicks:>{width}}" + (f"  {a.clickers:>{cwidth}}" if clickers else "")
        lines.append(f"  {count}  {a.title}  ({a.section}, {a.article_id})")
    lines.append("\nSections: clicks, per recipient")
    for s in stats.sections:
        lines.append(f"  {s.title} ({s.key}): {s.clicks}, {percent(s.rate)}")
    return lines


def summaries_due(settings: Settings, store: Store, now: datetime) -> list[str]:
    """Editions of digests with click tracking, sent at least a day ago, whose click summary
    is not made yet."""
    due = []
    for edition_id in store.editions_without_click_summary(now - SUMMARY_AFTER):
        edition = store.edition(edition_id)
        digest = settings.digests.get(edition.digest) if edition else None
        if digest is not None and digest.click_tracking:
            due.append(edition_id)
    return due
