"""The safe fetch against a real HTTP server on loopback.

Nothing here touches the network beyond 127.0.0.1: names resolve through a stub resolver, and
an autouse guard fails any test whose client tries to connect anywhere else.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import urllib3.util.connection

from digest.config import HttpSettings
from digest.errors import PermanentFetchError, TransientFetchError
from digest.gather.feeds import parse_feed
from digest.gather.http import (
    Fetcher,
    FetchResult,
    TransientHttpError,
    parse_retry_after,
    read_file,
    refusal_reason,
)
from tests.tls import self_signed

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
ETAG = '"v1"'
LAST_MODIFIED = "Mon, 06 Jan 2025 10:00:00 GMT"
BOMB = gzip.compress(b"\0" * 5_000_000, compresslevel=9)  # ~5 KB on the wire, 5 MB decoded
HUGE = 50 * 2**20  # what /huge and /huge-unsized would send if nobody stopped reading
NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def rss(title: str, declaration: str = '<?xml version="1.0"?>') -> str:
    """A one-item RSS feed whose feed and item titles are both ``title``."""
    return (
        f'{declaration}<rss version="2.0"><channel><title>{title}</title>'
        f"<link>https://news.example.org/</link><item><title>{title}</title>"
        "<link>https://news.example.org/a</link></item></channel></rss>"
    )


RUSSIAN = "Новости: погода и море, Ёж"  # cp1251 and koi8-r both carry these
FRENCH = "Café crème à la fenêtre"
JSON_FEED = (
    b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": '
    b'[{"id": "json-1", "url": "https://news.example.org/j", "title": "Caf\\u00e9"}]}'
)
# Served as they are, with the Content-Type given (None: no header at all).
TYPED_BODIES: dict[str, tuple[bytes, str | None]] = {
    "/as-html": (rss(FRENCH).encode(), "text/html"),
    "/no-type": (rss(FRENCH).encode(), None),
    "/empty-as-html": (
        b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>',
        "text/html",
    ),
    # The header's charset, with bytes to match and no declaration of their own.
    "/cp1251": (rss(RUSSIAN).encode("cp1251"), "application/rss+xml; charset=windows-1251"),
    # The header's charset wins over a declaration that is wrong.
    "/latin1-header-wins": (
        rss(FRENCH, '<?xml version="1.0" encoding="utf-8"?>').encode("latin-1"),
        "application/rss+xml; charset=iso-8859-1",
    ),
    # Only the declaration says koi8-r; text/xml alone meant US-ASCII under RFC 3023.
    "/koi8": (rss(RUSSIAN, '<?xml version="1.0" encoding="koi8-r"?>').encode("koi8-r"), "text/xml"),
    "/json": (JSON_FEED, "application/feed+json"),
}


@dataclass
class Seen:
    """What the server saw: one (path, headers) per request; bytes written per huge path."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    finished: dict[str, threading.Event] = field(
        default_factory=lambda: {p: threading.Event() for p in ("/huge", "/huge-unsized")}
    )

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: Seen

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.requests.append((self.path, dict(self.headers.items())))
        path, _, _ = self.path.partition("?")
        port = cast(tuple[str, int], self.server.server_address)[1]
        if path == "/feed":
            if self.headers.get("If-None-Match") == ETAG:
                self._send(304, ETag=ETAG)
                return
            self._send(
                200,
                FEED,
                Content_Type="application/rss+xml",
                ETag=ETAG,
                Last_Modified=LAST_MODIFIED,
            )
        elif path == "/500":
            self._send(500, b"oops")
        elif path == "/429":
            self._send(429, b"slow down", Retry_After="7")
        elif path == "/503":
            self._send(503, b"maintenance")
        elif path == "/404":
            self._send(404, b"gone")
        elif path == "/drip":
            # Each byte arrives within the read timeout, but the whole never ends in time.
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.flush()
            time.sleep(1.5)
        elif path == "/big":
            self._send(200, b"x" * 3000)
        elif path == "/big-unsized":
            # No Content-Length: only the streaming cap can stop it.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"x" * 1000)
            self.close_connection = True
        elif path in ("/huge", "/huge-unsized"):
            self._huge(path)
        elif path in TYPED_BODIES:
            body, content_type = TYPED_BODIES[path]
            self._send(200, body, **({"Content_Type": content_type} if content_type else {}))
        elif path.startswith("/via/"):
            # /via/301,308 answers 301 to /via/308, which answers 308 to /via/, the feed.
            codes = path.removeprefix("/via/")
            if codes:
                first, _, rest = codes.partition(",")
                self._send(int(first), Location=f"/via/{rest}")
            elif self.headers.get("If-None-Match") == ETAG:
                self._send(304, ETag=ETAG)
            else:
                self._send(200, FEED, Content_Type="application/rss+xml", ETag=ETAG)
        elif path == "/bomb":
            self._send(200, BOMB, Content_Encoding="gzip", Content_Type="application/xml")
        elif path == "/gzip":
            self._send(200, gzip.compress(FEED), Content_Encoding="gzip")
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self._send(200, FEED)
            else:
                self._send(302, Location=f"/hop/{left - 1}")
        elif path == "/to-ftp":
            self._send(301, Location="ftp://127.0.0.1/feed.xml")
        elif path == "/to-internal":
            self._send(302, Location="http://internal.test/feed")
        elif path == "/to-name":
            self._send(307, Location=f"http://feed.test:{port}/feed")
        elif path.startswith("/to-port/"):
            self._send(302, Location=f"http://127.0.0.1:{path.rsplit('/', 1)[1]}/feed")
        else:
            self._send(404)

    def _huge(self, path: str) -> None:
        """50 MB, written until the client hangs up; counts what the socket accepted."""
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        if path == "/huge":
            self.send_header("Content-Length", str(HUGE))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"<!-- padding -->" * 4096  # 64 KiB
        written = 0
        try:
            while written < HUGE:
                self.wfile.write(chunk)
                written += len(chunk)
        except OSError:  # the client closed the connection: the point of the test
            pass
        finally:
            self.seen.written[path] = written
            self.seen.finished[path].set()


