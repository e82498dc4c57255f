"""A subscriber's own pages (``digest.web.subscribers``) through FastAPI's TestClient, over a real
SQLite store: GETs never change anything; the RFC 8058 POST unsubscribes, idempotently; every bad
token is refused without a change; preferences, pause, resume and leave.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from digest.audience import service
from digest.audience.tokens import Purpose
from digest.config import Settings
from digest.models import Subscriber, SubscriberStatus
from digest.store import Store
from tests.web.conftest import (
    OLD_KEY,
    ONE_CLICK,
    Add,
    Clock,
    causes_of,
    link,
    signed_days_ago,
    status_of,
    token,
)

S = SubscriberStatus


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
    assert status_of(store, sub) is S.ACTIVE
    assert len(store.subscriber_events(sub.id)) == 1  # only its creation


def test_one_click_post_unsubscribes_idempotently(client: TestClient, store: Store, add: Add):
    sub = add()
    path = link(sub, "unsubscribe")
    first = client.post(path, data=ONE_CLICK)
    assert first.status_code == 200
    assert "You are unsubscribed" in first.text
    assert "set-cookie" not in first.headers
    assert status_of(store, sub) is S.UNSUBSCRIBED
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
    assert status_of(store, multipart) is S.UNSUBSCRIBED
    assert causes_of(store, multipart)[-1] == "one-click unsubscribe"

    page = add("page@example.org", status=S.PAUSED)
    r = client.post(link(page, "unsubscribe"), data={**ONE_CLICK, "via": "page"})
    assert r.status_code == 200
    assert status_of(store, page) is S.UNSUBSCRIBED
    assert causes_of(store, page)[-1] == "unsubscribe page"

    bare = add("bare@example.org")
    assert client.post(link(bare, "unsubscribe")).status_code == 200
    assert status_of(store, bare) is S.UNSUBSCRIBED
    assert "without List-Unsubscribe=One-Click" in causes_of(store, bare)[-1]


@pytest.mark.parametrize("status", [S.BOUNCED, S.COMPLAINED])
def test_a_suppressed_address_stays_as_it_is(
    client: TestClient, store: Store, add: Add, status: SubscriberStatus
):
    sub = add(status=status)
    r = client.post(link(sub, "unsubscribe"), data=ONE_CLICK)
    assert r.status_code == 200
    assert "receives no email" in r.text
    assert status_of(store, sub) is status
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
        "expired": signed_days_ago(sub.link_id, purpose, 200),
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
    assert status_of(store, sub) is S.ACTIVE
    assert client.post(link(sub, "unsubscribe", key=OLD_KEY), data=ONE_CLICK).status_code == 200
    assert status_of(store, sub) is S.UNSUBSCRIBED


def test_a_link_within_its_lifetime_works(client: TestClient, store: Store, add: Add):
    sub = add()
    r = client.post("/u/" + signed_days_ago(sub.link_id, "unsubscribe", 100), data=ONE_CLICK)
    assert r.status_code == 200
    assert status_of(store, sub) is S.UNSUBSCRIBED


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
    assert status_of(store, sub) is S.ACTIVE


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
    assert status_of(store, sub) is S.PAUSED
    assert 'value="resume"' in r.text and 'value="pause"' not in r.text
    clock.advance(days=3)
    r = client.post(path, data={"action": "resume"})
    assert r.status_code == 200 and "Welcome back" in r.text
    assert status_of(store, sub) is S.ACTIVE
    r = client.post(path, data={"action": "leave"})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert status_of(store, sub) is S.UNSUBSCRIBED
    assert causes_of(store, sub)[1:] == [
        "paused on the preferences page",
        "resumed on the preferences page",
        "preferences page",
    ]
    # Once left, the page offers only a new sign-up, and refuses changes.
    page = client.get(path)
    assert "Sign up again" in page.text and "<button" not in page.text
    r = client.post(path, data={"action": "save", "digest": ["weekly"], "section": ["qiosk"]})
    assert r.status_code == 400
    assert status_of(store, sub) is S.UNSUBSCRIBED
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
    assert status_of(store, sub) is S.ACTIVE


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
