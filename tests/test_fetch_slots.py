"""Bounded fetching: at most `concurrency` at once, at most `per_host` to one host."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from digest import jobs
from digest.factory import make_fetcher

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
            return jobs.gather_source(settings, None, fetcher, key, now=now).entries

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
    assert len(body) > jobs.POOL_MIN_BYTES
    settings = make_settings({"http": {"parse_workers": 2}})
    now = datetime.now(UTC)
    here = parse_feed(body, source="qiosk", url="https://example.org/feed", now=now)
    there = jobs.parse(
        settings,
        body,
        source="qiosk",
        url="https://example.org/feed",
        now=now,
        content_type=None,
    )
    assert jobs._POOL is not None  # it really went to the pool
    assert there == here and len(there.articles) == 300
    from digest.errors import FeedError

    with pytest.raises(FeedError, match="qiosk"):
        jobs.parse(
            settings,
            b"<html>" + b"<p>not a feed</p>" * 5000,
            source="qiosk",
            url="https://example.org/feed",
            now=now,
            content_type=None,
        )
