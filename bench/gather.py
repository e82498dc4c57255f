"""Gather 200 feeds served on loopback, cold and then warm, against plain feedparser.

200 generated feeds (20–500 KB; about 70 % RSS 2.0 and 30 % Atom; titles, links with
tracking parameters, authors, categories, HTML descriptions, full content on some, media
images) are served from 127.0.0.1 with ETags. We gather them into a fresh SQLite store (cold),
then again (warm: every source answers 304). The baseline, measured in the same run, is the
time to parse the same 200 bodies serially with plain ``feedparser.parse(bytes)``.

What runs is ``digest.steps.gather.gather_sources``: the same per-source step
(``fetch_source``) that the gather flow's tasks run, with the same fetch limits and parse
workers, minus Prefect's task bookkeeping.

Targets: cold ≤ 0.6× the baseline, warm ≤ 0.05×. Prints medians of the runs; the last line is
one JSON object. BENCH_RUNS sets the number of runs (3); BENCH_PARSE_WORKERS overrides
``http.parse_workers`` (1: parse in the fetching threads, no process pool).

Memory: the peak RSS (``VmHWM``) of every process that gathers, read from ``/proc`` while it
lives (a sampler thread, every 20 ms, keeps each process's last reading: the peak is a high-water
mark, so only growth in a process's last 20 ms can be missed), and their sum, the target being
under 250 MB. The feed server and the baseline run in processes of their own, listed apart: they
are not gathering (the server holds all 51 MB of bodies, the baseline feedparser's results).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import feedparser

from bench.support import child, descendants, run_as
from digest.config import parse_settings
from digest.steps import gather
from digest.store import Store

FEEDS = int(os.environ.get("BENCH_FEEDS", "200"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WORDS = [
    "talks",
    "ceasefire",
    "envoy",
    "sanctions",
    "minister",
    "said",
    "on",
    "the",
    "and",
    "a",
    "week",
    "trade",
    "summit",
    "border",
    "delegation",
    "agreement",
    "parliament",
    "election",
    "coalition",
    "reform",
    "security",
    "council",
    "vote",
    "aid",
    "refugees",
    "negotiators",
    "draft",
    "treaty",
    "grain",
    "energy",
    "pipeline",
    "tariffs",
]


def _para(r: random.Random, n: int) -> str:
    text = " ".join(r.choice(WORDS) for _ in range(n))
    return text[0].upper() + text[1:] + "."


def _rss_item(r: random.Random, feed: int, i: int, full: bool) -> str:
    content = (
        "<content:encoded><![CDATA["
        + "".join(f"<p>{_para(r, 70)}</p>" for _ in range(4))
        + "]]></content:encoded>"
        if full
        else ""
    )
    return (
        f"<item><title>{_para(r, 8)[:-1]} &amp; more</title>"
        f"<link>https://news{feed % 7}.example.org/{feed}/{i}?utm_source=rss&amp;ref=feed</link>"
        f'<guid isPermaLink="false">bench-{feed}-{i}</guid>'
        f"<pubDate>Fri, {1 + i % 28:02d} Nov 2026 10:{i % 60:02d}:00 +0000</pubDate>"
        f"<dc:creator>Author {i % 13}</dc:creator><category>World</category>"
        f"<category>Region {i % 5}</category>"
        f"<description><![CDATA[<p>{_para(r, 60)}</p><p>{_para(r, 40)}</p>]]></description>"
        f"{content}"
        f'<media:content url="https://img.example.org/{feed}/{i}.jpg" medium="image" '
        f'width="1200" height="800"><media:description>{_para(r, 10)}</media:description>'
        f"<media:credit>Photographer {i % 9}</media:credit></media:content></item>"
    )


def _atom_entry(r: random.Random, feed: int, i: int, full: bool) -> str:
    content = (
        '<content type="html">'
        + "".join(f"&lt;p&gt;{_para(r, 70)}&lt;/p&gt;" for _ in range(4))
        + "</content>"
        if full
        else ""
    )
    return (
        f"<entry><title>{_para(r, 8)[:-1]}</title>"
        f'<link rel="alternate" href="https://atom{feed % 5}.example.org/{feed}/{i}"/>'
        f"<id>tag:example.org,2026:{feed}/{i}</id>"
        f"<published>2026-11-{1 + i % 28:02d}T09:00:00Z</published>"
        f"<updated>2026-11-{1 + i % 28:02d}T10:00:00Z</updated>"
        f"<author><name>Author {i % 11}</name></author>"
        f'<category term="Analysis"/><category term="Region {i % 4}"/>'
        f'<summary type="html">&lt;p&gt;{_para(r, 60)}&lt;/p&gt;</summary>{content}'
        f'<media:content url="https://img.example.org/a{feed}/{i}.jpg" medium="image"/>'
        "</entry>"
    )


def make_feed(feed: int) -> bytes:
    """One feed of 20–500 KB, RSS or Atom, deterministic for its number."""
    r = random.Random(feed)
    target = r.randint(20_000, 500_000)
    atom = r.random() < 0.3
    full = r.random() < 0.5
    parts: list[str] = []
    size, i = 0, 0
    while size < target:
        item = _atom_entry(r, feed, i, full) if atom else _rss_item(r, feed, i, full)
        parts.append(item)
        size += len(item)
        i += 1
    if atom:
        doc = (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:media="http://search.yahoo.com/mrss/">'
            f"<title>Bench feed {feed}</title><id>tag:example.org,2026:{feed}</id>"
            f'<link href="https://atom.example.org/{feed}"/>{"".join(parts)}</feed>'
        )
    else:
        doc = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            'xmlns:media="http://search.yahoo.com/mrss/"><channel>'
            f"<title>Bench feed {feed}</title><link>https://news.example.org/{feed}</link>"
            f"{''.join(parts)}</channel></rss>"
        )
    return doc.encode()


def serve(
    bodies: dict[str, bytes], content_type: str = "application/xml; charset=utf-8"
) -> ThreadingHTTPServer:
    tags = {path: '"' + hashlib.sha256(b).hexdigest()[:16] + '"' for path, b in bodies.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = bodies.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.headers.get("If-None-Match") == tags[self.path]:
                self.send_response(304)
                self.send_header("ETag", tags[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("ETag", tags[self.path])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def settings_for(base: str, data_dir: Path):  # type: ignore[no-untyped-def]
    sources = {
        f"f{n:03d}": {"url": f"{base}/feed/{n}.xml", "local": True, "fetch_pages": False}
        for n in range(FEEDS)
    }
    return parse_settings(
        {
            "data_dir": str(data_dir),
            "publication": {
                "name": "Bench",
                "url": "https://bench.example.org",
                "from_email": "digest@bench.example.org",
                "postal_address": "1 Bench Street",
            },
            "sources": sources,
            "sections": {"all": {"title": "All", "sources": list(sources)}},
            "digests": {
                "weekly": {
                    "title": "Weekly",
                    "sections": ["all"],
                    "schedule": {"cron": "0 7 * * MON"},
                }
            },
        },
        environ={},
    )


class ProcessPeaks:
    """The peak RSS (``VmHWM``) of a process and of every process under it, sampled from
    ``/proc`` by a thread while they live: the last reading of each process (its high-water
    mark) is kept after it exits. ``apart`` names processes to list but not to sum (pid → role).
    """

    def __init__(self, root: int | None = None, interval: float = 0.02) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.peaks: dict[int, float] = {}  # pid → MB
        self.names: dict[int, str] = {}
        self.apart: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        for pid in [self.root, *descendants(self.root)]:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    name = f.read().replace(b"\0", b" ").decode()[:120].strip()
                with open(f"/proc/{pid}/status") as f:
                    status = f.read()
            except OSError:
                continue
            if not name or "VmHWM:" not in status:
                continue  # an ended process (a zombie): its last reading stands
            if self.names.get(pid) != name:
                # A process between fork and exec shows its parent's pages; after exec it is
                # a new program with a high-water mark of its own.
                self.names[pid] = name
                self.peaks.pop(pid, None)
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    mb = int(line.split()[1]) / 1024
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), mb)

    def role(self, pid: int) -> str:
        if pid == self.root:
            return "main"
        return self.apart.get(pid) or self.names.get(pid, "?")

    def summed(self) -> float:
        return sum(mb for pid, mb in self.peaks.items() if pid not in self.apart)

    def table(self) -> list[dict[str, object]]:
        return [
            {
                "pid": pid,
                "role": self.role(pid),
                "peak_mb": round(mb, 1),
                "summed": pid not in self.apart,
            }
            for pid, mb in sorted(self.peaks.items())
        ]


def _serve_in_child() -> None:
    """The feed server's process: makes the bodies, serves them, says its port and the bytes
    served on stdout, and ends when its stdin closes."""
    bodies = {f"/feed/{n}.xml": make_feed(n) for n in range(FEEDS)}
    httpd = serve(bodies)
    print(httpd.server_address[1], sum(len(b) for b in bodies.values()), flush=True)
    sys.stdin.read()
    httpd.shutdown()


def _baseline_in_child() -> None:
    """The baseline's process: serial plain feedparser over the same bodies, timed once per
    line on stdin, the seconds on stdout."""
    bodies = [make_feed(n) for n in range(FEEDS)]
    for _ in sys.stdin:
        start = time.perf_counter()
        for body in bodies:
            feedparser.parse(body)
        print(time.perf_counter() - start, flush=True)


def main() -> None:
    with ProcessPeaks() as peaks:
        server, baseline = child(__file__, "serve"), child(__file__, "baseline")
        assert server.stdin and server.stdout and baseline.stdin and baseline.stdout
        peaks.apart.update({server.pid: "feed server", baseline.pid: "baseline (feedparser)"})
        port, total = map(int, server.stdout.readline().split())
        total_mb = total / 1e6
        base = f"http://127.0.0.1:{port}"
        now = datetime.now(UTC)

        baselines, colds, warms, articles = [], [], [], 0
        for _ in range(RUNS):
            baseline.stdin.write("go\n")
            baseline.stdin.flush()
            baselines.append(float(baseline.stdout.readline()))

            with tempfile.TemporaryDirectory() as tmp:
                settings = settings_for(base, Path(tmp))
                if os.environ.get("BENCH_PARSE_WORKERS"):
                    http = settings.http.model_copy(
                        update={"parse_workers": int(os.environ["BENCH_PARSE_WORKERS"])}
                    )
                    settings = settings.model_copy(update={"http": http})
                store = Store.open(settings.database_url)
                keys = list(settings.sources)
                start = time.perf_counter()
                cold = gather.gather_sources(settings, store, keys, now=now)
                colds.append(time.perf_counter() - start)
                start = time.perf_counter()
                warm = gather.gather_sources(settings, store, keys, now=now)
                warms.append(time.perf_counter() - start)
                failed = [r for r in cold + warm if r.status == "failed"]
                assert not failed, failed[:3]
                assert all(r.status == "not-modified" for r in warm)
                articles = store.count_articles()
                store.close()
                del cold, warm
        peaks.sample()
        gather.shutdown_parse_pool()
        for proc in (server, baseline):
            proc.stdin.close()
            proc.wait()

    serial = statistics.median(baselines)
    cold_s, warm_s = statistics.median(colds), statistics.median(warms)
    for row in peaks.table():
        apart = "" if row["summed"] else "  (not summed)"
        print(f"  pid {row['pid']}: peak {row['peak_mb']} MB  {row['role']}{apart}")
    result = {
        "benchmark": "gather",
        "feeds": FEEDS,
        "megabytes": round(total_mb, 1),
        "articles": articles,
        "runs": RUNS,
        "serial_feedparser_s": round(serial, 3),
        "cold_s": round(cold_s, 3),
        "warm_s": round(warm_s, 3),
        "cold_ratio": round(cold_s / serial, 3),
        "warm_ratio": round(warm_s / serial, 4),
        "peak_rss_mb": round(peaks.summed(), 1),
        "peak_rss_main_mb": round(peaks.peaks.get(peaks.root, 0.0), 1),
        "gather_processes": sum(1 for r in peaks.table() if r["summed"]),
        "targets": {"cold_ratio": 0.6, "warm_ratio": 0.05, "peak_rss_mb": 250},
    }
    print(
        f"{FEEDS} feeds, {total_mb:.1f} MB, {articles} articles: serial feedparser {serial:.2f} s;"
        f" cold {cold_s:.2f} s ({cold_s / serial:.2f}x); warm {warm_s:.3f} s"
        f" ({warm_s / serial:.3f}x); peak RSS {peaks.summed():.0f} MB summed over"
        f" {result['gather_processes']} gathering process(es)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    run_as({"serve": _serve_in_child, "baseline": _baseline_in_child}, main)
