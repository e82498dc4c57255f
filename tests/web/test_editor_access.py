"""Who gets into the editors' pages (``digest.web.editor``): never anyone without a secret; the
secret ``digest web`` makes when none is configured signs in through its login URL, and only
from this machine: a loopback client, a local Host, and no header a proxy adds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect
from pydantic import SecretStr

from digest.config import Settings
from digest.delivery.memory import MemoryProvider
from digest.models import Edition, EditionStatus
from digest.store import Store
from digest.web.app import create_app, editors_banner
from tests.web.conftest import Clock
from tests.web.test_browser import base_url, browser
from tests.web.test_editor import BEARER, TOKEN, edition, settings

__all__ = ["base_url", "browser", "edition", "settings"]

# What `digest web` would make for its process (secrets.token_urlsafe).
MADE = "made-for-this-process-only"
MADE_BEARER = {"Authorization": f"Bearer {MADE}"}
# The app as a local browser reaches it. https: the session cookie is Secure, and the test
# client (unlike browsers on loopback) sends Secure cookies over https only.
LOCAL = "https://127.0.0.1:8080"
PROXY_HEADERS = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": "for=203.0.113.9;host=news.example.org;proto=https"},
    {"X-Real-IP": "203.0.113.9"},
    {"X-Forwarded-Host": "news.example.org"},
    {"X-Forwarded-Proto": "https"},
]


@pytest.fixture
def make_app(
    settings: Settings, store: Store, clock: Clock, provider: MemoryProvider
) -> Callable[..., FastAPI]:
    def _make(token: str = "", local: str = "") -> FastAPI:
        web = settings.web.model_copy(update={"editor_token": SecretStr(token)})
        configured = settings.model_copy(update={"web": web})
        return create_app(
            configured,
            store,
            clock=clock,
            provider_factory=lambda: provider,
            local_editor_token=local,
        )

    return _make


def local_client(app: FastAPI, client: str = "127.0.0.1", **kw: Any) -> TestClient:
    return TestClient(app, base_url=LOCAL, client=(client, 5000), **kw)


def status_of(store: Store, edition: Edition) -> EditionStatus:
    saved = store.edition(edition.id)
    assert saved is not None
    return saved.status


def test_without_a_secret_nothing_is_served_even_to_loopback(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store
) -> None:
    # What a reverse proxy on the same host sends by default (nginx's proxy_pass): a loopback
    # client, a local Host, no X-Forwarded-For.
    app = make_app()
    for client in ("127.0.0.1", "::1"):
        with local_client(app, client) as c:
            for path in ("/editions", f"/editions/{edition.id}", f"/editions/{edition.id}/html"):
                r = c.get(path)
                assert r.status_code == 403, (client, path)
                assert "Item 3" not in r.text
            r = c.post(f"/editions/{edition.id}/decision", data={"decision": "reject"})
            assert r.status_code == 403
            assert c.get(f"/editor/login?token={MADE}").status_code == 403
    assert status_of(store, edition) is EditionStatus.DRAFT


def test_the_login_url_signs_a_local_editor_in(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store
) -> None:
    app = make_app(local=MADE)
    with local_client(app) as c:
        r = c.get("/editions")
        assert r.status_code == 401 and "Item 3" not in r.text
        wrong = c.get("/editor/login?token=guess", follow_redirects=False)
        assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
        assert "does not work" in wrong.text

        r = c.get(f"/editor/login?token={MADE}", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/editions"  # without the secret
        cookie = r.headers["set-cookie"].lower()
        assert cookie.startswith("digest_editor=")
        for flag in ("httponly", "secure", "samesite=strict", "path=/"):
            assert flag in cookie, flag
        assert MADE.lower() not in cookie

        page = c.get("/editions")
        assert page.status_code == 200 and edition.id in page.text
        r = c.post(
            f"/editions/{edition.id}/decision",
            data={"decision": "approve"},
            headers={"Origin": LOCAL},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert status_of(store, edition) is EditionStatus.APPROVED
        session = c.cookies["digest_editor"]

    # The secret works as a bearer token too, from this machine.
    with local_client(app) as c:
        assert c.get("/editions", headers=MADE_BEARER).status_code == 200
    # A restart makes a new secret: the old session is void.
    with local_client(make_app(local="made-by-the-next-process")) as c:
        c.cookies.set("digest_editor", session)
        assert c.get("/editions").status_code == 401


def test_the_made_secret_works_only_from_this_machine(
    make_app: Callable[..., FastAPI], edition: Edition
) -> None:
    app = make_app(local=MADE)
    with local_client(app) as c:
        assert c.get(f"/editor/login?token={MADE}").status_code == 200
        assert c.get("/editions").status_code == 200
        for headers in PROXY_HEADERS:
            # Signed in or with the secret itself, a request through a proxy is remote.
            assert c.get("/editions", headers=headers).status_code == 403, headers
            r = c.get("/editions", headers={**headers, **MADE_BEARER})
            assert r.status_code == 403, headers
            assert "DIGEST__WEB__EDITOR_TOKEN" in r.text
            login = c.get(f"/editor/login?token={MADE}", headers=headers, follow_redirects=False)
            assert login.status_code == 403 and "set-cookie" not in login.headers
    # Another machine, or a foreign name that resolves to loopback (DNS rebinding).
    with TestClient(app, base_url=LOCAL, client=("203.0.113.9", 5000)) as c:
        assert c.get("/editions", headers=MADE_BEARER).status_code == 403
    with local_client(app) as c:
        for host in ("attacker.example:8080", "127.0.0.1.attacker.example", "[::1]x"):
            r = c.get("/editions", headers={"Host": host, **MADE_BEARER})
            assert r.status_code == 403, host


@pytest.mark.parametrize("headers", PROXY_HEADERS)
def test_proxy_headers_make_a_request_remote(
    make_app: Callable[..., FastAPI], edition: Edition, headers: dict[str, str]
) -> None:
    with local_client(make_app()) as c:
        assert c.get("/editions", headers=headers).status_code == 403
    # The configured secret is meant for remote editors: it works through a proxy.
    with local_client(make_app(token=TOKEN, local=MADE)) as c:
        assert c.get("/editions", headers={**headers, **BEARER}).status_code == 200
        assert c.get("/editions", headers={**headers, **MADE_BEARER}).status_code == 401


@pytest.mark.parametrize(
    "host",
    [
        "[::1]",
        "[::1]:8000",
        "localhost",
        "localhost:8000",
        "127.0.0.1",
        "127.0.0.1:8000",
        "LocalHost",
    ],
)
@pytest.mark.parametrize("client", ["127.0.0.1", "::1"])
def test_every_local_host_name_is_local(
    make_app: Callable[..., FastAPI], edition: Edition, host: str, client: str
) -> None:
    with local_client(make_app(local=MADE), client) as c:
        r = c.get("/editions", headers={"Host": host, **MADE_BEARER})
        assert r.status_code == 200, (client, host)


def test_the_banner_says_how_to_get_in() -> None:
    made = editors_banner("127.0.0.1", 8000, MADE, configured=False)
    assert made.endswith(f"http://127.0.0.1:8000/editor/login?token={MADE}")
    assert "this machine only" in made
    assert "http://[::1]:8000/editor/login?token=" in editors_banner(
        "::1", 8000, MADE, configured=False
    )
    configured = editors_banner("0.0.0.0", 8080, "", configured=True)
    assert "http://127.0.0.1:8080/editions" in configured and "EDITOR_TOKEN" in configured
    assert "off" in editors_banner("192.0.2.4", 8080, "", configured=False)


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    """The app as `digest web` serves it on loopback without a configured secret."""
    return make_app(local=MADE)


def test_a_browser_signs_in_with_the_login_url(
    browser: Browser, base_url: str, edition: Edition
) -> None:
    # Chromium keeps a Secure cookie from http://127.0.0.1 (loopback counts as secure).
    context = browser.new_context(java_script_enabled=False)
    assert context.request.get(f"{base_url}/editions").status == 401
    page = context.new_page()
    page.goto(f"{base_url}/editor/login?token={MADE}")
    assert page.url == f"{base_url}/editions"
    page.get_by_role("link", name=edition.id).click()
    expect(page.get_by_role("heading", name=edition.subject)).to_be_visible()
    (cookie,) = context.cookies()
    assert cookie["name"] == "digest_editor"
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    context.close()
