"""The editors' pages (``digest.web.editor``): access by token (without one, see
test_editor_access.py); the list and the edition's page; the preview route; editing the intro
and exclusions; sending a test; approving and rejecting, with and without an approver."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from digest.config import Settings
from digest.delivery.memory import MemoryProvider
from digest.models import Edition, EditionAction, EditionStatus
from digest.steps.compose import approve, compose
from digest.store import Store
from digest.web.app import create_app
from tests.conftest import article, draft_to
from tests.web.conftest import BASE, KEY, OLD_KEY, Clock, web_overrides

TOKEN = "editor-test-secret"
ALLOWED = "desk@meridian.example.org"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ARTICLES = [article(n) for n in (3, 5, 7)]

Approvals = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    overrides = web_overrides()
    overrides["digests"]["weekly"] = {"approval": "required"}
    return make_settings(overrides, DIGEST__SECRET_KEY=KEY, DIGEST__OLD_SECRET_KEYS=OLD_KEY)


@pytest.fixture
def edition(settings: Settings, store: Store, clock: Clock) -> Edition:
    store.save_articles(ARTICLES, now=clock())
    outcome = compose(settings, store, "weekly", now=clock())
    assert outcome.edition is not None
    return outcome.edition


@pytest.fixture
def make_app(
    settings: Settings,
    store: Store,
    clock: Clock,
    provider: MemoryProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., FastAPI]:
    def _make(token: str = TOKEN, approver: Any = None) -> FastAPI:
        web = settings.web.model_copy(
            update={
                "editor_token": SecretStr(token),
                "editor_addresses": [f" {ALLOWED.upper()} ", "other@example.org"],
            }
        )
        configured = settings.model_copy(update={"web": web})
        return create_app(
            configured, store, clock=clock, provider_factory=lambda: provider, approver=approver
        )

    return _make


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def editor(app: FastAPI, edition: Edition) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE, headers=BEARER) as c:
        yield c


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


# Access ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/editions", "/editions/{id}", "/editions/{id}/html"])
def test_wrong_or_missing_credentials_are_refused(
    app: FastAPI, edition: Edition, path: str
) -> None:
    url = path.format(id=edition.id)
    with TestClient(app, base_url=BASE) as c:
        for headers in ({}, basic("ed", "wrong"), {"Authorization": "Bearer nope"}, basic("", "")):
            r = c.get(url, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"].startswith("Basic")
            assert "Item 3" not in r.text
        # POSTs are refused before anything is read or changed.
        r = c.post(f"/editions/{edition.id}/decision", data={"decision": "approve"})
        assert r.status_code == 401


def test_token_as_bearer_or_basic_password(app: FastAPI, edition: Edition) -> None:
    with TestClient(app, base_url=BASE) as c:
        for headers in (BEARER, basic("ana", TOKEN)):
            r = c.get("/editions", headers=headers)
            assert r.status_code == 200
            assert r.headers["cache-control"] == "no-store"
            assert "noindex" in r.headers["x-robots-tag"]
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_the_front_door_sends_editors_to_the_editions_and_others_to_sign_up(
    app: FastAPI, edition: Edition
) -> None:
    with TestClient(app, base_url=BASE) as c:
        for headers in ({}, {"Authorization": "Bearer nope"}, basic("ed", "wrong")):
            r = c.get("/", headers=headers, follow_redirects=False)
            assert (r.status_code, r.headers["location"]) == (303, "/subscribe"), headers
            assert r.headers["cache-control"] == "no-store"
        landed = c.get("/")
        assert (landed.status_code, landed.url.path) == (200, "/subscribe")
        for headers in (BEARER, basic("ana", TOKEN)):
            r = c.get("/", headers=headers, follow_redirects=False)
            assert (r.status_code, r.headers["location"]) == (303, "/editions"), headers
            assert r.headers["cache-control"] == "no-store"
        # Signed in with the login link's session cookie.
        c.get(f"/editor/login?token={TOKEN}", follow_redirects=False)
        r = c.get("/", follow_redirects=False)
        assert r.headers["location"] == "/editions"
        assert edition.id in c.get("/").text
        assert c.head("/", follow_redirects=False).status_code == 303


# Pages -------------------------------------------------------------------------------------------
def test_list_shows_editions_with_state_and_counts(
    editor: TestClient, edition: Edition, store: Store, clock: Clock
) -> None:
    r = editor.get("/editions")
    assert r.status_code == 200
    assert edition.id in r.text
    # Composed, not yet asked about: a draft, though its digest needs approval.
    assert '<td class="state">draft</td>' in r.text
    assert f'href="/editions/{edition.id}"' in r.text
    edition = ask(store, edition, clock)
    assert '<td class="state">awaiting approval</td>' in editor.get("/editions").text
    approve(store, edition, now=clock())
    assert "awaiting approval" not in editor.get("/editions").text
    assert ">approved<" in editor.get("/editions").text


def test_edition_page_has_subject_frames_text_and_forms(
    editor: TestClient, edition: Edition
) -> None:
    r = editor.get(f"/editions/{edition.id}")
    assert r.status_code == 200
    page = r.text
    assert edition.subject in page and edition.preheader in page
    assert page.count(f'src="/editions/{edition.id}/html"') == 2
    assert 'width="600"' in page and 'width="375"' in page
    assert "<pre>" in page and "Item 7" in page
    for a in ARTICLES:
        assert f'name="exclude" value="{a.id}"' in page
    assert f'<option value="{ALLOWED}">' in page
    assert 'value="approve"' in page and 'value="reject"' in page
    csp = r.headers["content-security-policy"]
    assert "frame-src 'self'" in csp and "script" not in csp.replace("script-src", "")


def test_html_route_is_the_email_without_tokens(editor: TestClient, edition: Edition) -> None:
    r = editor.get(f"/editions/{edition.id}/html")
    assert r.status_code == 200
    assert "%%" not in r.text
    assert "Item 3" in r.text and "/u/preview" in r.text
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "script-src 'none'" in csp
    assert "style-src 'unsafe-inline'" in csp
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert r.headers["cache-control"] == "no-store"
    assert editor.get("/editions/weekly-1999-W01/html").status_code == 404


# Editing -----------------------------------------------------------------------------------------
def test_editing_intro_and_exclusions(editor: TestClient, edition: Edition, store: Store) -> None:
    gone = ARTICLES[0]
    r = editor.post(
        f"/editions/{edition.id}/edit",
        data={"intro": "Hello **readers**", "exclude": [gone.id, "not-an-article"]},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/editions/{edition.id}?note=edited"
    overrides = store.overrides(edition.id)
    assert overrides.intro == "Hello **readers**"
    assert overrides.excluded == (gone.id,)
    html = editor.get(f"/editions/{edition.id}/html").text
    assert "<strong>readers</strong>" in html
    assert gone.title not in html and "Item 5" in html
    page = editor.get(r.headers["location"]).text
    assert "Saved." in page
    # The excluded article stays on the form, ticked, so it can be put back.
    assert f'value="{gone.id}" checked' in page

    editor.post(f"/editions/{edition.id}/edit", data={"intro": ""})
    assert store.overrides(edition.id).excluded == ()
    assert gone.title in editor.get(f"/editions/{edition.id}/html").text


def test_a_sent_edition_cannot_be_edited(
    editor: TestClient, edition: Edition, store: Store, clock: Clock
) -> None:
    draft_to(store, edition.id, EditionStatus.SENT, now=clock())
    r = editor.post(f"/editions/{edition.id}/edit", data={"intro": "Late"})
    assert r.status_code == 409
    assert "can no longer be edited" in r.text
    assert store.overrides(edition.id).intro == ""


def test_cross_site_posts_are_refused(editor: TestClient, edition: Edition, store: Store) -> None:
    url = f"/editions/{edition.id}/decision"
    for headers in (
        {"Origin": "https://evil.example.net"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": BASE},
    ):
        r = editor.post(url, data={"decision": "approve"}, headers=headers)
        assert r.status_code == 403, headers
    assert store.edition(edition.id).status is EditionStatus.DRAFT  # type: ignore[union-attr]
    # A browser's own form post: same-origin, whatever Origin its referrer policy leaves.
    for decision, headers in (
        ("approve", {"Origin": BASE}),
        ("reject", {"Origin": "null", "Sec-Fetch-Site": "same-origin"}),
    ):
        r = editor.post(url, data={"decision": decision}, headers=headers, follow_redirects=False)
        assert r.status_code == 303, headers


# Send a test -------------------------------------------------------------------------------------
def test_send_a_test_only_to_allowed_addresses(
    editor: TestClient, edition: Edition, provider: MemoryProvider
) -> None:
    r = editor.post(f"/editions/{edition.id}/test", data={"address": "someone@example.net"})
    assert r.status_code == 400
    assert "web.editor_addresses" in r.text
    assert provider.sent == []

    r = editor.post(
        f"/editions/{edition.id}/test", data={"address": ALLOWED}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"].endswith("?note=tested")
    assert len(provider.sent) == 1
    message = provider.sent[0]
    assert message.recipient == ALLOWED
    assert message.subject == f"[Test] {edition.subject}"
    assert b"[Test]" in message.raw
    assert "%%" not in message.html and "Item 3" in message.html


# Decisions ---------------------------------------------------------------------------------------
def ask(store: Store, edition: Edition, clock: Clock) -> Edition:
    """What the edition run does at the approval gate: the edition awaits approval."""
    from digest.steps.compose import transition

    return transition(store, edition, EditionAction.ASK, now=clock())


def recording_approver() -> tuple[Approvals, Callable[[str, dict[str, Any]], str]]:
    """An approver that records what it is told and says it resumed a run."""
    calls: Approvals = []

    def approver(edition_id: str, decision: dict[str, Any]) -> str:
        calls.append((edition_id, decision))
        return "resumed"

    return calls, approver


def state_badge(page: str) -> str:
    """The state the edition's page shows beside its id."""
    import re

    found = re.findall(r'<span class="state">([^<]*)</span>', page)
    assert len(found) == 1, found
    return found[0]