Resolver = Callable[..., list[Any]]


def stub_resolver(table: dict[str, str]) -> Resolver:
    """A getaddrinfo stand-in: IP literals resolve to themselves, names through ``table``."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, f"stub: unknown host {host}") from None
            address = table[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


NAMES = {
    "feed.test": "127.0.0.1",
    "internal.test": "10.0.0.1",
    "mapped.test": "::ffff:10.0.0.1",
    "public.test": "93.184.216.34",
}


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every connection the client opens; anything but loopback fails the test at once.

    Also breaks the system resolver, so a name that reached it (rather than being pinned to
    the address we checked) would fail instead of querying DNS.
    """
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        host = address[0].strip("[]")
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"test tried to connect to {address}")
        return real(address, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(host: Any, *args: Any, **kwargs: Any) -> list[Any]:
        ipaddress.ip_address(host if isinstance(host, str) else host.decode())
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    yield attempts


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    handler = type("BoundHandler", (Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


SETTINGS = HttpSettings(
    user_agent="digest-tests/1.0",
    connect_timeout=0.5,
    read_timeout=0.5,
    total_timeout=1.0,
    max_bytes=100_000,
    max_redirects=3,
)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(SETTINGS, resolver=stub_resolver(NAMES)) as f:
        yield f


# Success and conditional GET ----------------------------------------------------------------
def test_200_returns_body_and_validators_and_sends_our_headers(
    server: tuple[str, Seen], fetcher: Fetcher
) -> None:
    base, seen = server
    result = fetcher.fetch(f"{base}/feed", allow_private=True)
    assert result == FetchResult(
        url=f"{base}/feed",
        status=200,
        body=FEED,
        etag=ETAG,
        last_modified=LAST_MODIFIED,
        content_type="application/rss+xml",
    )
    headers = seen.requests[-1][1]
    assert headers["User-Agent"] == "digest-tests/1.0"
    assert headers["Accept-Encoding"] == "gzip"
    assert "application/rss+xml" in headers["Accept"]
    assert "application/feed+json" in headers["Accept"]
    assert "If-None-Match" not in headers


def test_matching_etag_gives_304_with_empty_body(
    server: tuple[str, Seen], fetcher: Fetcher
) -> None:
    base, seen = server
    result = fetcher.fetch(
        f"{base}/feed", etag=ETAG, last_modified=LAST_MODIFIED, allow_private=True
    )
    assert (result.status, result.body, result.etag) == (304, b"", ETAG)
    assert result.last_modified == LAST_MODIFIED  # kept from the request when not repeated
    headers = seen.requests[-1][1]
    assert headers["If-None-Match"] == ETAG
    assert headers["If-Modified-Since"] == LAST_MODIFIED


def test_gzip_body_is_decoded(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    assert fetcher.fetch(f"{base}/gzip", allow_private=True).body == FEED


# Status codes ---------------------------------------------------------------------------------
def test_500_is_transient_and_names_url_and_status(
    server: tuple[str, Seen], fetcher: Fetcher
) -> None:
    base, _ = server
    with pytest.raises(TransientFetchError) as info:
        fetcher.fetch(f"{base}/500", allow_private=True)
    assert info.value.message == f"{base}/500: HTTP 500"
    assert info.value.retryable


def test_429_carries_retry_after(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    with pytest.raises(TransientHttpError) as info:
        fetcher.fetch(f"{base}/429", allow_private=True)
    assert info.value.status == 429
    assert info.value.retry_after == 7.0
    assert f"{base}/429: HTTP 429" in info.value.message
    assert "Retry-After: 7 s" in info.value.message


def test_503_without_retry_after(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    with pytest.raises(TransientHttpError) as info:
        fetcher.fetch(f"{base}/503", allow_private=True)
    assert info.value.retry_after is None


def test_404_is_permanent(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    with pytest.raises(PermanentFetchError, match="HTTP 404") as info:
        fetcher.fetch(f"{base}/404", allow_private=True)
    assert not info.value.retryable


def test_retry_after_as_http_date() -> None:
    now = dt.datetime(2025, 1, 6, 10, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Mon, 06 Jan 2025 10:01:30 GMT", now) == 90.0
    assert parse_retry_after("Mon, 06 Jan 2025 09:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None) is None


# Time and size ----------------------------------------------------------------------------
def test_total_deadline_stops_a_dripping_body(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    started = time.monotonic()
    with pytest.raises(TransientFetchError, match="deadline"):
        fetcher.fetch(f"{base}/drip", allow_private=True)
    assert time.monotonic() - started < 2.0


def test_read_timeout_on_a_stalled_body(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    with pytest.raises(TransientFetchError, match=f"{base}/stall"):
        fetcher.fetch(f"{base}/stall", allow_private=True)


def test_connection_refused_is_transient(fetcher: Fetcher) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: nobody answers
        with pytest.raises(TransientFetchError, match="connection failed"):
            fetcher.fetch(f"http://127.0.0.1:{port}/feed", allow_private=True)


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_oversized_body_is_refused(server: tuple[str, Seen], path: str) -> None:
    base, _ = server
    small = SETTINGS.model_copy(update={"max_bytes": 1000})
    with (
        Fetcher(small, resolver=stub_resolver(NAMES)) as f,
        pytest.raises(PermanentFetchError, match="cap of 1000 bytes"),
    ):
        f.fetch(base + path, allow_private=True)


def test_gzip_bomb_stops_at_the_decoded_cap(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    assert len(BOMB) < SETTINGS.max_bytes  # small on the wire ...
    with pytest.raises(PermanentFetchError, match="decoded body exceeds the cap of 100000"):
        fetcher.fetch(f"{base}/bomb", allow_private=True)  # ... huge once decoded


@pytest.mark.parametrize("path", ["/huge", "/huge-unsized"])
def test_a_50_mb_body_is_refused_without_reading_it_all(
    server: tuple[str, Seen], fetcher: Fetcher, path: str
) -> None:
    # /huge declares its 50 MB (refused before reading); /huge-unsized does not (refused by the
    # streaming cap). Either way we hang up: the server writes only what the socket buffers
    # take before its next write fails, nowhere near 50 MB, and the fetch returns at once.
    base, seen = server
    started = time.monotonic()
    with pytest.raises(PermanentFetchError, match="cap of 100000 bytes"):
        fetcher.fetch(base + path, allow_private=True)
    assert time.monotonic() - started < 1.0
    assert seen.finished[path].wait(10), "the server kept writing after we hung up"
    assert seen.written[path] < HUGE // 4


# Content types and encodings: the Content-Type the fetch returns reaches parse_feed --------
def fetch_and_parse(fetcher: Fetcher, url: str) -> tuple[FetchResult, list[str]]:
    """Fetch ``url`` and parse it as gather does; the result and [feed title, titles...]."""
    result = fetcher.fetch(url, allow_private=True)
    feed = parse_feed(
        result.body, source="t", url=result.url, now=NOW, content_type=result.content_type
    )
    # Not decoded by a fallback after a failed guess (feedparser's "bozo" path), nor flagged.
    assert not [w for w in feed.warnings if "despite problems" in w], feed.warnings
    return result, [feed.title, *(a.title for a in feed.articles)]


@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/as-html", FRENCH),
        ("/no-type", FRENCH),
        ("/cp1251", RUSSIAN),
        ("/latin1-header-wins", FRENCH),
        ("/koi8", RUSSIAN),
    ],
)
def test_titles_come_out_right_whatever_the_content_type_and_charset(
    server: tuple[str, Seen], fetcher: Fetcher, path: str, title: str
) -> None:
    base, _ = server
    result, titles = fetch_and_parse(fetcher, base + path)
    assert result.content_type == TYPED_BODIES[path][1]
    assert titles == [title, title]


def test_an_empty_feed_served_as_html_is_not_an_error(
    server: tuple[str, Seen], fetcher: Fetcher
) -> None:
    base, _ = server
    assert fetch_and_parse(fetcher, f"{base}/empty-as-html")[1] == ["Quiet"]


def test_a_json_feed_is_fetched_and_parsed(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    result, titles = fetch_and_parse(fetcher, f"{base}/json")
    assert result.content_type == "application/feed+json"
    assert titles == ["J", "Café"]


# Redirects ----------------------------------------------------------------------------------
def test_redirects_are_followed_within_the_cap(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    result = fetcher.fetch(f"{base}/hop/3", allow_private=True)
    assert (result.url, result.body) == (f"{base}/hop/0", FEED)


def test_too_many_redirects(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, seen = server
    with pytest.raises(PermanentFetchError, match="too many redirects"):
        fetcher.fetch(f"{base}/hop/9", allow_private=True)
    assert seen.paths()[-4:] == ["/hop/9", "/hop/8", "/hop/7", "/hop/6"]


def test_redirect_to_ftp_is_refused(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, _ = server
    with pytest.raises(PermanentFetchError, match="scheme 'ftp' refused"):
        fetcher.fetch(f"{base}/to-ftp", allow_private=True)


def test_redirect_to_a_private_address_is_refused_before_connecting(
    server: tuple[str, Seen],
    connections: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test server must live on loopback, so let loopback pass as if it were public; the
    # hop to internal.test (10.0.0.1 by the stub resolver) meets the real policy.
    real = refusal_reason
    monkeypatch.setattr(
        "digest.gather.http.refusal_reason", lambda a: None if a.is_loopback else real(a)
    )
    base, seen = server
    with (
        Fetcher(SETTINGS, resolver=stub_resolver(NAMES)) as f,
        pytest.raises(PermanentFetchError) as info,
    ):
        f.fetch(f"{base}/to-internal")
    assert info.value.message.startswith("http://internal.test/feed: address 10.0.0.1")
    assert "refused (private)" in info.value.message
    assert seen.paths()[-1] == "/to-internal"
    assert {host for host, _ in connections} == {"127.0.0.1"}  # never 10.0.0.1


def test_the_private_licence_is_the_first_urls_origin_only(
    server: tuple[str, Seen], connections: list[tuple[str, int]]
) -> None:
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    with socket.socket() as spare:  # a port nothing listens on once closed
        spare.bind(("127.0.0.1", 0))
        other = spare.getsockname()[1]
    with Fetcher(SETTINGS, resolver=stub_resolver(NAMES)) as f:
        with pytest.raises(PermanentFetchError) as info:
            f.fetch(f"{base}/to-internal", allow_private=True)
        assert "refused (private)" in info.value.message
        assert f"its own origin (http://127.0.0.1:{port})" in info.value.message
        with pytest.raises(PermanentFetchError, match=r"refused \(loopback\); a `local` source"):
            f.fetch(f"{base}/to-port/{other}", allow_private=True)
        # The same origin, spelt with its default port or not, keeps the licence.
        assert f.fetch(f"{base}/via/302", allow_private=True).body == FEED
    assert set(connections) == {("127.0.0.1", port)}


def test_origin() -> None:
    from digest.gather.http import origin

    assert origin("http://Example.ORG/feed") == ("http", "example.org", 80)
    assert origin("http://example.org:80/x") == origin("http://example.org/y")
    assert origin("https://example.org/") == ("https", "example.org", 443)
    assert origin("http://127.0.0.1:8080/") != origin("http://127.0.0.1:8081/")
    assert origin("https://127.0.0.1:8080/") != origin("http://127.0.0.1:8080/")
    assert origin("http://[::1]:5/") == ("http", "::1", 5)
    assert origin("http://bücher.example/") == ("http", "xn--bcher-kva.example", 80)
    for bad in ("ftp://example.org/", "feed.xml", "http://example.org:99999/", "http:///x"):
        assert origin(bad) is None


def test_every_redirect_status_is_followed(server: tuple[str, Seen]) -> None:
    base, seen = server
    five = SETTINGS.model_copy(update={"max_redirects": 5})
    with Fetcher(five, resolver=stub_resolver(NAMES)) as f:
        result = f.fetch(f"{base}/via/301,302,303,307,308", allow_private=True)
    assert (result.url, result.status, result.body) == (f"{base}/via/", 200, FEED)
    assert seen.paths()[-6:] == [
        "/via/301,302,303,307,308",
        "/via/302,303,307,308",
        "/via/303,307,308",
        "/via/307,308",
        "/via/308",
        "/via/",
    ]


def test_304_at_the_end_of_a_redirect_chain(server: tuple[str, Seen], fetcher: Fetcher) -> None:
    base, seen = server
    result = fetcher.fetch(
        f"{base}/via/301,308", etag=ETAG, last_modified=LAST_MODIFIED, allow_private=True
    )
    assert (result.url, result.status, result.body, result.etag) == (
        f"{base}/via/",
        304,
        b"",
        ETAG,
    )
    # The validators went out on every hop, not only the first.
    assert [h.get("If-None-Match") for _, h in seen.requests[-3:]] == [ETAG] * 3


# Addresses ----------------------------------------------------------------------------------
def test_loopback_is_refused_without_allow_private(
    server: tuple[str, Seen], fetcher: Fetcher, connections: list[tuple[str, int]]
) -> None:
    base, _ = server
    with pytest.raises(PermanentFetchError, match=r"address 127\.0\.0\.1 .* \(loopback\)"):
        fetcher.fetch(f"{base}/feed")
    assert connections == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://internal.test/feed", "private"),
        ("http://mapped.test/feed", "private"),  # ::ffff:10.0.0.1 is 10.0.0.1
        ("http://[::1]/feed", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "not globally routable"),
        ("http://240.0.0.1/", "reserved"),
    ],
)
def test_non_global_addresses_are_refused_without_connecting(
    fetcher: Fetcher, connections: list[tuple[str, int]], url: str, reason: str
) -> None:
    with pytest.raises(PermanentFetchError, match=f"refused \\({reason}\\)"):
        fetcher.fetch(url)
    assert connections == []


def test_a_name_with_any_private_address_is_refused(connections: list[tuple[str, int]]) -> None:
    def two_answers(host: str, port: int, *a: Any, **kw: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.1", port)),
        ]

    with Fetcher(SETTINGS, resolver=two_answers) as f, pytest.raises(PermanentFetchError):
        f.fetch("https://split.test/feed")
    assert connections == []


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/feed", "file:///etc/passwd", "gopher://x/", "feed.xml"]
)
def test_other_schemes_are_refused(fetcher: Fetcher, url: str) -> None:
    with pytest.raises(PermanentFetchError, match="refused; only http and https"):
        fetcher.fetch(url, allow_private=True)


def test_unknown_host_is_transient(fetcher: Fetcher) -> None:
    with pytest.raises(TransientFetchError, match=r"cannot resolve 'nowhere\.test'"):
        fetcher.fetch("http://nowhere.test/feed")


def test_public_address_passes_the_check(fetcher: Fetcher) -> None:
    target = fetcher._check("https://public.test/feed", allow_private=False)
    assert str(target.address) == "93.184.216.34"
    assert (
        target.pinned_url("https://public.test/feed?x=1#f") == "https://93.184.216.34:443/feed?x=1"
    )


def test_connection_is_pinned_to_the_checked_address(
    server: tuple[str, Seen], fetcher: Fetcher, connections: list[tuple[str, int]]
) -> None:
    # The system resolver is broken by the guard fixture: this only works because the socket
    # goes to the address the stub resolver gave for feed.test, with the name kept in Host.
    base, seen = server
    port = int(base.rsplit(":", 1)[1])
    result = fetcher.fetch(f"http://feed.test:{port}/to-name", allow_private=True)
    assert result.url == f"http://feed.test:{port}/feed"
    assert result.body == FEED
    assert seen.requests[-1][1]["Host"] == f"feed.test:{port}"
    assert {host for host, _ in connections} == {"127.0.0.1"}


# TLS with a pinned address ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Seen]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"), "feed.test")
    seen = Seen()
    handler = type("TlsHandler", (Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], cert, seen
    httpd.shutdown()
    httpd.server_close()


def test_https_pinned_keeps_sni_and_certificate_check(
    tls_server: tuple[int, Path, Seen],
) -> None:
    port, cert, seen = tls_server
    session = requests.Session()
    session.verify = str(cert)
    with Fetcher(SETTINGS, resolver=stub_resolver(NAMES), session=session) as f:
        result = f.fetch(f"https://feed.test:{port}/feed", allow_private=True)
    assert result.body == FEED
    assert seen.requests[-1][1]["Host"] == f"feed.test:{port}"
    session.close()


def test_https_certificate_for_another_name_is_refused(
    tls_server: tuple[int, Path, Seen],
) -> None:
    port, cert, _ = tls_server
    session = requests.Session()
    session.verify = str(cert)
    names = {**NAMES, "other.test": "127.0.0.1"}
    with (
        Fetcher(SETTINGS, resolver=stub_resolver(names), session=session) as f,
        pytest.raises(PermanentFetchError, match="TLS error"),
    ):
        f.fetch(f"https://other.test:{port}/feed", allow_private=True)
    session.close()


# Local files --------------------------------------------------------------------------------
def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    result = read_file(path, 1000)
    assert (result.url, result.status, result.body) == (path.as_uri(), 200, FEED)


def test_read_file_missing_or_too_big(tmp_path: Path) -> None:
    with pytest.raises(PermanentFetchError, match="no such file"):
        read_file(tmp_path / "missing.xml", 1000)
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    with pytest.raises(PermanentFetchError, match="exceeds the cap of 10 bytes"):
        read_file(path, 10)
