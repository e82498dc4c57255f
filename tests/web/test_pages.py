"""The web app's pages through FastAPI's TestClient, over a real SQLite store.

GETs never change anything; the RFC 8058 POST unsubscribes, idempotently; every bad token is
refused without a change; preferences, pause, resume and leave; sign-up with double opt-in that
answers the same whatever the address's state; the headers every response carries.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from digest.audience import service
from digest.audience.tokens import SALTS, Purpose
from digest.config import Settings
from digest.delivery.memory import MemoryProvider
from digest.models import Subscriber, SubscriberStatus
from digest.store import Store
from digest.web.hardening import RedactTokens
from tests.web.conftest import (
    BASE,
    KEY,
    OLD_KEY,
    SIGNUPS_PER_HOUR,
    START,
    Clock,
    link,
    token,
)

S = SubscriberStatus
Add = Callable[..., Subscriber]
DAY = 86_400
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _signed_days_ago(ident: object, purpose: Purpose, days: int, key: str = KEY) -> str:
    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - days * DAY

    return URLSafeTimedSerializer(key, salt=SALTS[purpose], signer=Old).dumps(ident)


def _status(store: Store, sub: Subscriber) -> SubscriberStatus:
    current = store.subscriber(sub.id)
    assert current is not None
    return current.status


def _causes(store: Store, sub: Subscriber) -> list[str]:
    return [e["cause"] for e in store.subscriber_events(sub.id)]


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _confirm_path(provider: MemoryProvider, index: int = -1) -> str:
    text = provider.sent[index].text
    found = re.search(re.escape(BASE) + r"(/confirm/[A-Za-z0-9_.-]+)", text)
    assert found, text
    return found.group(1)


def _signup(client: TestClient, email_address: str, **extra: object) -> httpx.Response:
    data: dict[str, object] = {
        "email": email_address,
        "name": "",
        "digest": ["weekly", "briefing"],
        "section": ["diplomacy-watch", "qiosk", "analysis"],
        **extra,
    }
    return client.post("/subscribe", data=data)


# Unsubscribe ----------------------------------------------------------------------------------
def test_get_shows_one_button_and_changes_nothing(client: TestClient, store: Store, add: Add):
    sub = add()
    for _ in range(3):
        r = client.get(link(sub, "unsubscribe"))
        assert r.status_code == 200
        assert r.text.count("<form") == 1
        assert r.text.count("<button") == 1
        assert 'method="post"' in r.text
        assert 'name="List-Unsubscribe" value="One-Click"' in r.text
        assert "reader@example.org" in r.text
    assert client.head(link(sub, "unsubscribe")).status_code == 200
    assert _status(store, sub) is S.ACTIVE
    assert len(store.subscriber_events(sub.id)) == 1  # only its creation


def test_one_click_post_unsubscribes_idempotently(client: TestClient, store: Store, add: Add):
    sub = add()
    path = link(sub, "unsubscribe")
    first = client.post(path, data=ONE_CLICK)
    assert first.status_code == 200
    assert "You are unsubscribed" in first.text
    assert "set-cookie" not in first.headers
    assert _status(store, sub) is S.UNSUBSCRIBED
    second = client.post(path, data=ONE_CLICK)
    assert second.status_code == 200
    assert "You are unsubscribed" in second.text
    events = store.subscriber_events(sub.id)
    assert [(e["old_status"], e["new_status"]) for e in events] == [
        (None, "active"),
        ("active", "unsubscribed"),
    ]
    assert events[-1]["cause"] == "one-click unsubscribe"
    # The page now says so, with no button.
    page = client.get(path)
    assert "You are unsubscribed" in page.text and "<button" not in page.text


def test_one_click_as_multipart_and_the_pages_own_button(
    client: TestClient, store: Store, add: Add
):
    multipart = add("mp@example.org")
    r = client.post(link(multipart, "unsubscribe"), files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert _status(store, multipart) is S.UNSUBSCRIBED
    assert _causes(store, multipart)[-1] == "one-click unsubscribe"

    page = add("page@example.org", status=S.PAUSED)
    r = client.post(link(page, "unsubscribe"), data={**ONE_CLICK, "via": "page"})
    assert r.status_code == 200
    assert _status(store, page) is S.UNSUBSCRIBED
    assert _causes(store, page)[-1] == "unsubscribe page"

    bare = add("bare@example.org")
    assert client.post(link(bare, "unsubscribe")).status_code == 200
    assert _status(store, bare) is S.UNSUBSCRIBED
    assert "without List-Unsubscribe=One-Click" in _causes(store, bare)[-1]


@pytest.mark.parametrize("status", [S.BOUNCED, S.COMPLAINED])
def test_a_suppressed_address_stays_as_it_is(
    client: TestClient, store: Store, add: Add, status: SubscriberStatus
):
    sub = add(status=status)
    r = client.post(link(sub, "unsubscribe"), data=ONE_CLICK)
    assert r.status_code == 200
    assert "receives no email" in r.text
    assert _status(store, sub) is status
    assert len(store.subscriber_events(sub.id)) == 1


def _bad_tokens(sub: Subscriber, purpose: Purpose) -> dict[str, str]:
    good = token(sub, purpose)
    other_purpose: Purpose = "preferences" if purpose != "preferences" else "unsubscribe"
    chars = list(good)
    chars[2] = "A" if chars[2] != "A" else "B"
    return {
        "tampered": "".join(chars),
        "truncated": good[:-6],
        "other purpose": token(sub, other_purpose),
        "confirm purpose": token(sub, "confirm"),
        "other key": token(sub, purpose, key="not-our-key"),
        "expired": _signed_days_ago(sub.link_id, purpose, 200),
        "garbage": "not-a-token",
        "forged shape": "MTIzNDU.AAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "too long": good + "x" * 300,
        "other subscriber's payload": ".".join(
            [token(sub.id + 1, purpose).split(".")[0], *good.split(".")[1:]]
        ),
    }


@pytest.mark.parametrize("prefix,purpose", [("/u/", "unsubscribe"), ("/p/", "preferences")])
def test_bad_tokens_are_refused_and_change_nothing(
    client: TestClient, store: Store, add: Add, prefix: str, purpose: Purpose
):
    sub = add()
    add("neighbour@example.org")  # so that a swapped payload would name a real subscriber
    for name, bad in _bad_tokens(sub, purpose).items():
        for method in ("get", "post"):
            data = ONE_CLICK if purpose == "unsubscribe" else {"action": "leave"}
            r = (
                client.get(prefix + bad)
                if method == "get"
                else client.post(prefix + bad, data=data)
            )
            assert r.status_code == 400, (name, method)
            assert "invalid or has expired" in r.text, name
    for other in store.subscribers():
        assert other.status is S.ACTIVE
        assert len(store.subscriber_events(other.id)) == 1


def test_invalid_link_page_offers_the_mailto_address(client: TestClient):
    r = client.get("/u/garbage")
    assert r.status_code == 400
    assert "unsubscribe@meridian.example.org" in r.text


def test_links_signed_with_an_old_key_still_work(client: TestClient, store: Store, add: Add):
    sub = add()
    assert client.get(link(sub, "preferences", key=OLD_KEY)).status_code == 200
    assert client.post(link(sub, "unsubscribe", key="unknown-key"), data=ONE_CLICK).status_code == (
        400
    )
    assert _status(store, sub) is S.ACTIVE
    assert client.post(link(sub, "unsubscribe", key=OLD_KEY), data=ONE_CLICK).status_code == 200
    assert _status(store, sub) is S.UNSUBSCRIBED


def test_a_link_within_its_lifetime_works(client: TestClient, store: Store, add: Add):
    sub = add()
    r = client.post("/u/" + _signed_days_ago(sub.link_id, "unsubscribe", 100), data=ONE_CLICK)
    assert r.status_code == 200
    assert _status(store, sub) is S.UNSUBSCRIBED


# Preferences ----------------------------------------------------------------------------------
def _checked(html: str, name: str) -> set[str]:
    return set(re.findall(rf'name="{name}" value="([^"]+)" checked', html))


def test_preferences_round_trip(client: TestClient, store: Store, add: Add, settings: Settings):
    sub = add()
    path = link(sub, "preferences")
    page = client.get(path)
    assert page.status_code == 200
    assert _checked(page.text, "digest") == {"weekly", "briefing"}
    assert _checked(page.text, "section") == {"diplomacy-watch", "qiosk", "analysis"}
    # Each section once, under the first digest that carries it.
    assert page.text.count('value="qiosk"') == 1
    assert "Also carries QiOSK, Analysis, chosen above." in page.text

    r = client.post(
        path, data={"action": "save", "digest": ["weekly"], "section": ["qiosk", "analysis"]}
    )
    assert r.status_code == 200
    assert "Saved." in r.text
    saved = store.subscriber(sub.id)
    assert saved is not None
    assert saved.sections == {"qiosk", "analysis"}
    assert saved.digests == {"weekly"}
    assert _checked(r.text, "digest") == {"weekly"}
    assert _checked(r.text, "section") == {"qiosk", "analysis"}

    # Everything ticked is stored as "everything", so sections added later reach them too.
    every = {
        "action": "save",
        "digest": ["weekly", "briefing"],
        "section": ["diplomacy-watch", "qiosk", "analysis"],
    }
    assert client.post(path, data=every).status_code == 200
    saved = store.subscriber(sub.id)
    assert saved is not None and saved.sections is None and saved.digests is None
    assert _status(store, sub) is S.ACTIVE


@pytest.mark.parametrize(
    "data,message",
    [
        ({"section": ["qiosk"]}, "You chose no digest"),
        (
            {"digest": ["weekly", "briefing"], "section": ["diplomacy-watch"]},
            "The Morning Briefing: choose at least one of its sections",
        ),
        ({"digest": ["weekly"], "section": ["sport"]}, "Unknown choice: sport"),
        ({"digest": ["monthly"], "section": ["qiosk"]}, "Unknown choice: monthly"),
    ],
)
def test_preferences_refuse_a_choice_that_receives_nothing(
    client: TestClient, store: Store, add: Add, data: dict[str, object], message: str
):
    sub = add(sections=frozenset({"qiosk"}))
    r = client.post(link(sub, "preferences"), data={"action": "save", **data})
    assert r.status_code == 400
    assert message in r.text
    assert 'value="leave"' in r.text  # leaving is offered right there
    saved = store.subscriber(sub.id)
    assert saved is not None and saved.sections == {"qiosk"} and saved.digests is None


def test_pause_resume_and_leave(client: TestClient, store: Store, add: Add, clock: Clock):
    sub = add()
    path = link(sub, "preferences")
    r = client.post(path, data={"action": "pause"})
    assert r.status_code == 200 and "Paused." in r.text
    assert _status(store, sub) is S.PAUSED
    assert 'value="resume"' in r.text and 'value="pause"' not in r.text
    clock.advance(days=3)
    r = client.post(path, data={"action": "resume"})
    assert r.status_code == 200 and "Welcome back" in r.text
    assert _status(store, sub) is S.ACTIVE
    r = client.post(path, data={"action": "leave"})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert _status(store, sub) is S.UNSUBSCRIBED
    assert _causes(store, sub)[1:] == [
        "paused on the preferences page",
        "resumed on the preferences page",
        "preferences page",
    ]
    # Once left, the page offers only a new sign-up, and refuses changes.
    page = client.get(path)
    assert "Sign up again" in page.text and "<button" not in page.text
    r = client.post(path, data={"action": "save", "digest": ["weekly"], "section": ["qiosk"]})
    assert r.status_code == 400
    assert _status(store, sub) is S.UNSUBSCRIBED
    assert client.post(path, data={"action": "explode"}).status_code == 400


def test_each_link_opens_only_its_own_page(client: TestClient, store: Store, add: Add):
    sub = add()
    assert client.get("/p/" + token(sub, "unsubscribe")).status_code == 400
    assert client.post("/p/" + token(sub, "unsubscribe"), data={"action": "leave"}).status_code == (
        400
    )
    assert client.get("/u/" + token(sub, "preferences")).status_code == 400
    assert client.post("/u/" + token(sub, "preferences"), data=ONE_CLICK).status_code == 400
    assert client.post("/confirm/" + token(sub, "unsubscribe")).status_code == 400
    assert client.post("/u/" + token(sub, "confirm"), data=ONE_CLICK).status_code == 400
    assert _status(store, sub) is S.ACTIVE


# Sign-up ----------------------------------------------------------------------------------------
def test_signup_then_confirm(
    client: TestClient, store: Store, provider: MemoryProvider, clock: Clock
):
    r = _signup(client, "New.Reader@Example.ORG", name="Ana <b>Lima</b>", section=["qiosk"])
    assert r.status_code == 200
    assert "Check your inbox" in r.text
    sub = store.subscriber_by_email("new.reader@example.org")
    assert sub is not None
    assert sub.email == "New.Reader@example.org"  # the domain normalised, the local part kept
    assert sub.status is S.PENDING and sub.source == "signup"
    assert sub.sections == {"qiosk"} and sub.digests is None

    assert len(provider.sent) == 1 and provider.closed
    message = provider.sent[0]
    assert message.recipient == "New.Reader@example.org"
    parsed = _parse(message.raw)
    assert parsed["From"] == "The Meridian Review <digest@meridian.example.org>"
    assert parsed["Subject"] == "Confirm your subscription to The Meridian Review"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Message-ID"] == message.message_id
    assert "List-Unsubscribe" not in parsed
    path = _confirm_path(provider)
    html_part = parsed.get_body(("html",))
    assert html_part is not None and path in html_part.get_content()

    # Opening the link (a scanner does too) changes nothing.
    page = client.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert _status(store, sub) is S.PENDING
    clock.advance(hours=1)
    done = client.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert _status(store, sub) is S.ACTIVE
    again = client.post(path)  # idempotent
    assert again.status_code == 200 and "You are subscribed" in again.text
    events = store.subscriber_events(sub.id)
    assert [(e["old_status"], e["new_status"], e["cause"]) for e in events] == [
        (None, "pending", "signed up on the web; waiting for confirmation"),
        ("pending", "active", "confirmed by double opt-in"),
    ]
    # The confirmed page leads to the preferences.
    prefs = re.search(re.escape(BASE) + r"(/p/[A-Za-z0-9_.-]+)", done.text)
    assert prefs and client.get(prefs.group(1)).status_code == 200


def _answer(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.text


def test_the_answer_is_the_same_whatever_the_address(
    client: TestClient, app: FastAPI, store: Store, provider: MemoryProvider, add: Add
):
    add("active@example.org")
    add("left@example.org", status=S.UNSUBSCRIBED)
    add("bounced@example.org", status=S.BOUNCED)
    new = _answer(_signup(client, "new@example.org"))
    assert new[0] == 200
    app.state.signups.limit = 100
    for address in ("active@example.org", "left@example.org", "bounced@example.org"):
        assert _answer(_signup(client, address)) == new, address
    assert _answer(_signup(client, "new@example.org")) == new  # pending: a new confirmation
    honeypot = _answer(_signup(client, "bot@example.org", website="http://spam.example"))
    assert honeypot == new
    # Nobody's status changed; the active one was sent nothing, the bot was not stored.
    assert {s.email: s.status for s in store.subscribers()} == {
        "active@example.org": S.ACTIVE,
        "left@example.org": S.UNSUBSCRIBED,
        "bounced@example.org": S.BOUNCED,
        "new@example.org": S.PENDING,
    }
    assert [m.recipient for m in provider.sent] == [
        "new@example.org",
        "left@example.org",
        "bounced@example.org",
        "new@example.org",
    ]


def test_the_honeypot_stores_and_sends_nothing(
    client: TestClient, store: Store, provider: MemoryProvider
):
    r = _signup(client, "bot@example.org", website="http://spam.example")
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert store.subscribers() == []
    assert provider.sent == []
    form = client.get("/subscribe")
    assert 'class="hp" aria-hidden="true"' in form.text and 'name="website"' in form.text


def test_an_address_that_left_comes_back_only_by_confirming(
    client: TestClient, store: Store, provider: MemoryProvider, add: Add
):
    sub = add("left@example.org", status=S.UNSUBSCRIBED, sections=frozenset({"analysis"}))
    _signup(client, "LEFT@example.org", section=["qiosk"])
    assert _status(store, sub) is S.UNSUBSCRIBED
    kept = store.subscriber(sub.id)
    # An unconfirmed visitor changes nothing of an existing record.
    assert kept is not None and kept.sections == {"analysis"}
    assert [m.recipient for m in provider.sent] == ["left@example.org"]
    assert client.post(_confirm_path(provider)).status_code == 200
    assert _status(store, sub) is S.ACTIVE
    assert _causes(store, sub)[-1] == "confirmed by double opt-in"


def test_an_active_address_gets_no_mail(
    client: TestClient, store: Store, provider: MemoryProvider, add: Add
):
    sub = add("active@example.org")
    assert _signup(client, "active@example.org").status_code == 200
    assert provider.sent == []
    assert len(store.subscriber_events(sub.id)) == 1


def test_confirmations_to_one_address_are_capped(
    client: TestClient, provider: MemoryProvider, app: FastAPI, clock: Clock
):
    app.state.signups.limit = 100
    for _ in range(5):
        assert _signup(client, "again@example.org").status_code == 200
    assert len(provider.sent) == 3
    clock.advance(days=1, seconds=1)
    _signup(client, "again@example.org")
    assert len(provider.sent) == 4


def test_signups_are_rate_limited_per_address(
    client: TestClient, store: Store, provider: MemoryProvider, clock: Clock
):
    for i in range(SIGNUPS_PER_HOUR):
        assert _signup(client, f"r{i}@example.org").status_code == 200
    clock.advance(minutes=20)
    refused = _signup(client, "one-more@example.org")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == 40 * 60
    assert "Too many sign-ups" in refused.text
    assert store.subscriber_by_email("one-more@example.org") is None
    assert len(provider.sent) == SIGNUPS_PER_HOUR
    clock.advance(minutes=40, seconds=1)
    assert _signup(client, "one-more@example.org").status_code == 200


@pytest.mark.parametrize(
    "address", ["not-an-address", "two@@example.org", "", "a@b", "x" * 300 + "@example.org"]
)
def test_an_invalid_address_is_refused_clearly(
    client: TestClient, store: Store, provider: MemoryProvider, address: str
):
    r = _signup(client, address)
    assert r.status_code == 400
    assert "That email address is not valid" in r.text
    assert store.subscribers() == [] and provider.sent == []


def test_the_form_keeps_what_was_typed_escaped(client: TestClient, store: Store):
    r = _signup(client, '"><script>alert(1)</script>', name="<i>Ana</i>", section=[])
    assert r.status_code == 400
    assert "<script>" not in r.text and "<i>Ana</i>" not in r.text
    assert "&lt;script&gt;" in r.text and "&lt;i&gt;Ana&lt;/i&gt;" in r.text
    r = _signup(client, "fine@example.org", section=[])
    assert r.status_code == 400
    assert "choose at least one of its sections" in r.text
    assert store.subscribers() == []


def test_an_expired_confirmation_link_is_refused(client: TestClient, store: Store, add: Add):
    sub = add("late@example.org", status=S.PENDING)
    # A confirmation token carries the subscriber's status version (see make_confirm_token).
    payload = [sub.link_id, store.status_version(sub.id)]
    old = "/confirm/" + _signed_days_ago(payload, "confirm", 8)
    for r in (client.get(old), client.post(old)):
        assert r.status_code == 400
        assert "Sign up again" in r.text
    assert _status(store, sub) is S.PENDING
    assert client.post("/confirm/" + _signed_days_ago(payload, "confirm", 6)).status_code == 200
    assert _status(store, sub) is S.ACTIVE


def test_an_old_confirmation_link_does_not_bring_back_who_left_since(
    client: TestClient, store: Store, provider: MemoryProvider
):
    """Confirm, then unsubscribe: pressing the old confirmation link again changes nothing."""
    assert _signup(client, "back@example.org").status_code == 200
    link = _confirm_path(provider)
    assert client.post(link).status_code == 200
    sub = store.subscriber_by_email("back@example.org")
    assert sub is not None and sub.status is S.ACTIVE
    store.set_subscriber_status(sub.id, S.UNSUBSCRIBED, now=START, cause="left")
    assert client.post(link).status_code == 400
    assert _status(store, sub) is S.UNSUBSCRIBED
    # Signing up again sends a new link, and that one works.
    assert _signup(client, "back@example.org").status_code == 200
    assert client.post(_confirm_path(provider)).status_code == 200
    assert _status(store, sub) is S.ACTIVE


def test_a_provider_failure_does_not_change_the_answer(
    client: TestClient, store: Store, provider: MemoryProvider
):
    provider.down = True
    r = _signup(client, "someone@example.org")
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert provider.sent == []
    sub = store.subscriber_by_email("someone@example.org")
    assert sub is not None and sub.status is S.PENDING


# Headers and plumbing -----------------------------------------------------------------------------
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


def test_healthz_and_a_friendly_404(client: TestClient):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}
    page = client.get("/nowhere", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Page not found" in page.text
    assert client.get("/nowhere").json() == {"detail": "Not Found"}
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 404


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
    assert _status(store, sub) is S.ACTIVE
    # The webhooks take bigger bodies (event batches) and cap them themselves.
    big = client.post("/webhooks/sendgrid", content=b"[" + b" " * 100_000 + b"]")
    assert big.status_code != 413


def test_the_webhooks_are_mounted(app: FastAPI, client: TestClient):
    # They refuse an unsigned event, but they are there to refuse it.
    for provider in ("sendgrid", "postmark", "mailgun"):
        assert client.post(f"/webhooks/{provider}", content=b"{}").status_code != 404
    assert app.state.settings and app.state.store and app.state.clock


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
    for path, shown in [("/confirm/abc", "/confirm/…"), ("/subscribe", "/subscribe")]:
        record.args = ("c", "GET", path, "1.1", 200)
        RedactTokens().filter(record)
        assert shown in record.getMessage()


# The service on its own --------------------------------------------------------------------------
def test_service_moves_only_from_allowed_statuses(store: Store, add: Add, clock: Clock):
    now = clock()
    active, paused = add("a@example.org"), add("p@example.org", status=S.PAUSED)
    assert service.resume(store, active.id, now=now) is False
    assert service.pause(store, paused.id, now=now) is False
    assert service.pause(store, active.id, now=now) is True
    assert service.confirm(store, active.id, now=now) is True  # a paused one comes back
    assert service.confirm(store, active.id, now=now) is False  # already active
    assert service.unsubscribe(store, 999, now=now, cause="x") is False
    assert service.confirm(store, 999, now=now) is False


def test_confirmation_message_names_the_link_lifetime(settings: Settings, add: Add, clock: Clock):
    sub = add("ana@example.org", name="Ana Lima")
    message = service.confirmation_message(settings, sub, "TOKEN", clock())
    assert f"{BASE}/confirm/TOKEN" in message.text
    assert "The link works for 7 days" in message.text
    # No name: whoever signed the address up typed it, and it may be a stranger's text.
    assert message.text.startswith("Hello,\n") and "Ana" not in message.text
    assert "1200 Harbor Street" in message.text and "1200 Harbor Street" in message.html
    parsed = _parse(message.raw)
    assert parsed["To"] == "ana@example.org"
    assert message.headers["Message-ID"] == parsed["Message-ID"]
    assert message.key.startswith(f"confirm-{sub.id}-")
