"""SendGridProvider against a fake Mail Send API over real HTTP on 127.0.0.1.

Messages are built by the render stage's own code (``compile_message`` and its ``render``, the
same bodies ``personalise`` gives), so the fake's expansion of each personalization can be
compared with ``message.html`` and ``message.text`` exactly. Waits are recorded, not slept.
"""

from __future__ import annotations

import functools
import html
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from email.header import decode_header, make_header
from typing import Any

import pytest
from pydantic import SecretStr

from digest.config import RetrySettings, SendGridSettings, parse_settings
from digest.delivery.sendgrid import SendGridProvider, nonce, substitution_tag
from digest.errors import PermanentDeliveryError
from digest.models import (
    BodyTemplate,
    OutgoingMessage,
    RenderedVariant,
    SendResult,
    SendStatus,
    Subscriber,
)
from digest.render import render_variant
from digest.render.fastmime import MessageTemplate, compile_message
from digest.render.personalise import (
    GREETING,
    PREFERENCES,
    UNSUBSCRIBE,
    body_template,
    greeting,
    personalise,
)
from tests.apiserver import ApiServer
from tests.render import NOW, settings_dict, weekly_edition
from tests.render import make_settings as render_settings

from . import assert_one_per_message, make_message
from .fake_sendgrid import API_KEY, RESERVED, FakeSendGrid

EDITION = weekly_edition()
NAMES = [
    'Zoë <"O\'Neil"> & co',
    "O'Brien, Jr. (Editor)",
    "",
    "Αλέξανδρος",
    'Ann "the = sign" Lee \\ x; and more',
    "山田太郎",
]
# What SendGrid writes itself: never sent by the provider.
NOT_SENT = RESERVED | {"date", "message-id", "mime-version", "return-path"}


@functools.cache
def variant(sections: frozenset[str] | None = None, title: str = "") -> MessageTemplate:
    data = settings_dict()
    if title:
        data["digests"]["weekly"]["title"] = title
    settings = parse_settings(data, environ={}) if title else render_settings()
    rendered = render_variant(EDITION.for_sections(sections), settings)
    return compile_message(
        rendered.html, rendered.text, edition=EDITION, settings=settings, now=NOW
    )


def build(
    count: int, *, start: int = 0, template: MessageTemplate | None = None
) -> list[OutgoingMessage]:
    template = template or variant()
    out = []
    for i in range(start, start + count):
        subscriber = Subscriber(id=i, email=f"reader{i}@example.org", name=NAMES[i % len(NAMES)])
        out.append(
            template.render(
                subscriber=subscriber,
                unsubscribe_url=f"https://m.example.org/u/{i}.sig?a=1&b=<2>",
                preferences_url=f"https://m.example.org/p/{i}.sig",
                key=f"{EDITION.id}/{i}",
            )
        )
    return out


@pytest.fixture
def fake() -> FakeSendGrid:
    return FakeSendGrid()


@pytest.fixture
def api(fake: FakeSendGrid) -> Iterator[ApiServer]:
    with ApiServer(fake.respond) as server:
        yield server


def make_provider(
    url: str, waits: list[float] | None = None, *, api_key: str = API_KEY
) -> SendGridProvider:
    settings = SendGridSettings(base_url=url, api_key=SecretStr(api_key), timeout=5.0)
    return SendGridProvider(
        settings,
        RetrySettings(request_attempts=3),
        sleep=waits.append if waits is not None else (lambda _: None),
        rng=random.Random(7),
    )


def statuses(results: list[SendResult]) -> set[SendStatus]:
    return {r.status for r in results}


def sizes(api: ApiServer) -> list[int]:
    """Personalizations per request the server saw."""
    return [len(r.json()["personalizations"]) for r in api.requests]


def assert_delivered_as_built(fake: FakeSendGrid, messages: list[OutgoingMessage]) -> None:
    """Each message reached SendGrid once, and what its recipient gets is the message itself."""
    got = {d.key: d for d in fake.delivered}
    assert len(got) == len(fake.delivered)
    assert {m.key for m in messages} <= set(got)
    for m in messages:
        d = got[m.key]
        assert d.html == m.html
        assert d.text == m.text
        assert d.subject == m.subject
        assert d.to["email"] == m.recipient
        assert d.custom_args == {"delivery": m.key}
        assert d.personal_headers["List-Unsubscribe"] == m.headers["List-Unsubscribe"]
        assert not {h.lower() for h in d.headers} & NOT_SENT
        assert all(v.isascii() for v in d.headers.values())
        assert d.tracking["click_tracking"] == {"enable": False, "enable_text": False}
        assert d.tracking["open_tracking"] == {"enable": False}
        assert d.tracking["subscription_tracking"] == {"enable": False}


