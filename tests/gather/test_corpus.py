"""The public feedparser test corpus, fetched over HTTP on loopback and parsed.

Every file of ``../shared/corpora/feedparser-tests/`` (wellformed, illformed, entities,
encoding, json: about 2,100 files) is served from one local server with the ``Header:`` lines
it declares (its charset cases need them), fetched with the real ``Fetcher`` and parsed with
``parse_feed``. Each must become a ``ParsedFeed`` of sound articles or fail with ``FeedError``
or a ``FetchError`` that names the source; never another exception, never a hang. One test
walks the whole corpus and reports every bad file in one message, rather than 2,100
parametrised tests whose set-up would cost more than the parsing.

Nothing leaves 127.0.0.1: the server binds to loopback and names never reach a resolver.
"""

from __future__ import annotations

import ast
import re
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from digest.config import HttpSettings
from digest.errors import FeedError, FetchError
from digest.gather.feeds import ParsedFeed, clean_title, parse_feed
from digest.gather.http import Fetcher

PROJECT = Path(__file__).resolve().parents[2]
CORPUS = PROJECT.parent / "shared" / "corpora" / "feedparser-tests"
FOLDERS = ("wellformed", "illformed", "entities", "encoding", "json")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SOURCE = "corpus"
FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
ARTICLE_ID = re.compile(r"a[0-9a-f]{20}")
PER_FILE_SECONDS = 5  # a hang guard; a file takes milliseconds
TOTAL_SECONDS = 30
MEMORY_GROWTH_MB = 200

# feedparser's own test server reads headers the same way: "Header: Name: value" lines in
# the file's opening comment. NULs are dropped first so UTF-16/32 files show theirs too.
HEADER_LINE = re.compile(rb"^Header:\s*([A-Za-z0-9-]+):[ \t]*(.*?)\s*$", re.MULTILINE)
# Expect lines that check one title against a literal: cheap to compare with ours.
EXPECT_TITLE = re.compile(
    r"""\b(feed|entries\[0\])(?:\[['"]title['"]\]|\.title)\s*==\s*"""
    r"""(u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"))"""
)
# What sanitised HTML must never carry, whatever the corpus's sanitizer cases throw at it.
UNSAFE_HTML = re.compile(r"<(?:script|style|iframe|object|embed)\b|\son\w+\s*=|javascript:", re.I)

# Where our title differs from feedparser's expectation on purpose. feedparser's expectations
# are its own sanitizer's HTML (we clean titles to text ourselves, with HTML5's rules).
KNOWN_DIFFERENCES = {
    # The expectation keeps "<!-- <script> -->" comments and script text as HTML; ours is the
    # text a reader would see.
    "wellformed/sanitize/entry_title_crazy.xml": "Crazy HTML -- Can Your Regex Parse This? "
    "Did The Javascript Execute? I will execute here, too, if you mouse over me",
    "wellformed/sanitize/feed_title_crazy.xml": "Crazy HTML -- Can Your Regex Parse This? "
    "Did The Javascript Execute? I will execute here, too, if you mouse over me",
    # "sa<!-- -- nonwhitespace >fe…": an HTML5 comment ends only at "-->", so here it runs to
    # the end (feedparser applies SGML's "--" pairs and keeps "fe").
    "wellformed/sanitize/xml_malicious_comment.xml": "sa",
}


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser test corpus not found at {CORPUS}")
    return sorted(p for folder in FOLDERS for p in (CORPUS / folder).rglob("*") if p.is_file())


def declared_headers(body: bytes) -> list[tuple[str, str]]:
    """The ``Header:`` lines of a corpus file, as (name, value) pairs."""
    head = body[:8192].replace(b"\x00", b"")
    return [
        (name.decode("ascii"), value.decode("latin-1")) for name, value in HEADER_LINE.findall(head)
    ]


