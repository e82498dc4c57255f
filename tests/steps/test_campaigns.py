"""Handing an edition over to a provider that owns the list (Mailchimp, listmonk): one campaign
per edition and variant, ever, against local servers that answer as each API documents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any
from urllib.parse import urlsplit

import pytest

from digest.config import Settings
from digest.errors import PermanentDeliveryError, TransientDeliveryError
from digest.factory import make_campaign_provider
from digest.models import Edition, EditionStatus, NewSubscriber
from digest.render.variants import render_variants
from digest.steps.campaigns import HandOver, hand_over
from digest.steps.edition import run_edition
from digest.store import Store
from tests.apiserver import ApiServer, Request
from tests.conftest import article
from tests.delivery.fake_listmonk import FakeListmonk
from tests.delivery.fake_mailchimp import FakeMailchimp
from tests.steps.world import NOW

MC_KEY = "0123456789abcdef-us1"
MC_ENV = {"DIGEST__DELIVERY__MAILCHIMP__API_KEY": MC_KEY}
LM_ENV = {"DIGEST__DELIVERY__LISTMONK__TOKEN": "tok3n"}


def mailchimp_settings(
    make_settings: Callable[..., Settings], settings: Settings, url: str, **extra: Any
) -> Settings:
    retry = {"wait": 0, "request_attempts": extra.pop("request_attempts", 3)}
    options = {"base_url": f"{url}/3.0", "list_id": "aud1", "timeout": 5, **extra}
    return make_settings(
        {
            "store": {"url": settings.store.url},
            "delivery": {"provider": "mailchimp", "mailchimp": options, "retry": retry},
        },
        **MC_ENV,
    )


def listmonk_settings(
    make_settings: Callable[..., Settings], settings: Settings, url: str, **extra: Any
) -> Settings:
    options = {"base_url": url, "api_user": "digest", "list_ids": [3], "timeout": 5, **extra}
    return make_settings(
        {
            "store": {"url": settings.store.url},
            "delivery": {"provider": "listmonk", "listmonk": options, "retry": {"wait": 0}},
        },
        **LM_ENV,
    )


def run(settings: Settings, store: Store, edition: Edition) -> HandOver:
    variants = render_variants(settings, edition, [None])
    provider = make_campaign_provider(settings)
    assert provider is not None
    with closing(provider):
        return hand_over(settings, store, edition, variants, provider, now=NOW)


def paths(requests: list[Request], method: str) -> list[str]:
    return [urlsplit(r.path).path for r in requests if r.method == method]


def crash_at(monkeypatch: pytest.MonkeyPatch, method: str, action: Callable[[], object]) -> None:
    """Run ``action`` with the store's ``method`` killing the process (as far as the run can
    tell): what came before it happened, nothing after."""

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt(f"killed in Store.{method}")

    with monkeypatch.context() as m:
        m.setattr(Store, method, crash)
        with pytest.raises(KeyboardInterrupt):
            action()


@pytest.fixture
def mailchimp() -> Iterator[tuple[ApiServer, FakeMailchimp]]:
    fake = FakeMailchimp(api_key=MC_KEY)
    with ApiServer(fake) as api:
        yield api, fake


@pytest.fixture
def listmonk() -> Iterator[tuple[ApiServer, FakeListmonk]]:
    fake = FakeListmonk()
    with ApiServer(fake) as api:
        yield api, fake


def test_mailchimp_campaign_is_made_once_across_two_runs(setup, make_settings, mailchimp):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(make_settings, base, api.url)
    first = run(settings, store, edition)
    second = run(settings, store, edition)

    assert len(fake.campaigns) == 1 and len(fake.sent) == 1
    (cid,) = fake.campaigns
    assert first.campaigns == second.campaigns == {"all": cid}
    assert first.started == ["all"] and second.started == []
    assert paths(api.requests, "POST").count("/3.0/campaigns") == 1
    record = store.campaign(edition.id, "all")
    assert record is not None and record.status == "started" and record.provider == "mailchimp"
    assert store.edition_status(edition.id) is EditionStatus.SENT
    # What Mailchimp got: a regular campaign for the audience, titled after the edition.
    campaign = fake.campaigns[cid]
    assert campaign["type"] == "regular" and campaign["recipients"] == {"list_id": "aud1"}
    assert campaign["settings"]["title"] == f"digest {edition.id} [all]"
    assert campaign["settings"]["subject_line"] == edition.subject
    assert campaign["settings"]["from_name"] == "The Meridian Review"
    assert campaign["settings"]["reply_to"] == "digest@meridian.example.org"
    # Mailchimp's merge tags in place of ours, in both parts; none of our tokens left.
    html, text = campaign["content"]["html"], campaign["content"]["plain_text"]
    for body in (html, text):
        assert "*|UNSUB|*" in body and "%%" not in body
        assert "*|IF:FNAME|*Hello *|FNAME|*,*|ELSE:|*Hello,*|END:IF|*" in body
    assert 'href="*|UNSUB|*"' in html
    assert "*|UPDATE_PROFILE|*" in html


def test_mailchimp_crash_between_create_and_store_is_recovered_by_lookup(  # type: ignore[no-untyped-def]
    setup, make_settings, mailchimp, monkeypatch
):
    base, store, edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(make_settings, base, api.url)
    # Another campaign in the audience, so the lookup has to tell them apart.
    fake.campaigns["other"] = {
        "id": "other",
        "status": "sent",
        "recipients": {"list_id": "aud1"},
        "settings": {"title": "digest weekly-2026-W01 [all]"},
    }

    crash_at(monkeypatch, "record_campaign", lambda: run(settings, store, edition))
    assert store.campaign(edition.id, "all") is None
    assert len(fake.campaigns) == 2 and fake.sent == []

    again = run(settings, store, edition)
    made = [c for c in fake.campaigns if c != "other"]
    assert len(made) == 1 and fake.sent == made
    assert again.campaigns == {"all": made[0]}
    assert paths(api.requests, "POST").count("/3.0/campaigns") == 1


def test_mailchimp_crash_between_send_and_record_does_not_send_twice(  # type: ignore[no-untyped-def]
    setup, make_settings, mailchimp, monkeypatch
):
    base, store, edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(make_settings, base, api.url)

    crash_at(monkeypatch, "mark_campaign_started", lambda: run(settings, store, edition))
    record = store.campaign(edition.id, "all")
    assert record is not None and record.status == "created"  # kept before it was sent

    again = run(settings, store, edition)
    assert len(fake.sent) == 1 and again.started == []
    stored = store.campaign(edition.id, "all")
    assert stored is not None and stored.status == "started"
    assert store.edition_status(edition.id) is EditionStatus.SENT


def test_mailchimp_segment_per_variant(setup, make_settings, mailchimp):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(
        make_settings, base, api.url, segments={"analysis": 7, "diplomacy-watch": 7}
    )
    done = run(settings, store, edition)
    # diplomacy-watch has no news this time: no campaign for it.
    assert sorted(done.campaigns) == ["all", "analysis"] and done.skipped == ["diplomacy-watch"]
    by_title = {c["settings"]["title"]: c for c in fake.campaigns.values()}
    analysis = by_title[f"digest {edition.id} [analysis]"]
    assert analysis["recipients"]["segment_opts"] == {"saved_segment_id": 7}
    assert "Item 3" in analysis["content"]["html"] and "Item 1" not in analysis["content"]["html"]
    assert len(fake.sent) == 2


def test_mailchimp_errors_are_reported_with_its_problem_detail(setup, make_settings, mailchimp):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = mailchimp
    wrong_list = mailchimp_settings(make_settings, base, api.url, list_id="nope")
    with pytest.raises(PermanentDeliveryError) as info:
        run(wrong_list, store, edition)
    message = str(info.value)
    assert "Mailchimp" in message and "HTTP 400" in message
    assert "Invalid Resource" in message and "recipients.list_id: Invalid list ID" in message
    assert "a retry will not help" in message
    assert store.campaign(edition.id, "all") is None
    # The edition stays sending: a run with the configuration fixed hands it over.
    assert store.edition_status(edition.id) is EditionStatus.SENDING
    run(mailchimp_settings(make_settings, base, api.url), store, edition)
    assert len(fake.sent) == 1


def test_mailchimp_refused_key_is_permanent(setup, make_settings, mailchimp):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = mailchimp
    fake.api_key = "another-us1"
    settings = mailchimp_settings(make_settings, base, api.url)
    with pytest.raises(PermanentDeliveryError) as info:
        run(settings, store, edition)
    assert "credentials refused (HTTP 401)" in str(info.value)
    assert "API Key Invalid" in str(info.value)
    assert MC_KEY not in str(info.value)


def test_mailchimp_outage_is_transient_and_the_next_run_finishes(  # type: ignore[no-untyped-def]
    setup, make_settings, mailchimp
):
    base, store, edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(make_settings, base, api.url, request_attempts=1)
    # The send itself fails: the campaign is kept, not sent.
    original = fake._send
    fake._send = lambda c: (503, {}, {"title": "Service Unavailable", "status": 503})  # type: ignore[method-assign]
    with pytest.raises(TransientDeliveryError) as info:
        run(settings, store, edition)
    assert "HTTP 503" in str(info.value) and "a retry may help" in str(info.value)
    record = store.campaign(edition.id, "all")
    assert record is not None and record.status == "created"
    fake._send = original  # type: ignore[method-assign]
    run(settings, store, edition)
    assert len(fake.campaigns) == 1 and len(fake.sent) == 1


def test_listmonk_campaign_is_made_once_and_started(setup, make_settings, listmonk):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = listmonk
    settings = listmonk_settings(make_settings, base, api.url, lists={"analysis": [4]})
    first = run(settings, store, edition)
    second = run(settings, store, edition)

    assert len(fake.campaigns) == 2 and sorted(fake.started) == [1, 2]
    assert first.campaigns == second.campaigns == {"all": "1", "analysis": "2"}
    assert second.started == []
    full, part = fake.campaigns[1], fake.campaigns[2]
    assert full["name"] == f"digest {edition.id} [all]" and full["lists"] == [3]
    assert part["lists"] == [4]
    assert full["content_type"] == "html" and full["type"] == "regular"
    assert full["from_email"] == "The Meridian Review <digest@meridian.example.org>"
    for body in (full["body"], full["altbody"]):
        assert "{{ UnsubscribeURL }}" in body and "%%" not in body
        assert "{{ if .Subscriber.FirstName }}Hello {{ .Subscriber.FirstName }}," in body
    assert "{{ ManageURL }}" in full["body"]
    assert paths(api.requests, "POST").count("/api/campaigns") == 2
    assert all(r.headers["Authorization"] == "token digest:tok3n" for r in api.requests)
    assert store.edition_status(edition.id) is EditionStatus.SENT


def test_listmonk_crash_between_create_and_store_is_recovered_by_lookup(  # type: ignore[no-untyped-def]
    setup, make_settings, listmonk, monkeypatch
):
    base, store, edition = setup
    api, fake = listmonk
    settings = listmonk_settings(make_settings, base, api.url)

    crash_at(monkeypatch, "record_campaign", lambda: run(settings, store, edition))
    assert list(fake.campaigns) == [1] and fake.started == []
    again = run(settings, store, edition)
    assert list(fake.campaigns) == [1] and fake.started == [1]
    assert again.campaigns == {"all": "1"}


def test_listmonk_errors_are_reported_with_its_message(setup, make_settings, listmonk):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = listmonk
    with pytest.raises(PermanentDeliveryError) as info:
        run(listmonk_settings(make_settings, base, api.url, list_ids=[99]), store, edition)
    assert "listmonk" in str(info.value) and "HTTP 400: invalid list IDs" in str(info.value)
    fake.token = "changed"
    with pytest.raises(PermanentDeliveryError) as info:
        run(listmonk_settings(make_settings, base, api.url), store, edition)
    assert "credentials refused (HTTP 403)" in str(info.value)
    assert "invalid API credentials" in str(info.value)


def test_the_edition_run_hands_over_to_mailchimp_end_to_end(  # type: ignore[no-untyped-def]
    make_settings, mailchimp, tmp_path
):
    api, fake = mailchimp
    settings = make_settings(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'run.db'}"},
            "delivery": {
                "provider": "mailchimp",
                "mailchimp": {"base_url": f"{api.url}/3.0", "list_id": "aud1", "timeout": 5},
                "retry": {"wait": 0},
            },
        },
        **MC_ENV,
    )
    with closing(Store.open(settings.database_url)) as store:
        store.save_articles(
            [article(1), article(2), article(3, source="analysis", categories=("Europe",))],
            now=NOW,
        )
        # Subscribers kept here are not written to: the list lives at Mailchimp.
        store.import_subscribers([NewSubscriber(email="local@example.org")], now=NOW)
        outcome = run_edition(settings, store, "weekly", NOW)
        assert outcome.failure is None, outcome.summary.failures
        summary = outcome.summary
        assert summary.edition_status == "sent" and summary.edition_id is not None
        (cid,) = fake.campaigns
        assert summary.campaigns == {"all": cid} and fake.sent == [cid]
        assert summary.submitted == 0 and summary.recipients == 0
        assert store.delivery_counts(summary.edition_id)["submitted"] == 0
        assert not settings.outbox_path.exists()

        again = run_edition(settings, store, "weekly", NOW)
        assert again.failure is None and again.summary.campaigns == {"all": cid}
        assert len(fake.campaigns) == 1 and fake.sent == [cid]


def test_the_edition_run_reports_the_providers_error(make_settings, mailchimp, tmp_path):  # type: ignore[no-untyped-def]
    api, _ = mailchimp
    settings = make_settings(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'run.db'}"},
            "delivery": {
                "provider": "mailchimp",
                "mailchimp": {"base_url": f"{api.url}/3.0", "list_id": "gone", "timeout": 5},
            },
        },
        **MC_ENV,
    )
    with closing(Store.open(settings.database_url)) as store:
        store.save_articles([article(1), article(2)], now=NOW)
        outcome = run_edition(settings, store, "weekly", NOW)
    assert isinstance(outcome.failure, PermanentDeliveryError)
    assert outcome.summary.edition_status == "sending" and outcome.summary.campaigns == {}
    assert any("Invalid list ID" in f for f in outcome.summary.failures)
