"""Sign-up with double opt-in (``digest.web.signup``) through FastAPI's TestClient, over a real
SQLite store: the form answers the same whatever the address's state, confirmations are capped
and sent in the background, sign-ups are rate limited, confirmation links expire.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from digest.audience.tokens import make_confirm_token
from digest.config import Settings
from digest.delivery.memory import MemoryProvider
from digest.models import SubscriberStatus
from digest.render.confirmation import CONFIRMATION_EDITION
from digest.steps import messages
from digest.store import Store
from tests.web.conftest import (
    BASE,
    SIGNUPS_PER_HOUR,
    START,
    Add,
    Clock,
    causes_of,
    signed_days_ago,
    status_of,
)

S = SubscriberStatus


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
    assert status_of(store, sub) is S.PENDING
    clock.advance(hours=1)
    done = client.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of(store, sub) is S.ACTIVE
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
    assert status_of(store, sub) is S.UNSUBSCRIBED
    kept = store.subscriber(sub.id)
    # An unconfirmed visitor changes nothing of an existing record.
    assert kept is not None and kept.sections == {"analysis"}
    assert [m.recipient for m in provider.sent] == ["left@example.org"]
    assert client.post(_confirm_path(provider)).status_code == 200
    assert status_of(store, sub) is S.ACTIVE
    assert causes_of(store, sub)[-1] == "confirmed by double opt-in"


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
    old = "/confirm/" + signed_days_ago(payload, "confirm", 8)
    for r in (client.get(old), client.post(old)):
        assert r.status_code == 400
        assert "Sign up again" in r.text
    assert status_of(store, sub) is S.PENDING
    assert client.post("/confirm/" + signed_days_ago(payload, "confirm", 6)).status_code == 200
    assert status_of(store, sub) is S.ACTIVE


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
    assert status_of(store, sub) is S.UNSUBSCRIBED
    # Signing up again sends a new link, and that one works.
    assert _signup(client, "back@example.org").status_code == 200
    assert client.post(_confirm_path(provider)).status_code == 200
    assert status_of(store, sub) is S.ACTIVE


def test_a_provider_failure_does_not_change_the_answer(
    client: TestClient, store: Store, provider: MemoryProvider
):
    provider.down = True
    r = _signup(client, "someone@example.org")
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert provider.sent == []
    sub = store.subscriber_by_email("someone@example.org")
    assert sub is not None and sub.status is S.PENDING


# The message on its own --------------------------------------------------------------------------
def test_confirmation_message_names_the_link_lifetime(
    settings: Settings, store: Store, add: Add, clock: Clock
):
    sub = add("ana@example.org", name="Ana Lima")
    message = messages.confirmation_message(settings, store, sub, now=clock())
    token = make_confirm_token(settings, sub.link_id, store.status_version(sub.id))
    assert f"{BASE}/confirm/{token}" in message.text
    assert message.edition_id == CONFIRMATION_EDITION
    assert "The link works for 7 days" in message.text
    # No name: whoever signed the address up typed it, and it may be a stranger's text.
    assert message.text.startswith("Hello,\n") and "Ana" not in message.text
    assert "1200 Harbor Street" in message.text and "1200 Harbor Street" in message.html
    parsed = _parse(message.raw)
    assert parsed["To"] == "ana@example.org"
    assert message.headers["Message-ID"] == parsed["Message-ID"]
    assert message.key.startswith(f"confirm-{sub.id}-")