def test_each_recipient_gets_exactly_their_own_bodies(fake: FakeSendGrid, api: ApiServer) -> None:
    messages = build(len(NAMES))
    with make_provider(api.url) as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert_delivered_as_built(fake, messages)
    assert sizes(api) == [len(messages)]
    assert [r.provider_id for r in results] == [d.message_id for d in fake.delivered]
    assert len({r.provider_id for r in results}) == len(results)

    body = api.requests[0].json()
    # The shared content once, tokens replaced by tags, text/plain first.
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "%%" not in body["content"][0]["value"] + body["content"][1]["value"]
    assert body["from"] == {"email": "digest@meridian.example.org", "name": "The Meridian Review"}
    assert body["reply_to"] == {"email": "editors@meridian.example.org"}
    assert body["subject"] == EDITION.subject
    assert body["headers"] == {
        "List-Id": '"The Weekly Dispatch" <weekly.meridian.example.org>',
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    first = body["personalizations"][0]
    assert set(first) == {"to", "headers", "substitutions", "custom_args"}
    assert first["to"] == [{"email": "reader0@example.org", "name": NAMES[0]}]
    # HTML values escaped, text values as they are, each under its own tag.
    hello = greeting(NAMES[0])
    assert html.escape(hello, quote=True) in first["substitutions"].values()
    assert hello in first["substitutions"].values()
    assert "&lt;&quot;O&#x27;Neil&quot;&gt; &amp; co" in (fake.delivered[0].html or "")
    # SendGrid refuses ";" and "," in to.name.
    assert body["personalizations"][1]["to"][0]["name"] == "O'Brien Jr. (Editor)"
    assert "name" not in body["personalizations"][2]["to"][0]
    assert body["personalizations"][4]["to"][0]["name"] == 'Ann "the = sign" Lee \\ x and more'


def test_2500_messages_of_one_variant_go_in_three_requests(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    messages = build(2500)
    seen: list[tuple[str, int]] = []  # (key, requests the server had received by then)
    with make_provider(api.url) as provider:
        results = provider.send(
            messages, on_result=lambda r: seen.append((r.key, len(api.requests)))
        )
    assert_one_per_message(messages, results)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert sizes(api) == [1000, 1000, 500]
    # Reported as soon as each request was answered, before the next one, in order.
    assert [k for k, _ in seen] == [m.key for m in messages]
    assert [n for _, n in seen] == [1] * 1000 + [2] * 1000 + [3] * 500
    assert len({r.provider_id for r in results}) == 2500
    # The body goes once per request, not once per recipient.
    body_size = len(messages[0].html.encode()) + len(messages[0].text.encode())
    assert all(len(r.json()["content"]) == 2 for r in api.requests)
    assert sum(len(r.body) for r in api.requests) < 2500 * body_size / 15
    assert len(fake.delivered) == 2500
    assert_delivered_as_built(fake, messages)


def test_variants_go_in_separate_requests(fake: FakeSendGrid, api: ApiServer) -> None:
    everything = build(4)
    qiosk_only = build(4, start=10, template=variant(frozenset({"qiosk"})))
    messages = [m for pair in zip(everything, qiosk_only, strict=True) for m in pair]
    assert messages[0].template != messages[1].template
    with make_provider(api.url) as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert sizes(api) == [4, 4]
    keys = [
        [p["custom_args"]["delivery"] for p in r.json()["personalizations"]] for r in api.requests
    ]
    assert keys == [[m.key for m in everything], [m.key for m in qiosk_only]]
    assert_delivered_as_built(fake, messages)


def test_429_waits_for_retry_after_then_submits_once(fake: FakeSendGrid, api: ApiServer) -> None:
    api.script = [(429, {"Retry-After": "7"}, {"errors": [{"message": "too many requests"}]})]
    waits: list[float] = []
    messages = build(3)
    with make_provider(api.url, waits) as provider:
        results = provider.send(messages)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert len(waits) == 1 and waits[0] >= 7
    assert [r.answer for r in api.requests] == [429, 202]
    assert len(fake.delivered) == 3  # nothing twice
    assert_delivered_as_built(fake, messages)


def test_429_without_retry_after_waits_for_the_rate_limit_reset(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    reset = int(time.time()) + 20
    headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
    api.script = [(429, {**headers, "X-RateLimit-Reset": str(reset)}, {"errors": []})]
    waits: list[float] = []
    with make_provider(api.url, waits) as provider:
        results = provider.send(build(2))
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert len(waits) == 1 and 17 <= waits[0] <= 21


def test_5xx_until_tries_run_out_is_transient_and_stops_the_batch(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    error = {"errors": [{"message": "internal server error"}]}
    api.script = [(500, {}, error), (500, {}, error), (503, {"Retry-After": "30"}, error)]
    waits: list[float] = []
    messages = build(2) + build(2, start=10, template=variant(frozenset({"qiosk"})))
    reported: list[SendResult] = []
    with make_provider(api.url, waits) as provider:
        results = provider.send(messages, on_result=reported.append)
    assert_one_per_message(messages, results)
    assert reported == results
    assert statuses(results) == {SendStatus.TRANSIENT}
    assert all(r.retry_after == 30 for r in results)
    assert "HTTP 503" in results[0].reason and "after 3 tries" in results[0].reason
    # The second variant's request is not tried against a failing API.
    assert results[2].reason.startswith("not attempted: ")
    assert len(api.requests) == 3 and len(waits) == 2
    assert fake.delivered == []


def test_400_is_permanent_with_sendgrid_s_message(fake: FakeSendGrid, api: ApiServer) -> None:
    message = "The from address does not match a verified Sender Identity."
    api.script = [(400, {}, {"errors": [{"message": message, "field": "from", "help": None}]})]
    with make_provider(api.url) as provider:
        results = provider.send(build(3))
    assert statuses(results) == {SendStatus.PERMANENT}
    assert all(not r.bounce and message in r.reason and "HTTP 400" in r.reason for r in results)
    assert len(api.requests) == 1


def test_400_naming_one_personalization_fails_only_that_message(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    messages = build(4)
    messages[2] = replace(messages[2], recipient="not-an-address")
    with make_provider(api.url) as provider:
        results = provider.send(messages)
    assert [r.status for r in results] == [SendStatus.SUBMITTED] * 2 + [
        SendStatus.PERMANENT,
        SendStatus.SUBMITTED,
    ]
    assert "personalizations.2.to.0.email: Does not contain a valid address" in results[2].reason
    assert not results[2].bounce
    assert sizes(api) == [4, 3]
    assert_delivered_as_built(fake, [m for i, m in enumerate(messages) if i != 2])


def test_401_raises_when_nothing_was_sent(fake: FakeSendGrid, api: ApiServer) -> None:
    reported: list[SendResult] = []
    with (
        make_provider(api.url, api_key="SG.wrong") as provider,
        pytest.raises(PermanentDeliveryError, match="401"),
    ):
        provider.send(build(2), on_result=reported.append)
    assert reported == [] and fake.delivered == []


def test_401_after_a_written_request_leaves_the_rest_transient(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    messages = build(2) + build(2, start=10, template=variant(frozenset({"qiosk"})))

    def revoke(result: SendResult) -> None:
        fake.api_key = "SG.revoked"

    with make_provider(api.url) as provider:
        results = provider.send(messages, on_result=revoke)
    assert_one_per_message(messages, results)
    assert [r.status for r in results] == [SendStatus.SUBMITTED] * 2 + [SendStatus.TRANSIENT] * 2
    assert "credentials refused (HTTP 401)" in results[2].reason
    assert [r.answer for r in api.requests] == [202, 401]


def test_413_splits_the_request_in_halves(fake: FakeSendGrid, api: ApiServer) -> None:
    api.script = [(413, {}, {"errors": [{"message": "content too large", "field": None}]})]
    messages = build(8)
    with make_provider(api.url) as provider:
        results = provider.send(messages)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert sizes(api) == [8, 4, 4]
    assert_delivered_as_built(fake, messages)


def test_413_down_to_a_single_message_is_permanent(fake: FakeSendGrid, api: ApiServer) -> None:
    fake.max_bytes = 1000
    with make_provider(api.url) as provider:
        results = provider.send(build(2))
    assert statuses(results) == {SendStatus.PERMANENT}
    assert all("HTTP 413" in r.reason and "content too large" in r.reason for r in results)
    assert sizes(api) == [2, 1, 1]


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the provider connects
    waits: list[float] = []
    messages = build(3)
    with make_provider(f"http://127.0.0.1:{port}", waits) as provider:
        results = provider.send(messages)
        assert provider.requests_written == 3
    assert_one_per_message(messages, results)
    assert statuses(results) == {SendStatus.TRANSIENT}
    assert "ConnectionError" in results[0].reason and f"127.0.0.1:{port}" in results[0].reason
    assert len(waits) == 2


def test_empty_batch_makes_no_request_and_close_can_be_repeated(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    provider = make_provider(api.url)
    assert provider.send([]) == []
    assert api.requests == [] and provider.requests_written == 0
    provider.close()
    provider.close()
    # Closed sessions reopen on the next send.
    assert statuses(provider.send(build(1))) == {SendStatus.SUBMITTED}
    provider.close()


def test_messages_that_cannot_share_the_body_go_alone_with_their_own(
    fake: FakeSendGrid, api: ApiServer
) -> None:
    shared = build(3)
    no_template = make_message("plain@example.org", n=90)
    edited = replace(build(1, start=91)[0], html=shared[0].html + "<!-- edited -->")
    # "&" escapes to five bytes: the HTML greeting alone passes 10,000 bytes of substitutions.
    heavy_subscriber = Subscriber(id=92, email="heavy@example.org", name="&" * 2500)
    heavy = variant().render(
        subscriber=heavy_subscriber,
        unsubscribe_url="https://m.example.org/u/92",
        preferences_url="https://m.example.org/p/92",
        key=f"{EDITION.id}/92",
    )
    messages = [shared[0], no_template, shared[1], edited, heavy, shared[2]]
    with make_provider(api.url) as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert sizes(api) == [3, 1, 1, 1]
    for request in api.requests[1:]:
        assert "substitutions" not in request.json()["personalizations"][0]
    assert len(fake.delivered) == len(messages)
    got = {d.key: d for d in fake.delivered}
    assert got[no_template.key].html == no_template.html
    assert got[no_template.key].text == no_template.text
    assert_delivered_as_built(fake, [m for m in messages if m is not no_template])


def _hand_built(template: BodyTemplate, n: int, name: str) -> OutgoingMessage:
    """A message as the deliver stage gets it, its bodies from ``personalise``."""
    unsubscribe, preferences = f"https://m.example.org/u/{n}?x=1&y=2", f"https://m/p/{n}"
    body_html, body_text = personalise(
        RenderedVariant("e1", None, "Subject", template.html, template.text),
        unsubscribe_url=unsubscribe,
        preferences_url=preferences,
        name=name,
    )
    return OutgoingMessage(
        key=f"e1/{n}",
        edition_id="e1",
        message_id=f"<e1.{n}@example.com>",
        sender="digest@example.com",
        recipient=f"r{n}@example.org",
        subject="Subject -greeting_text-",
        raw=b"",
        html=body_html,
        text=body_text,
        headers={
            "From": "Digest <digest@example.com>",
            "To": f"r{n}@example.org",
            "Subject": "Subject -greeting_text-",
            "List-Unsubscribe": f"<{unsubscribe}>",
        },
        template=template,
        tokens={UNSUBSCRIBE: unsubscribe, PREFERENCES: preferences, GREETING: greeting(name)},
    )


def test_substitution_tags_never_collide_with_body_text(fake: FakeSendGrid, api: ApiServer) -> None:
    taken = substitution_tag(GREETING, "html", nonce("t1", 0))  # the first suffix tried
    template = body_template(
        "t1",
        (
            f"<p>{GREETING}</p><p>-greeting_html- {taken} %%GREETING %% &amp; 100%%</p>"
            f'<a href="{UNSUBSCRIBE}">Unsubscribe</a> <a href="{PREFERENCES}">Preferences</a>'
        ),
        f"{GREETING}\n-greeting_text- {taken}\nUnsubscribe: {UNSUBSCRIBE}\n",
    )
    messages = [
        _hand_built(template, 1, "-greeting_html- & -unsubscribe_url_text-"),
        _hand_built(template, 2, taken),
    ]
    with make_provider(api.url) as provider:
        results = provider.send(messages)
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert sizes(api) == [2]
    tags = set(api.requests[0].json()["personalizations"][0]["substitutions"])
    assert taken not in tags and len(tags) == 5  # three tokens in the HTML, two in the text
    assert_delivered_as_built(fake, messages)


def test_same_address_twice_goes_in_two_requests(fake: FakeSendGrid, api: ApiServer) -> None:
    first, second = build(2)
    second = replace(second, recipient=first.recipient, headers={**second.headers, "To": ""})
    with make_provider(api.url) as provider:
        results = provider.send([first, second])
    assert statuses(results) == {SendStatus.SUBMITTED}
    assert sizes(api) == [1, 1]


def test_subjects_that_differ_go_per_personalization(fake: FakeSendGrid, api: ApiServer) -> None:
    messages = build(2)
    messages[1] = replace(messages[1], subject="Another subject")
    with make_provider(api.url) as provider:
        assert statuses(provider.send(messages)) == {SendStatus.SUBMITTED}
    body: dict[str, Any] = api.requests[0].json()
    assert "subject" not in body
    assert [p["subject"] for p in body["personalizations"]] == [EDITION.subject, "Another subject"]
    assert_delivered_as_built(fake, messages)


def test_non_ascii_headers_go_encoded(fake: FakeSendGrid, api: ApiServer) -> None:
    title = "La Dépêche, « hebdo »"
    messages = build(2, template=variant(None, title))
    with make_provider(api.url) as provider:
        assert statuses(provider.send(messages)) == {SendStatus.SUBMITTED}
    list_id = fake.delivered[0].headers["List-Id"]
    assert list_id.isascii()
    # As the message's own bytes carry it: the phrase as one encoded word (no quotes needed).
    assert str(make_header(decode_header(list_id))) == f"{title} <weekly.meridian.example.org>"
    assert_delivered_as_built(fake, messages)