def test_a_decision_is_recorded_then_the_waiting_run_told(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store, clock: Clock
) -> None:
    """The page after the POST shows the state the decision left, not "awaiting approval"
    with live buttons beside a note that the run was told."""
    calls: list[tuple[str, dict[str, Any], EditionStatus | None]] = []

    def approver(edition_id: str, decision: dict[str, Any]) -> str:
        calls.append((edition_id, decision, store.edition_status(edition_id)))
        return "resumed"

    edition = ask(store, edition, clock)
    app = make_app(approver=approver)
    url = f"/editions/{edition.id}"
    with TestClient(app, base_url=BASE, headers=basic("ana", TOKEN)) as c:
        r = c.post(f"{url}/decision", data={"decision": "approve"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("?note=approved-told")
        page = c.get(r.headers["location"]).text
        assert state_badge(page) == "approved"
        assert "Approved; the run waiting for the decision was told" in page
        assert 'value="approve"' not in page and "awaiting approval" not in page
        assert c.post(f"{url}/decision", data={"decision": "x"}).status_code == 400
    # The store had the decision before the run was told (the run reads it there).
    assert calls == [
        (edition.id, {"decision": "approve", "editor": "ana"}, EditionStatus.APPROVED),
    ]


def test_a_rejection_is_recorded_then_the_waiting_run_told(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store, clock: Clock
) -> None:
    calls, approver = recording_approver()

    edition = ask(store, edition, clock)
    with TestClient(make_app(approver=approver), base_url=BASE, headers=BEARER) as c:
        page = c.post(f"/editions/{edition.id}/decision", data={"decision": "reject"}).text
    assert state_badge(page) == "rejected"
    assert "Rejected; the run waiting for the decision was told and stops." in page
    assert "<h2>Decision</h2>" not in page and "a rejection is final" in page
    assert calls == [(edition.id, {"decision": "reject", "editor": "editor"})]
    assert store.edition_status(edition.id) is EditionStatus.REJECTED


def test_a_run_that_cannot_be_told_still_has_the_decision(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store, clock: Clock
) -> None:
    def unreachable(edition_id: str, decision: dict[str, Any]) -> str:
        raise ConnectionError("Prefect API at 127.0.0.1:9 refused the connection")

    edition = ask(store, edition, clock)
    with TestClient(make_app(approver=unreachable), base_url=BASE, headers=BEARER) as c:
        r = c.post(f"/editions/{edition.id}/decision", data={"decision": "approve"})
    assert r.status_code == 502
    assert state_badge(r.text) == "approved" and "Approved." in r.text
    assert "was not told: Prefect API at 127.0.0.1:9 refused the connection" in r.text
    assert store.edition_status(edition.id) is EditionStatus.APPROVED


def test_a_draft_is_decided_in_the_store_without_asking_a_run(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store
) -> None:
    """No run asked about a draft: the approver is not called, the store decides."""
    calls, approver = recording_approver()

    with TestClient(make_app(approver=approver), base_url=BASE, headers=BEARER) as c:
        r = c.post(
            f"/editions/{edition.id}/decision", data={"decision": "approve"}, follow_redirects=False
        )
    assert r.headers["location"].endswith("?note=approved") and calls == []
    assert store.edition_status(edition.id) is EditionStatus.APPROVED


@pytest.mark.parametrize(
    ("before", "after", "says"),
    [
        (EditionStatus.AWAITING_APPROVAL, "awaiting approval", "keeps the edition awaiting"),
        (EditionStatus.APPROVED, "draft", "Not approved yet"),
        (EditionStatus.SKIPPED, "draft", "Not approved yet"),
        (EditionStatus.DRAFT, "draft", "Not approved yet"),
    ],
)
def test_the_page_after_a_save_shows_the_state_it_left(
    editor: TestClient,
    edition: Edition,
    store: Store,
    clock: Clock,
    before: EditionStatus,
    after: str,
    says: str,
) -> None:
    draft_to(store, edition.id, before, now=clock())
    r = editor.post(f"/editions/{edition.id}/edit", data={"intro": "Hello"})
    assert r.status_code == 200
    assert state_badge(r.text) == after and "Saved." in r.text and says in r.text
    assert "draft again" not in r.text or after == "draft"
    assert 'value="approve"' in r.text and 'value="reject"' in r.text
    assert f'name="status" value="{store.edition_status(edition.id)}"' in r.text


def test_a_skipped_edition_says_so_and_may_still_be_approved(
    editor: TestClient, edition: Edition, store: Store, clock: Clock
) -> None:
    draft_to(store, edition.id, EditionStatus.SKIPPED, now=clock())
    page = editor.get(f"/editions/{edition.id}").text
    assert state_badge(page) == "skipped" and "No decision came in time" in page
    r = editor.post(
        f"/editions/{edition.id}/decision", data={"decision": "approve", "status": "skipped"}
    )
    assert r.status_code == 200 and state_badge(r.text) == "approved"
    assert store.edition_status(edition.id) is EditionStatus.APPROVED


def test_without_an_approver_the_store_changes(
    editor: TestClient, edition: Edition, store: Store, clock: Clock
) -> None:
    r = editor.post(
        f"/editions/{edition.id}/decision", data={"decision": "approve"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?note=approved")
    assert store.edition(edition.id).status is EditionStatus.APPROVED  # type: ignore[union-attr]
    page = editor.get(r.headers["location"]).text
    assert "Approved." in page
    # An approved edition may still be stopped, not approved twice.
    assert 'value="approve"' not in page and 'value="reject"' in page
    assert '<input type="hidden" name="status" value="approved">' in page

    r = editor.post(
        f"/editions/{edition.id}/decision",
        data={"decision": "reject", "status": "approved"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?note=rejected")
    assert store.edition(edition.id).status is EditionStatus.REJECTED  # type: ignore[union-attr]


def on_the_outbox(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update={"provider": "outbox"})}
    )


def test_a_rejected_edition_is_never_approved_nor_sent(
    editor: TestClient, edition: Edition, store: Store, settings: Settings, clock: Clock
) -> None:
    """Rejected on the page: the page offers no decision any more, refuses an approval (from
    this page or a stale one) and an edit, and the next edition run mails nobody."""
    from digest.models import NewSubscriber
    from digest.steps.edition import run_edition

    store.import_subscribers(
        [NewSubscriber(email=f"reader{i}@example.org") for i in range(3)], now=clock()
    )
    url = f"/editions/{edition.id}"
    r = editor.post(f"{url}/decision", data={"decision": "reject"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?note=rejected")

    page = editor.get(url).text
    assert 'value="approve"' not in page and 'value="reject"' not in page
    assert f'action="{url}/decision"' not in page and f'action="{url}/edit"' not in page
    assert "a rejection is final" in page
    for shown in ("rejected", "draft", ""):
        r = editor.post(f"{url}/decision", data={"decision": "approve", "status": shown})
        assert r.status_code == 409, shown
        assert "Approved." not in r.text
        assert '<span class="state">rejected</span>' in r.text
    assert "a rejection is final" in r.text
    r = editor.post(f"{url}/edit", data={"intro": "Second thoughts"})
    assert r.status_code == 409 and "can no longer be edited" in r.text
    assert store.edition(edition.id).status is EditionStatus.REJECTED  # type: ignore[union-attr]
    assert store.overrides(edition.id).intro == ""

    outbox = on_the_outbox(settings)
    outcome = run_edition(outbox, store, "weekly", clock())
    assert outcome.delivered is None
    assert outcome.summary.edition_status == "rejected"
    assert outcome.summary.submitted_now == 0
    assert not list(outbox.outbox_path.rglob("*.eml"))
    assert store.delivery_counts(edition.id)["submitted"] == 0


def test_a_rejected_edition_is_not_passed_to_the_approver(
    make_app: Callable[..., FastAPI], edition: Edition, store: Store, clock: Clock
) -> None:
    from digest.steps.compose import reject

    calls, approver = recording_approver()

    reject(store, edition, now=clock())
    with TestClient(make_app(approver=approver), base_url=BASE, headers=BEARER) as c:
        for decision in ("approve", "reject"):
            r = c.post(f"/editions/{edition.id}/decision", data={"decision": decision})
            assert r.status_code == 409 and "a rejection is final" in r.text
    assert calls == []


def test_a_decision_from_a_stale_page_is_refused(
    editor: TestClient, edition: Edition, store: Store, clock: Clock
) -> None:
    """The page showed a draft; meanwhile another editor approved it: a Reject posted from the
    old page is refused with the edition as it stands, not applied to what it has become."""
    approve(store, edition, now=clock())
    r = editor.post(
        f"/editions/{edition.id}/decision", data={"decision": "reject", "status": "draft"}
    )
    assert r.status_code == 409
    assert "is approved now" in r.text and '<span class="state">approved</span>' in r.text
    assert store.edition(edition.id).status is EditionStatus.APPROVED  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [EditionStatus.SENDING, EditionStatus.SENT])
def test_an_edition_going_out_offers_no_decision(
    editor: TestClient, edition: Edition, store: Store, clock: Clock, status: EditionStatus
) -> None:
    draft_to(store, edition.id, status, now=clock())
    page = editor.get(f"/editions/{edition.id}").text
    assert 'value="approve"' not in page and 'value="reject"' not in page
    assert state_badge(page) == status.value and "nothing is left to decide." in page
    # No decision to take: no empty "Decision" heading either.
    assert "<h2>Decision</h2>" not in page
    for decision in ("approve", "reject"):
        r = editor.post(f"/editions/{edition.id}/decision", data={"decision": decision})
        assert r.status_code == 409 and "too late to decide" in r.text
    assert store.edition(edition.id).status is status  # type: ignore[union-attr]


def test_without_a_waiting_run_the_decision_goes_to_the_store(
    make_app: Callable[..., FastAPI], store: Store, edition: Edition, clock: Clock
) -> None:
    """An approver that finds no paused run (LookupError) falls back to recording the
    decision in the store, as without an approver."""

    from digest.web.editor import NoRunWaiting

    def nobody_waiting(edition_id: str, decision: dict[str, Any]) -> str:
        raise NoRunWaiting(f"no paused run of edition {edition_id}")

    edition = ask(store, edition, clock)
    with TestClient(make_app(approver=nobody_waiting), base_url=BASE, headers=BEARER) as client:
        r = client.post(f"/editions/{edition.id}/decision", data={"decision": "approve"})
    assert r.status_code == 200, r.text  # the redirect back to the edition page, followed
    assert state_badge(r.text) == "approved" and "Approved." in r.text
    assert store.edition(edition.id).status is EditionStatus.APPROVED  # type: ignore[union-attr]
