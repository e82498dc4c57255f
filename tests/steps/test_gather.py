"""The gather step: bounded fetching (at most `concurrency` at once, at most `per_host` to one
host), big feeds parsed in worker processes, and thin items completed from their pages, once."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from digest.factory import make_fetcher
from digest.steps import gather
from digest.steps.progress import Progress
from digest.store import Store
from tests.conftest import ROOT
from tests.servers import FeedServer

FEED = b'<rss version="2.0"><channel><title>T</title><item><title>x</title><link>https://example.org/x</link></item></channel></rss>'


class Counting:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()


@pytest.fixture
def server() -> Iterator[tuple[str, Counting]]:
    counting = Counting()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with counting.lock:
                counting.now += 1
                counting.peak = max(counting.peak, counting.now)
            time.sleep(0.15)
            with counting.lock:
                counting.now -= 1
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(FEED)))
            self.end_headers()
            self.wfile.write(FEED)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", counting
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("concurrency", "per_host", "peak"), [(4, 1, 1), (4, 2, 2), (2, 4, 2)])
def test_limits_hold(make_settings, server, concurrency: int, per_host: int, peak: int) -> None:  # type: ignore[no-untyped-def]
    base, counting = server
    sources = {
        f"s{i}": {"url": f"{base}/feed{i}.xml", "local": True, "fetch_pages": False}
        for i in range(6)
    }
    settings = make_settings(
        {
            "http": {"concurrency": concurrency, "per_host": per_host},
            "sources": sources,
            "sections": {"qiosk": {"sources": list(sources)}},
            "digests": {"weekly": {"sections": ["qiosk"]}},
        }
    )
    now = datetime.now(UTC)

    def one(key: str) -> int:
        with make_fetcher(settings) as fetcher:
            return gather.gather_source(settings, None, fetcher, key, now=now).entries

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(one, sources)) == [1] * 6
    assert counting.peak == peak


def test_big_feeds_parse_in_worker_processes(make_settings) -> None:  # type: ignore[no-untyped-def]
    from digest.gather.feeds import parse_feed

    item = (
        "<item><title>Item {n}</title><link>https://example.org/{n}</link><guid>g{n}</guid>"
        "<description>&lt;p&gt;" + "Words of the lede. " * 20 + "&lt;/p&gt;</description></item>"
    )
    body = (
        '<rss version="2.0"><channel><title>Big</title>'
        + "".join(item.format(n=n) for n in range(300))
        + "</channel></rss>"
    ).encode()
    assert len(body) > gather.POOL_MIN_BYTES
    settings = make_settings({"http": {"parse_workers": 2}})
    now = datetime.now(UTC)
    here = parse_feed(body, source="qiosk", url="https://example.org/feed", now=now)
    there = gather.parse(
        settings,
        body,
        source="qiosk",
        url="https://example.org/feed",
        now=now,
        content_type=None,
    )
    assert gather._POOL is not None  # it really went to the pool
    assert there == here and len(there.articles) == 300
    from digest.errors import FeedError

    with pytest.raises(FeedError, match="qiosk"):
        gather.parse(
            settings,
            b"<html>" + b"<p>not a feed</p>" * 5000,
            source="qiosk",
            url="https://example.org/feed",
            now=now,
            content_type=None,
        )


def test_a_worker_answers_drafts_and_imports_no_models() -> None:
    import subprocess
    import sys

    from digest.gather.feeds import DraftFeed, parse_feed
    from digest.steps.parse_pool import ParseWorker

    options = {"source": "qiosk", "url": "https://example.org/feed", "now": NOW}
    worker = ParseWorker()
    try:
        ok, answer = worker.run(FEED, options, timeout=60)
    finally:
        worker.stop()
    assert ok and isinstance(answer, DraftFeed)
    assert answer.parsed() == parse_feed(FEED, **options)
    # What a worker imports (digest.steps.parse_pool.main) and parses with (this feed, and a
    # JSON Feed) leaves pydantic and the models out.
    script = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "import digest.steps.parse_pool, digest.steps.heap\n"
        "from digest.gather.feeds import parse_feed_draft\n"
        'json_feed = b\'{"version": "https://jsonfeed.org/version/1.1", "title": "J", '
        '"items": [{"id": "1", "url": "https://example.org/a", "title": "A", '
        '"content_html": "<p>Text.</p>", "date_published": "2026-11-30T10:00:00Z"}]}\'\n'
        "for body in (sys.stdin.buffer.read(), json_feed):\n"
        "    draft = parse_feed_draft(body, source='s', url='https://example.org/feed',\n"
        "                             now=datetime(2026, 11, 30, tzinfo=UTC))\n"
        "    assert draft.articles, draft\n"
        "print(sorted({'pydantic', 'digest.models'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=FEED, capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == "[]"


# Thin feeds ----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[FeedServer]:
    root = tmp_path / "site"
    (root / "pages").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "data" / "pages" / "seed_like.html", root / "pages" / "one.html")
    server = FeedServer(root)
    server.redirects["/pages/moved.html"] = "/pages/one.html?utm_source=feed#top"
    items = "".join(
        f"<item><title>Thin item {n}</title><link>{server.base}/pages/{page}</link>"
        f"<guid>thin-{n}</guid><pubDate>Fri, 27 Nov 2026 10:00:00 +0000</pubDate></item>"
        for n, page in ((1, "moved.html"), (2, "missing.html"))
    )
    (root / "thin.xml").write_text(
        f'<rss version="2.0"><channel><title>Thin</title><link>{server.base}/</link>'
        f"{items}</channel></rss>",
        encoding="utf-8",
    )
    yield server
    server.close()


def test_thin_items_get_their_lede_from_the_page_once(make_settings, site: FeedServer) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        {"sources": {"qiosk": {"url": f"{site.base}/thin.xml", "local": True, "path": ""}}}
    )
    store = Store.open(settings.database_url)
    with make_fetcher(settings) as fetcher:
        report = gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
    one, two = sorted(report.articles, key=lambda a: a.title)
    assert not gather.is_thin(one) and one.image is not None
    assert one.content_html.startswith("<p>") and "Follow us" not in one.content_html
    assert gather.is_thin(two)
    assert any("missing.html" in w and "404" in w for w in report.details())
    pages = [p for p, _ in site.requests if p.startswith("/pages/")]
    assert sorted(pages) == [
        "/pages/missing.html",
        "/pages/moved.html",
        "/pages/one.html?utm_source=feed",
    ]
    # Redirects followed, tracking parameters and fragment dropped.
    assert one.url == f"{site.base}/pages/one.html"

    # The feed changes (no 304): the completed article's page is not fetched again.
    feed = site.root / "thin.xml"
    feed.write_text(feed.read_text().replace("<title>Thin</title>", "<title>Thin!</title>"))
    with make_fetcher(settings) as fetcher:
        again = gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
    assert [p for p, _ in site.requests if p == "/pages/moved.html"] == ["/pages/moved.html"]
    stored = store.articles_by_id([one.id])[one.id]
    assert stored.content_html == one.content_html
    assert next(a for a in again.articles if a.id == one.id).content_html == one.content_html
    store.close()


def test_page_fetching_can_be_turned_off(make_settings, site: FeedServer) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        {
            "sources": {
                "qiosk": {
                    "url": f"{site.base}/thin.xml",
                    "local": True,
                    "path": "",
                    "fetch_pages": False,
                }
            }
        }
    )
    with make_fetcher(settings) as fetcher:
        report = gather.gather_source(settings, None, fetcher, "qiosk", now=NOW)
    assert all(gather.is_thin(a) for a in report.articles)
    assert not [p for p, _ in site.requests if p.startswith("/pages/")]


def _paged_site(root: Path, base: str, pages: int) -> None:
    for page in range(1, pages + 1):
        items = "".join(
            f"<item><title>Page {page} item {n}</title><link>{base}/a/{page}-{n}</link>"
            f"<guid>p{page}-{n}</guid><description>&lt;p&gt;{'Text. ' * 20}&lt;/p&gt;"
            "</description></item>"
            for n in range(3)
        )
        name = "paged.xml" if page == 1 else f"paged-{page}.xml"
        (root / name).write_text(
            f'<rss version="2.0"><channel><title>P</title>{items}</channel></rss>',
            encoding="utf-8",
        )


def test_backfill_reads_older_pages_on_the_first_gather_only(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    root = tmp_path / "paged"
    root.mkdir()
    seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kw)

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            page = parse_qs(urlsplit(self.path).query).get("p", ["1"])[0]
            self.path = "/paged.xml" if page == "1" else f"/paged-{page}.xml"
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    _paged_site(root, base, 3)
    settings = make_settings(
        {
            "sources": {
                "qiosk": {
                    "url": f"{base}/feed?x=1",
                    "local": True,
                    "path": "",
                    "backfill_pages": 5,
                    "page_param": "p",
                }
            }
        }
    )
    store = Store.open(settings.database_url)
    with make_fetcher(settings) as fetcher:
        first = gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
        # Pages 2 and 3 exist; page 4 is a 404 that ends the backfill with a warning.
        assert first.entries == 9 and len(first.new_ids) == 9
        assert [p for p in seen] == ["/feed?x=1", "/feed?x=1&p=2", "/feed?x=1&p=3", "/feed?x=1&p=4"]
        assert any("page 4" in w and "404" in w for w in first.details())
        seen.clear()
        gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
        assert seen == ["/feed?x=1"]
    store.close()
    httpd.shutdown()
    httpd.server_close()


def test_pages_are_tried_once_and_links_get_no_private_licence(
    make_settings, site: FeedServer
) -> None:  # type: ignore[no-untyped-def]
    port = site.base.rsplit(":", 1)[1]
    feed = site.root / "thin.xml"
    # A third item links to the same server under another name: the source's "local" licence
    # covers its own host only, so that page is refused before any connection.
    other = f"http://localhost:{port}/pages/one.html"
    feed.write_text(
        feed.read_text().replace(
            "</channel>",
            f"<item><title>Elsewhere</title><link>{other}</link><guid>thin-3</guid></item>"
            "</channel>",
        )
    )
    settings = make_settings(
        {"sources": {"qiosk": {"url": f"{site.base}/thin.xml", "local": True, "path": ""}}}
    )
    store = Store.open(settings.database_url)
    with make_fetcher(settings) as fetcher:
        first = gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
        assert any("localhost" in w and "refused" in w.lower() for w in first.details())
        feed.write_text(feed.read_text().replace("<title>Thin</title>", "<title>Thin 2</title>"))
        second = gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
    pages = [p for p, _ in site.requests if p.startswith("/pages/")]
    # Each page at most once, the failing one included; none for the refused name.
    assert sorted(pages) == [
        "/pages/missing.html",
        "/pages/moved.html",
        "/pages/one.html?utm_source=feed",
    ]
    moved = next(a for a in second.articles if a.title == "Thin item 1")
    assert moved.url == f"{site.base}/pages/one.html"  # kept, not reverted to the feed's link
    assert store.articles_by_id([moved.id])[moved.id].url == moved.url
    store.close()


# A local source's licence: its own origin, nothing else --------------------------------------


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection it accepts (and answers
    each with a page that must never be stored)."""

    PAGE = (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body><article><p>"
        + b"INTERNAL SECRET of the admin console. " * 10
        + b"</p></article></body></html>"
    )

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.accepted: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(peer)
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(self.PAGE)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


