"""The campaign adapters on their own: where they connect, how our tokens become each
provider's merge tags, rate limits and lookups, against local servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

import pytest
from pydantic import SecretStr

from digest.config import ListmonkSettings, MailchimpSettings, PublicationSettings, Settings
from digest.delivery.campaigns import mailchimp as mc
from digest.delivery.campaigns.base import CampaignContent, campaign_title
from digest.delivery.campaigns.listmonk import ListmonkCampaigns
from digest.delivery.campaigns.mailchimp import MailchimpCampaigns, api_root
from digest.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from digest.factory import make_provider
from digest.render.personalise import GREETING, UNSUBSCRIBE, body_template
from digest.steps.campaigns import TOKEN_ROLES
from tests.apiserver import ApiServer
from tests.delivery.fake_listmonk import ACTION, FakeListmonk
from tests.delivery.fake_mailchimp import FakeMailchimp, problem

KEY = "0123456789abcdef-us1"
PUB = PublicationSettings(
    name="The Meridian Review",
    url="https://meridian.example.org",
    from_email="digest@meridian.example.org",
    postal_address="1200 Harbor Street, Baltimore, MD 21230, USA",
)


def content(title: str = "digest weekly-2026-W49 [all]") -> CampaignContent:
    return CampaignContent(
        edition_id="weekly-2026-W49",
        variant="all",
        title=title,
        subject="This week",
        preview_text="The news",
        html="<p>Hi</p>",
        text="Hi",
    )


def mailchimp(url: str, sleeps: list[float] | None = None, **kw: object) -> MailchimpCampaigns:
    settings = MailchimpSettings(
        base_url=f"{url}/3.0", api_key=SecretStr(KEY), list_id="aud1", timeout=5, **kw
    )
    return MailchimpCampaigns(settings, PUB, sleep=(sleeps if sleeps is not None else []).append)


def test_the_datacenter_comes_from_the_key_or_the_server_prefix() -> None:
    key = SecretStr("abc-us21")
    assert api_root(MailchimpSettings(api_key=key), "abc-us21") == (
        "https://us21.api.mailchimp.com/3.0"
    )
    assert api_root(MailchimpSettings(server_prefix="us6"), "abc-us21") == (
        "https://us6.api.mailchimp.com/3.0"
    )


def test_campaign_providers_are_checked_when_the_configuration_loads(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(
            {"delivery": {"provider": "mailchimp"}}, DIGEST__DELIVERY__MAILCHIMP__API_KEY="nodc"
        )
    text = str(info.value)
    assert "delivery.mailchimp.list_id: required" in text
    assert "delivery.mailchimp.server_prefix: required" in text
    with pytest.raises(ConfigError) as info:
        make_settings({"delivery": {"provider": "listmonk"}})
    text = str(info.value)
    assert "delivery.listmonk.token: required (set DIGEST__DELIVERY__LISTMONK__TOKEN)" in text
    assert "delivery.listmonk.base_url: required" in text
    assert "delivery.listmonk.list_ids: at least one" in text


def test_a_campaign_provider_refuses_single_messages_clearly(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        {"delivery": {"provider": "mailchimp", "mailchimp": {"list_id": "aud1"}}},
        DIGEST__DELIVERY__MAILCHIMP__API_KEY=KEY,
    )
    with pytest.raises(PermanentDeliveryError, match="takes whole editions as campaigns"):
        make_provider(settings)


def test_tokens_become_merge_tags_and_look_alike_text_stays_literal() -> None:
    title = "Why *|EMAIL|* and {{ .Subscriber.Email }}"
    html = f'<p>{GREETING}</p><h2>{title}</h2><a href="{UNSUBSCRIBE}">x</a>'
    text = f"{GREETING}\n{title}\n{UNSUBSCRIBE}"
    body = body_template("t", html, text)

    out_html, out_text = mc.TAGS.apply(body, TOKEN_ROLES)
    assert 'href="*|UNSUB|*"' in out_html and "*|UNSUB|*" in out_text
    assert "*|EMAIL|*" not in out_html and "*&#124;EMAIL|*" in out_html
    assert "*|EMAIL|*" not in out_text and "*\u200d|EMAIL|*" in out_text

    lm_html, lm_text = ListmonkCampaigns.tags.apply(body, TOKEN_ROLES)
    for out in (lm_html, lm_text):
        assert "{{ UnsubscribeURL }}" in out
        # The article's braces are quoted: listmonk prints them instead of running them.
        assert '{{ "{{" }} .Subscriber.Email }}' in out
        assert "{{" not in ACTION.sub("", out)


def test_a_token_without_a_merge_tag_is_refused() -> None:
    body = body_template("t", f"<p>{UNSUBSCRIBE}</p>", "x")
    with pytest.raises(PermanentDeliveryError, match="no merge tag for the token"):
        mc.TAGS.apply(body, {})


def test_mailchimp_429_waits_for_retry_after_then_goes_on() -> None:
    fake = FakeMailchimp(api_key=KEY)
    status, headers, body = problem(
        429,
        "Too Many Requests",
        "You have exceeded the limit of 10 simultaneous connections.",
    )
    with ApiServer(fake) as api:
        api.script.append((status, {**headers, "Retry-After": "7"}, body))
        sleeps: list[float] = []
        with closing(mailchimp(api.url, sleeps)) as provider:
            cid = provider.create(content())
        assert sleeps == [7.0] and list(fake.campaigns) == [cid]


def test_mailchimp_429_beyond_what_a_request_waits_is_transient() -> None:
    fake = FakeMailchimp(api_key=KEY)
    status, headers, body = problem(429, "Too Many Requests", "Slow down.")
    with ApiServer(fake) as api:
        api.script.append((status, {**headers, "Retry-After": "3600"}, body))
        with closing(mailchimp(api.url)) as provider, pytest.raises(TransientDeliveryError) as e:
            provider.create(content())
    assert "HTTP 429" in str(e.value) and "Too Many Requests" in str(e.value)
    assert fake.campaigns == {}


def test_mailchimp_lookup_reads_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mc, "PAGE", 2)
    fake = FakeMailchimp(api_key=KEY)
    with ApiServer(fake) as api, closing(mailchimp(api.url)) as provider:
        ids = [provider.create(content(campaign_title(f"e{i}", "all"))) for i in range(5)]
        found = provider.find(campaign_title("e4", "all"))
        assert found is not None and found.id == ids[4] and not found.started
        assert provider.find(campaign_title("e9", "all")) is None
        lookups = [r for r in api.requests if r.method == "GET"]
        assert all("list_id=aud1" in r.path for r in lookups)


def test_listmonk_lookup_matches_the_exact_name() -> None:
    fake = FakeListmonk()
    settings = ListmonkSettings(
        api_user="digest", token=SecretStr("tok3n"), list_ids=[3], timeout=5
    )
    with ApiServer(fake) as api:
        provider = ListmonkCampaigns(settings.model_copy(update={"base_url": api.url}), PUB)
        with closing(provider):
            provider.create(content(campaign_title("weekly-2026-W49", "all") + " old"))
            assert provider.find(campaign_title("weekly-2026-W49", "all")) is None
            cid = provider.create(content())
            found = provider.find(campaign_title("weekly-2026-W49", "all"))
            assert found is not None and found.id == cid and found.status == "draft"
