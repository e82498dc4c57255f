"""A provider API on 127.0.0.1 for tests: records every request and answers through a
``respond`` function, which a fake provider (``tests/delivery/fake_*.py``) supplies.

``respond`` gets the :class:`Request` and returns ``(status, headers, body)``; ``body`` may be
bytes, str or anything JSON-serialisable. ``script`` holds canned answers that come first, in
order (e.g. a 429 with Retry-After, then a 503), so a test can stage an outage and the recovery.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]


@dataclass
class Request:
    method: str
    path: str
    headers: Message
    body: bytes
    answer: int = 0  # the status code it got

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> list[tuple[str, str]]:
        """The fields of a multipart/form-data or urlencoded body, in order (repeats kept)."""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qsl

            return parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True)
        if not ctype.startswith("multipart/form-data"):
            raise ValueError(f"not a form: {ctype!r}")
        head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        out = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            out.append((str(name), payload.decode("utf-8")))
        return out


@dataclass
class ApiServer:
    """Start with ``with ApiServer(respond) as api: ... api.url ...``."""

    respond: Callable[[Request], Answer]
    requests: list[Request] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)

    def __enter__(self) -> ApiServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Request(self.command, self.path, self.headers, body)
                api.requests.append(request)
                status, headers, payload = api.script.pop(0) if api.script else api.respond(request)
                request.answer = status
                if isinstance(payload, bytes):
                    data = payload
                elif isinstance(payload, str):
                    data = payload.encode()
                else:
                    data = json.dumps(payload).encode()
                    headers = {"Content-Type": "application/json", **headers}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
