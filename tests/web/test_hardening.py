"""What every response of the web app gets (``digest.web.hardening``): the security headers, the
policy that allows exactly the pages' stylesheet, the cap on form bodies, link tokens kept out
of the access log, and redirects that never name the request's Host.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from digest.models import SubscriberStatus
from digest.store import Store
from digest.web.hardening import RedactTokens
from tests.web.conftest import BASE, ONE_CLICK, Add, link, status_of

S = SubscriberStatus


def test_security_headers_on_every_response(client: TestClient, add: Add):
    sub = add()
    responses = [
        client.get(link(sub, "unsubscribe")),
        client.get(link(sub, "preferences")),
        client.get("/subscribe"),
        client.get("/u/garbage"),
        client.get("/healthz"),
        client.get("/no-such-page", headers={"Accept": "text/html"}),
        client.post(link(sub, "unsubscribe"), data=ONE_CLICK),
    ]
    for r in responses:
        h = r.headers
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["X-Frame-Options"] == "DENY"
        assert h["Cache-Control"] == "no-store"
        csp = h["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "script-src" not in csp
        assert "set-cookie" not in h


def test_the_policy_allows_exactly_the_pages_stylesheet(client: TestClient):
    r = client.get("/subscribe")
    style = re.search(r"<style>(.*?)</style>", r.text, re.S)
    assert style
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in r.headers["Content-Security-Policy"]
    assert "<script" not in r.text and " style=" not in r.text
    assert '<html lang="en" dir="ltr">' in r.text
    assert 'name="viewport"' in r.text and "prefers-color-scheme: dark" in r.text


def test_a_body_too_large_is_refused(client: TestClient, store: Store, add: Add):
    sub = add()
    declared = client.post(link(sub, "unsubscribe"), content=b"x" * 100_000)
    assert declared.status_code == 413
    assert declared.headers["Referrer-Policy"] == "no-referrer"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"List-Unsubscribe=One-Click&x="
        for _ in range(20):
            yield b"x" * 8192

    streamed = client.post(
        link(sub, "unsubscribe"),
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert status_of(store, sub) is S.ACTIVE
    # The webhooks take bigger bodies (event batches) and cap them themselves.
    big = client.post("/webhooks/sendgrid", content=b"[" + b" " * 100_000 + b"]")
    assert big.status_code != 413


def test_tokens_stay_out_of_the_access_log():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/u/MTI.aBc.dEf-_x?x=1", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "POST /u/…?x=1 HTTP/1.1" 200'
    for path, shown in [
        ("/confirm/abc", "/confirm/…"),
        ("/subscribe", "/subscribe"),
        ("/editor/login?token=s3cr3t&x=1", "/editor/login?token=…&x=1"),
    ]:
        record.args = ("c", "GET", path, "1.1", 200)
        RedactTokens().filter(record)
        assert shown in record.getMessage()


def _paths(routes: list[Any]) -> Iterator[str]:
    """Every route's path, its parameters filled in."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _paths(inner.routes)
        elif isinstance(getattr(route, "path", None), str):
            yield re.sub(r"\{[^}]+\}", "x", route.path)


def test_no_redirect_names_the_requests_host(app: FastAPI, add: Add) -> None:
    sub = add()
    evil = {"Host": "evil.example"}
    paths = sorted(set(_paths(app.routes)))
    assert {"/", "/subscribe", "/editions", "/u/x", "/healthz"} <= set(paths)
    locations = []
    with TestClient(app, base_url=BASE, client=("127.0.0.1", 5000)) as c:
        for path in [*paths, link(sub, "unsubscribe"), link(sub, "preferences"), "//evil.example"]:
            for tail in ("", "/", "//", "/?next=1"):
                for method in ("GET", "POST"):
                    r = c.request(method, path + tail, headers=evil, follow_redirects=False)
                    if "location" in r.headers:
                        locations.append((method, path + tail, r.headers["location"]))
        # Trailing slashes: the route, by a relative redirect that keeps the method and query.
        r = c.get("/subscribe/?digest=weekly", headers=evil, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (307, "/subscribe?digest=weekly")
        assert c.post("/subscribe/", headers=evil, follow_redirects=False).status_code == 307
        assert c.get("/subscribe/").status_code == 200
        # A path that starts "//" (httpx would read the string as another host's "/", so the
        # raw path is given): no route, and no redirect to a network-path reference.
        raw = httpx.URL(BASE, raw_path=b"//evil.example/")
        assert c.send(c.build_request("GET", raw), follow_redirects=False).status_code == 404
        # "/" itself is the front door: a relative redirect, whatever the Host says.
        r = c.get("/", headers=evil, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/subscribe")
    assert locations
    for method, path, location in locations:
        assert "evil" not in location, (method, path, location)
        assert location.startswith(BASE) or re.match(r"^/(?![/\\])", location), location