class CorpusHandler(BaseHTTPRequestHandler):
    """Serves ``/<path under the corpus>`` with exactly the headers the file declares."""

    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves the whole corpus
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK (40 ms a file), which would make this test 20 times slower.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        relative = unquote(self.path.partition("?")[0]).lstrip("/")
        path = (CORPUS / relative).resolve()
        if not path.is_relative_to(CORPUS.resolve()) or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = path.read_bytes()
        self.send_response(200)
        for name, value in declared_headers(body):
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def corpus_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CorpusHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


SETTINGS = HttpSettings(
    user_agent="digest-corpus-tests/1.0",
    connect_timeout=2.0,
    read_timeout=2.0,
    total_timeout=float(PER_FILE_SECONDS),
    max_bytes=5_000_000,
    max_redirects=0,
)


@dataclass
class Outcome:
    """How the corpus went: counts, and one line per file that broke a rule."""

    with_articles: int = 0
    empty: int = 0
    feed_errors: int = 0
    fetch_errors: int = 0
    articles: int = 0
    titles_compared: int = 0
    failures: list[str] = field(default_factory=list)

    def merge(self, other: Outcome) -> None:
        """Add ``other``'s counts and failures to these."""
        for name in ("with_articles", "empty", "feed_errors", "fetch_errors", "articles"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.titles_compared += other.titles_compared
        self.failures.extend(other.failures)


def check_feed(name: str, feed: ParsedFeed) -> list[str]:
    """What is wrong with a parsed feed, if anything."""
    problems = []
    if FORBIDDEN.search(feed.title):
        problems.append(f"feed title {feed.title!r} has control/bidi characters")
    for a in feed.articles:
        if not ARTICLE_ID.fullmatch(a.id):
            problems.append(f"article id {a.id!r}")
        if a.published.tzinfo is None or (a.updated is not None and a.updated.tzinfo is None):
            problems.append(f"naive date in {a.id}")
        if FORBIDDEN.search(a.title) or a.title != a.title.strip():
            problems.append(f"title {a.title!r} is not one clean line")
        if a.source != SOURCE:
            problems.append(f"source {a.source!r}")
        for html in (a.summary_html, a.content_html):
            if UNSAFE_HTML.search(html):
                problems.append(f"unsafe HTML survived sanitising: {html[:200]!r}")
    return [f"{name}: {p}" for p in problems]


def expected_titles(body: bytes) -> list[tuple[str, str]]:
    """(where, title) pairs from an ``Expect:`` line that compares a title with a literal."""
    head = body[:4096].replace(b"\x00", b"").decode("utf-8", "replace")
    expect = next((line for line in head.splitlines() if "Expect:" in line), "")
    found = []
    for where, literal in EXPECT_TITLE.findall(expect):
        try:
            found.append((where, ast.literal_eval(literal)))
        except (ValueError, SyntaxError):
            continue
    return found


def compare_titles(name: str, body: bytes, feed: ParsedFeed) -> tuple[int, list[str]]:
    """Our titles against the corpus's expectations, where ours should equal the cleaned text.

    feedparser's expectation is the raw title (markup included); ours is that after
    ``clean_title``. Entries are compared only when no entry was dropped (no link and no
    title, a duplicate), so that "first" means the same item on both sides.
    """
    compared, problems = 0, []
    for where, raw in expected_titles(body):
        if where == "feed":
            ours = feed.title
        elif feed.articles and not any("skipped" in w for w in feed.warnings):
            ours = feed.articles[0].title
        else:
            continue
        compared += 1
        if ours != KNOWN_DIFFERENCES.get(name, clean_title(raw)):
            problems.append(f"{name}: {where} title {ours!r}, expected {clean_title(raw)!r}")
    return compared, problems


def run_one(fetcher: Fetcher, base: str, path: Path, outcome: Outcome) -> None:
    """Fetch and parse one corpus file, recording how it went in ``outcome``."""
    name = path.relative_to(CORPUS).as_posix()
    url = f"{base}/{quote(name)}"
    label = f"feed {SOURCE!r} ({url})"
    try:
        result = fetcher.fetch(url, allow_private=True)
        feed = parse_feed(
            result.body, source=SOURCE, url=result.url, now=NOW, content_type=result.content_type
        )
    except FeedError as e:
        outcome.feed_errors += 1
        if not e.message.startswith(label + ": "):
            outcome.failures.append(f"{name}: FeedError without the source: {e.message!r}")
        return
    except FetchError as e:
        outcome.fetch_errors += 1
        if url not in e.message:
            outcome.failures.append(f"{name}: FetchError without the URL: {e.message!r}")
        return
    except Exception as e:
        outcome.failures.append(f"{name}: {type(e).__name__} escaped: {e}")
        return
    if feed.articles:
        outcome.with_articles += 1
        outcome.articles += len(feed.articles)
    else:
        outcome.empty += 1
    outcome.failures.extend(check_feed(name, feed))
    compared, problems = compare_titles(name, path.read_bytes(), feed)
    outcome.titles_compared += compared
    outcome.failures.extend(problems)


def run_all(base: str, files: list[Path]) -> Outcome:
    """Every file in turn, each in a daemon thread given ``PER_FILE_SECONDS``.

    A thread rather than SIGALRM, so that pytest-timeout's own alarm stays in charge of the
    test as a whole. A file that hangs is reported and left behind (a daemon thread cannot
    hold up the exit), with its Fetcher: a requests Session is not shared between threads.
    """
    outcome = Outcome()
    fetcher = Fetcher(SETTINGS)
    try:
        for path in files:
            scratch = Outcome()  # a thread left behind must not write into the real one
            worker = threading.Thread(
                target=run_one, args=(fetcher, base, path, scratch), daemon=True
            )
            worker.start()
            worker.join(PER_FILE_SECONDS)
            if worker.is_alive():
                outcome.failures.append(
                    f"{path.relative_to(CORPUS)}: took longer than {PER_FILE_SECONDS} s"
                )
                fetcher = Fetcher(SETTINGS)
                continue
            outcome.merge(scratch)
    finally:
        fetcher.close()
    return outcome


def test_declared_headers_are_read_from_the_comment() -> None:
    body = (
        b"<?xml version='1.0'?>\n<!--\nHeader:      Content-type: text/xml; charset=koi8-r\n"
        b"Header:      Last-Modified:\nDescription: x\n-->\n<rss/>"
    )
    assert declared_headers(body) == [
        ("Content-type", "text/xml; charset=koi8-r"),
        ("Last-Modified", ""),
    ]
    assert declared_headers(body.decode().encode("utf-16-le"))[0][0] == "Content-type"


def test_expected_titles_are_read_from_the_expect_line() -> None:
    body = b"<!--\nExpect:      not bozo and feed['title'] == u'a \\u2026 b' and x\n-->"
    assert expected_titles(body) == [("feed", "a \u2026 b")]
    json_style = (
        b'"__TEST__": "Expect: not bozo and feed.title == \'My Feed\' and len(entries) == 2'
    )
    assert expected_titles(json_style) == [("feed", "My Feed")]


def test_corpus_over_http_parses_or_fails_cleanly(corpus_server: str) -> None:
    files = corpus_files()
    assert len(files) > 2000, f"expected the whole corpus under {CORPUS}, found {len(files)}"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.monotonic()
    outcome = run_all(corpus_server, files)
    elapsed = time.monotonic() - started
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024

    summary = (
        f"{len(files)} files in {elapsed:.1f} s: {outcome.with_articles} with "
        f"{outcome.articles} articles, {outcome.empty} valid but empty, "
        f"{outcome.feed_errors} FeedError, {outcome.fetch_errors} FetchError; "
        f"{outcome.titles_compared} titles compared with Expect; "
        f"peak memory grew {growth_mb:.0f} MB"
    )
    print(summary)
    assert not outcome.failures, f"{summary}\n{len(outcome.failures)} problems:\n" + "\n".join(
        outcome.failures
    )
    assert outcome.with_articles > 200, summary
    assert elapsed < TOTAL_SECONDS, summary
    assert growth_mb < MEMORY_GROWTH_MB, summary