def test_a_local_sources_licence_is_its_own_origin_only(
    make_settings, site: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import ipaddress
    import socket

    import urllib3.util.connection

    from digest.gather.http import Fetcher

    # Nothing but loopback is ever connected to: a slip would be an assertion, not a packet.
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def guarded(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(address)
        if not ipaddress.ip_address(address[0].strip("[]")).is_loopback:
            raise AssertionError(f"tried to connect to {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)

    def resolver(host: str, port: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        address = {"internal.test": "10.0.0.1"}.get(host, host)
        ipaddress.ip_address(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    other = Listener()
    try:
        secret = f"{other.base}/admin/secret.html"
        site.redirects["/pages/to-b.html"] = secret
        site.redirects["/pages/to-internal.html"] = "http://internal.test/latest/meta-data/"
        site.redirects["/moved.xml"] = f"{other.base}/feed.xml"
        items = "".join(
            f"<item><title>Item {n}</title><link>{link}</link><guid>ssrf-{n}</guid>"
            f"<description>Feed text {n}.</description>"
            "<pubDate>Fri, 27 Nov 2026 10:00:00 +0000</pubDate></item>"
            for n, link in (
                (1, secret),
                (2, f"{site.base}/pages/to-b.html"),
                (3, f"{site.base}/pages/to-internal.html"),
                (4, f"{site.base}/pages/one.html"),
            )
        )
        (site.root / "ssrf.xml").write_text(
            f'<rss version="2.0"><channel><title>S</title>{items}</channel></rss>',
            encoding="utf-8",
        )
        settings = make_settings(
            {
                "sources": {
                    "qiosk": {"url": f"{site.base}/ssrf.xml", "local": True, "path": ""},
                    "moved": {"url": f"{site.base}/moved.xml", "local": True},
                }
            }
        )
        store = Store.open(settings.database_url)
        with Fetcher(settings.http, resolver=resolver) as fetcher:
            report = gather.gather_source(settings, store, fetcher, "qiosk", now=NOW)
            # The feed itself redirected to another port: refused as a public fetch would be.
            with pytest.raises(Exception, match=r"127\.0\.0\.1.*refused \(loopback\)"):
                gather.gather_source(settings, store, fetcher, "moved", now=NOW)
        store.close()
    finally:
        other.close()

    assert other.accepted == []
    assert all(ipaddress.ip_address(h.strip("[]")).is_loopback for h, _ in attempts)
    by_title = {a.title: a for a in report.articles}
    for n in (1, 2, 3):
        kept = by_title[f"Item {n}"]
        assert kept.summary_html == f"Feed text {n}." and kept.content_html == ""
    warnings = " | ".join(report.details())
    assert f"article page {secret}:" in warnings
    assert f"article page {site.base}/pages/to-b.html (at {secret}):" in warnings
    assert "internal.test" in warnings and "10.0.0.1" in warnings
    assert warnings.count("refused") >= 3
    # A page on the source's own origin is still read.
    assert by_title["Item 4"].content_html.startswith("<p>")
    assert by_title["Item 4"].url == f"{site.base}/pages/one.html"


def test_a_feed_is_read_up_to_the_item_cap_newest_first(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json
    import random
    from email.utils import format_datetime

    from digest.gather.feeds import parse_feed

    start = datetime(2026, 1, 1, tzinfo=UTC)
    hours = list(range(1200))
    random.Random(7).shuffle(hours)  # not in date order: the cap must pick by date
    items = "".join(
        f"<item><title>Item {h}</title><link>https://news.example.org/{h}</link>"
        f"<guid>g{h}</guid><pubDate>{format_datetime(start + timedelta(hours=h))}</pubDate></item>"
        for h in hours
    )
    path = tmp_path / "big.xml"
    path.write_text(f'<rss version="2.0"><channel><title>B</title>{items}</channel></rss>')
    settings = make_settings(
        {"http": {"max_feed_items": 100}, "sources": {"qiosk": {"path": str(path)}}}
    )
    assert make_settings().http.max_feed_items == 500  # the default
    with make_fetcher(settings) as fetcher:
        report = gather.gather_source(settings, None, fetcher, "qiosk", now=NOW)
    assert report.entries == 100
    assert {a.title for a in report.articles} == {f"Item {h}" for h in range(1100, 1200)}
    (warning,) = [w for w in report.warnings if "max_feed_items" in w]
    assert "1200 items" in warning and "newest 100" in warning and "left out 1100" in warning

    # JSON Feed alike; 0 means no cap.
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "items": [
            {
                "id": f"j{h}",
                "url": f"https://news.example.org/j{h}",
                "title": f"J {h}",
                "date_published": (start + timedelta(hours=h)).isoformat(),
            }
            for h in hours[:300]
        ],
    }
    body = json.dumps(feed).encode()
    capped = parse_feed(body, source="j", url="https://news.example.org/f", now=NOW, max_items=10)
    newest = sorted(hours[:300])[-10:]
    assert {a.title for a in capped.articles} == {f"J {h}" for h in newest}
    whole = parse_feed(body, source="j", url="https://news.example.org/f", now=NOW, max_items=0)
    assert len(whole.articles) == 300


# One line per source -------------------------------------------------------------------------


def test_pages_that_fail_are_counted_in_one_line_per_source(
    make_settings, site: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    import logging

    from digest.gather.http import Fetcher
    from tests.servers import UNRESOLVED, noisy_feed, stub_resolver

    kinds = noisy_feed(site)
    settings = make_settings(
        {
            "sources": {"qiosk": {"url": f"{site.base}/noisy.xml", "local": True, "path": ""}},
            "http": {"retries": 0},
        }
    )
    store = Store.open(settings.database_url)
    events: list[Progress] = []
    with Fetcher(settings.http, resolver=stub_resolver) as fetcher:
        caplog.set_level(logging.DEBUG, logger="digest")
        gathered, _ = gather.gather_section(
            settings,
            store,
            "qiosk",
            now=NOW,
            submit=lambda key: _Done(gather.gather_source(settings, store, fetcher, key, now=NOW)),
            progress=events.append,
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "source 'qiosk': 8 articles, 8 new; 7 article pages not read (cannot resolve host: 3, "
        "HTTP 404: 2, HTTP 500: 1, no article text: 1)"
    ]
    assert sum(kinds.values()) == 7
    details = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(details) == 7
    # Each page said once: no name or URL twice in one line.
    for line in details:
        url = line.split(" ")[2].rstrip(":")
        assert line.count(url) == 1, line
        assert line.count("qiosk") <= 1, line
    assert f"article page http://{UNRESOLVED}/story-1: cannot resolve '{UNRESOLVED}'" in details[0]
    # The progress hook heard of the source, with counts.
    assert events == [Progress("gather qiosk", 1, 1, note="qiosk", failed=0)]
    # `digest sources` finds the counts and the pages in the source's state.
    state = store.source_state("qiosk")
    store.close()
    assert state is not None and state.consecutive_failures == 0 and state.note
    note = state.note.splitlines()
    assert note[0] == warnings[0].split("; ", 1)[1]
    assert len(note) == 8 and f"{site.base}/pages/gone-1.html: HTTP 404" in state.note
    assert gathered.articles == 8 and not gathered.failed


class _Done:
    def __init__(self, report: gather.SourceReport) -> None:
        self.report = report

    def result(self) -> gather.SourceReport:
        return self.report


def test_gather_sources_tells_its_progress_hook_each_source(make_settings) -> None:  # type: ignore[no-untyped-def]
    from digest.steps.progress import listening

    settings = make_settings()
    events: list[Progress] = []
    reports = gather.gather_sources(
        settings, None, ["qiosk", "analysis"], now=NOW, progress=events.append
    )
    assert [r.status for r in reports] == ["updated", "updated"]
    assert sorted((e.done, e.total) for e in events) == [(1, 2), (2, 2)]
    assert {e.note for e in events} == {"qiosk", "analysis"}
    # Without a hook of its own a step tells the one an entry point installed, else nobody.
    heard: list[Progress] = []
    with listening(heard.append):
        gather.gather_sources(settings, None, ["qiosk"], now=NOW)
    gather.gather_sources(settings, None, ["qiosk"], now=NOW)
    assert [(e.done, e.total, e.note) for e in heard] == [(1, 1, "qiosk")]
