"""The gather flow runs a section's sources on at most ``http.concurrency`` threads: a thread per
source would give each its own heap arena, and the process would hold memory for every source of
the section at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import base_config, write_toml

pytestmark = pytest.mark.flows

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
SOURCES = 24


def feed(n: int) -> bytes:
    items = "".join(
        f"<item><title>Feed {n} item {i}</title><link>https://example.org/{n}/{i}</link>"
        f"<guid>f{n}-{i}</guid><description>The envoy met the delegation, {n} {i}."
        "</description></item>"
        for i in range(3)
    )
    return f'<rss version="2.0"><channel><title>F{n}</title>{items}</channel></rss>'.encode()


@pytest.fixture
def slow_feeds() -> Iterator[str]:
    """Feeds on 127.0.0.1, each answered after a short wait, so that sources overlap."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(0.05)
            body = feed(int(self.path.strip("/").split(".")[0]))
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_section_gathers_on_at_most_concurrency_threads(
    tmp_path: Path, slow_feeds: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.steps import gather
    from flows.gather import gather_section_flow

    threads: set[tuple[int, str]] = set()
    fetch = gather.fetch_source_for_section

    def recorded(*args: object, **kwargs: object) -> gather.SourceReport:
        threads.add((threading.get_ident(), threading.current_thread().name))
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gather, "fetch_source_for_section", recorded)
    data = base_config(tmp_path / "var")
    data["sources"] = {
        f"s{n:02d}": {"url": f"{slow_feeds}/{n}.xml", "local": True, "fetch_pages": False}
        for n in range(SOURCES)
    }
    data["sections"] = {"all": {"title": "All", "sources": list(data["sources"])}}
    data["digests"]["weekly"]["sections"] = ["all"]
    data["http"] = {"retries": 0, "concurrency": 3, "per_host": 3}
    cfg = write_toml(tmp_path / "pub.toml", data)

    result = gather_section_flow(str(cfg), "all", NOW)

    assert result["articles"] == 3 * SOURCES and not result["failed"]
    assert len(threads) <= 3, sorted(threads)
