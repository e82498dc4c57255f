"""HTTP servers on 127.0.0.1 for tests: a folder of feeds and pages, plus broken endpoints."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class FeedServer:
    """Serves files from ``root`` with ETag validators, plus a few broken endpoints."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, int]] = []
        self.redirects: dict[str, str] = {}  # path -> path it moved to (301)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
                server.requests.append((self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)  # the client may have given up (timeout tests)

            def do_GET(self) -> None:
                if self.path in server.redirects:
                    server.requests.append((self.path, 301))
                    self.send_response(301)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if self.path == "/broken.xml":
                    return self._send(500, b"internal error")
                if self.path == "/malformed.xml":
                    return self._send(200, b"<rss><channel><item><title>x</ti", "application/xml")
                if self.path == "/slow.xml":
                    time.sleep(3)
                    return self._send(200, b"<rss/>", "application/xml")
                path = server.root / urlsplit(self.path).path.lstrip("/")
                if not path.is_file():
                    return self._send(404, b"not found")
                body = path.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    server.requests.append((self.path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return None
                server.requests.append((self.path, 200))
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# A feed whose article pages fail in several ways ----------------------------------------------

# The hosts `noisy_feed` links to that do not resolve (see `stub_resolver`).
UNRESOLVED = "nowhere.test"


def noisy_feed(server: FeedServer, name: str = "noisy.xml") -> dict[str, int]:
    """Write a feed of thin items (a title and a link) whose pages fail in several ways: three
    on a host that does not resolve, two missing (404), one answering 500 and one that is no
    article; one page is read. Returns how many pages fail each way, by reason."""
    pages = server.root / "pages"
    pages.mkdir(exist_ok=True)
    seed = Path(__file__).resolve().parent / "data" / "pages" / "seed_like.html"
    (pages / "good.html").write_bytes(seed.read_bytes())
    (pages / "blank.html").write_text("<html><body><p>Hi.</p></body></html>", encoding="utf-8")
    links = [
        *(f"http://{UNRESOLVED}/story-{n}" for n in (1, 2, 3)),
        f"{server.base}/pages/gone-1.html",
        f"{server.base}/pages/gone-2.html",
        f"{server.base}/broken.xml",
        f"{server.base}/pages/blank.html",
        f"{server.base}/pages/good.html",
    ]
    items = "".join(
        f"<item><title>Story {n}</title><link>{link}</link><guid>noisy-{n}</guid>"
        "<pubDate>Fri, 27 Nov 2026 10:00:00 +0000</pubDate></item>"
        for n, link in enumerate(links, 1)
    )
    (server.root / name).write_text(
        f'<rss version="2.0"><channel><title>Noisy</title><link>{server.base}/</link>'
        f"{items}</channel></rss>",
        encoding="utf-8",
    )
    return {"cannot resolve host": 3, "HTTP 404": 2, "HTTP 500": 1, "no article text": 1}


def stub_resolver(host: str, port: int, *args: object, **kwargs: object) -> list[Any]:
    """``socket.getaddrinfo`` without DNS: IP literals resolve to themselves, anything else
    (such as `UNRESOLVED`) does not resolve."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]


@contextlib.contextmanager
def serve_app(app: object) -> Iterator[str]:
    """An ASGI app served by uvicorn on a free loopback port, in a thread: its base URL, until
    the block ends."""
    import socket

    import httpx
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("the web app did not start within 10 s")
        time.sleep(0.02)
    assert httpx.get(f"{url}/healthz", trust_env=False).json() == {"ok": True}
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
