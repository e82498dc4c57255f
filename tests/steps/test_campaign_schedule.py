"""Scheduling a hand-over instead of sending now (``schedule_minutes``): Mailchimp gets a
quarter-hour UTC time through ``actions/schedule``, listmonk a ``send_at`` and status
``scheduled``; a re-run finds the scheduled campaign and schedules nothing twice; a time the
provider refuses (not on a quarter hour, in the past) is reported with the provider's words."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from digest.config import Settings
from digest.errors import PermanentDeliveryError
from digest.factory import make_campaign_provider
from digest.models import Edition
from digest.render.variants import render_variants
from digest.steps.campaigns import HandOver, hand_over
from digest.store import Store
from tests.steps import test_campaigns as handed
from tests.steps.test_campaigns import listmonk_settings, mailchimp_settings, paths

# The local Mailchimp and listmonk servers of the hand-over tests.
mailchimp = handed.mailchimp
listmonk = handed.listmonk


def run(settings: Settings, store: Store, edition: Edition, now: datetime) -> HandOver:
    variants = render_variants(settings, edition, [None])
    provider = make_campaign_provider(settings)
    assert provider is not None
    with closing(provider):
        return hand_over(settings, store, edition, variants, provider, now=now)


def test_mailchimp_schedules_on_the_next_quarter_hour_once(setup, make_settings, mailchimp):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(make_settings, base, api.url, schedule_minutes=60)
    now = datetime.now(UTC).replace(minute=7, second=30, microsecond=0) + timedelta(days=1)
    first = run(settings, store, edition, now)
    second = run(settings, store, edition, now + timedelta(minutes=5))

    expected = (now + timedelta(minutes=60)).replace(minute=15, second=0)
    assert first.send_at == expected and "scheduled for" in first.summary()
    assert first.started == ["all"] and second.started == []
    assert fake.sent == [] and len(fake.scheduled) == 1
    (cid,) = fake.campaigns
    assert fake.campaigns[cid]["status"] == "schedule"
    assert fake.campaigns[cid]["send_time"] == expected.isoformat()
    schedules = [r for r in api.requests if r.path.endswith("/actions/schedule")]
    assert len(schedules) == 1
    assert schedules[0].json() == {"schedule_time": expected.strftime("%Y-%m-%dT%H:%M:%S+00:00")}
    assert paths(api.requests, "POST").count("/3.0/campaigns") == 1
    assert not any(r.path.endswith("/actions/send") for r in api.requests)


@pytest.mark.parametrize(
    ("when", "words"),
    [
        (timedelta(days=1, minutes=7), "only be scheduled to send on the quarter-hour"),
        (timedelta(days=-1), "must be in the future"),
    ],
)
def test_mailchimp_refusals_of_a_time_quote_mailchimp(  # type: ignore[no-untyped-def]
    setup, make_settings, mailchimp, when: timedelta, words: str
) -> None:
    base, _store, _edition = setup
    api, fake = mailchimp
    settings = mailchimp_settings(make_settings, base, api.url)
    provider = make_campaign_provider(settings)
    assert provider is not None
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + when
    with closing(provider):
        from tests.delivery.test_campaigns import content

        cid = provider.create(content())
        provider.fill(cid, content())
        with pytest.raises(PermanentDeliveryError) as e:
            provider.start(cid, at)
    assert words in str(e.value) and "HTTP 400" in str(e.value)
    assert f"schedule campaign {cid}" in str(e.value)
    assert fake.campaigns[cid]["status"] == "save"


def test_send_time_rounding() -> None:
    from digest.config import MailchimpSettings
    from digest.delivery.campaigns.mailchimp import MailchimpCampaigns
    from tests.delivery.test_campaigns import KEY, PUB

    def at(minutes: int, now: datetime) -> datetime | None:
        settings = MailchimpSettings(api_key=SecretStr(KEY), list_id="a", schedule_minutes=minutes)
        with closing(MailchimpCampaigns(settings, PUB)) as p:
            return p.send_time(now)

    t = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    assert at(0, t) is None
    assert at(60, t) == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert at(1, t) == datetime(2026, 12, 7, 6, 15, tzinfo=UTC)
    assert at(15, t + timedelta(seconds=1)) == datetime(2026, 12, 7, 6, 30, tzinfo=UTC)


def test_listmonk_schedules_with_send_at_once(setup, make_settings, listmonk):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = listmonk
    settings = listmonk_settings(make_settings, base, api.url, schedule_minutes=90)
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    first = run(settings, store, edition, now)
    second = run(settings, store, edition, now)
    assert first.started == ["all"] and second.started == []
    assert fake.started == [] and fake.scheduled == [1]
    campaign = fake.campaigns[1]
    assert campaign["status"] == "scheduled"
    assert campaign["send_at"] == (now + timedelta(minutes=90)).isoformat()
    statuses = [r.json() for r in api.requests if r.path.endswith("/status")]
    assert statuses == [{"status": "scheduled"}]


def test_listmonk_refuses_a_past_send_at_in_its_words(setup, make_settings, listmonk):  # type: ignore[no-untyped-def]
    base, store, edition = setup
    api, fake = listmonk
    settings = listmonk_settings(make_settings, base, api.url, schedule_minutes=5)
    with pytest.raises(PermanentDeliveryError) as e:
        run(settings, store, edition, datetime.now(UTC) - timedelta(days=1))
    assert "send_at date should be in the future" in str(e.value)
    assert fake.campaigns[1]["status"] == "draft"
    # The campaign is kept: a run with a good time schedules that one.
    run(settings, store, edition, datetime.now(UTC))
    assert len(fake.campaigns) == 1 and fake.scheduled == [1]
