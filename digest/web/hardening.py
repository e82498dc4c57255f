"""What protects the app whatever the route: security headers on every response and a cap on the
bodies of its forms (``Hardening``), the refusal of a body past a cap (``TooLarge``, the
webhooks raise it too), rate limits (``SlidingWindow``) and link tokens kept out of the access
log (``RedactTokens``).

Every response carries a Content-Security-Policy (by default the pages' own: no script, only
their stylesheet, by its hash), refuses framing, sends no Referer (tokens are in the URLs), and
is ``Cache-Control: no-store``; a route that sets its own of these headers keeps them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The app's forms are small; a bigger body is refused unread. (Webhooks cap their own.)
MAX_BODY = 64 * 1024
FORM_PATHS = ("/u/", "/p/", "/confirm/", "/subscribe", "/editions")
# Confirmation messages to one address, at most, per day (whoever asks for them).
CONFIRMATIONS_PER_DAY = 3


class TooLarge(Exception):
    """A request body went past its cap while it was read."""


class Hardening:
    """Security headers on every response, and a cap on the bodies of the app's own forms
    (413 past it). Other routes (the webhooks) take bodies of their own size and cap them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        csp: str,
        capped: tuple[str, ...] = FORM_PATHS,
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.capped = capped
        self.max_body = max_body
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"x-robots-tag", b"noindex, nofollow"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.headers if n not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if not str(scope.get("path", "")).startswith(self.capped):
            await self.app(scope, receive, send_with_headers)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(send_with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except TooLarge:
            if started:
                raise
            await self._refuse(send_with_headers)

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = b"Request body too large\n"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SlidingWindow:
    """At most ``limit`` hits per key in any ``window`` seconds; in memory, per app instance
    (several worker processes each count on their own)."""

    MAX_KEYS = 10_000

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float) -> float:
        """Count a hit at ``now`` (seconds); 0 when allowed, else the seconds to wait before
        the next one is (a refused hit is not counted)."""
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            if len(self._hits) > self.MAX_KEYS:
                self._forget_idle(now)
            return 0.0

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]


_TOKEN_PATH = re.compile(r"^/(u|p|confirm)/[^/?\s]+")
_TOKEN_QUERY = re.compile(r"([?&]token=)[^&#\s]+")


class RedactTokens(logging.Filter):
    """Keeps link tokens and the editors' login token out of the access log: anyone who can
    read a token can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = _TOKEN_QUERY.sub(r"\1…", _TOKEN_PATH.sub(r"/\1/…", args[2]))
            record.args = (*args[:2], path, *args[3:])
        return True
