"""Gathering is bounded: each source's articles are stored as it finishes and then let go, so
gathering forty feeds holds about what gathering four does, not ten times as much."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from digest.steps import gather
from digest.store import Store

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
PARAGRAPH = "The delegation met the envoy and the talks went on into the night. " * 12


def feed(n: int, items: int = 120) -> bytes:
    entries = "".join(
        f"<item><title>Feed {n} item {i}</title><link>https://example.org/{n}/{i}</link>"
        f"<guid>f{n}-{i}</guid><description>&lt;p&gt;{PARAGRAPH} {n} {i}&lt;/p&gt;"
        f"&lt;p&gt;{PARAGRAPH}&lt;/p&gt;</description></item>"
        for i in range(items)
    )
    return f'<rss version="2.0"><channel><title>F{n}</title>{entries}</channel></rss>'.encode()


@pytest.fixture(scope="module")
def feeds() -> Iterator[str]:
    bodies = {f"/{n}.xml": feed(n) for n in range(40)}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def traced_peak(make_settings, base: str, count: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The traced peak while gathering ``count`` feeds into a fresh store (parsed in this
    process, so that the parse is traced too), and how many articles were stored."""
    sources = {
        f"s{n}": {"url": f"{base}/{n}.xml", "local": True, "fetch_pages": False}
        for n in range(count)
    }
    settings = make_settings(
        {
            "data_dir": f"var-{count}",
            "http": {"parse_workers": 1},
            "sources": sources,
            "sections": {"all": {"title": "All", "sources": list(sources)}},
            "digests": {"weekly": {"sections": ["all"]}},
        }
    )
    store = Store.open(settings.database_url)
    try:
        tracemalloc.start()
        try:
            reports = gather.gather_sources(settings, store, list(sources), now=NOW)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [r.status for r in reports] == ["updated"] * count
        return peak, store.count_articles()
    finally:
        store.close()


def test_gathering_forty_feeds_holds_about_what_four_do(make_settings, feeds: str) -> None:  # type: ignore[no-untyped-def]
    traced_peak(make_settings, feeds, 2)  # warm the caches (compiled statements, imports)
    four, stored_four = traced_peak(make_settings, feeds, 4)
    forty, stored_forty = traced_peak(make_settings, feeds, 40)
    assert (stored_four, stored_forty) == (4 * 120, 40 * 120)
    # Holding every source's articles until the end made it about ten times as much.
    assert forty < 2.5 * four, (forty, four)
