"""MailgunProvider against a fake of Mailgun's messages API on 127.0.0.1.

Messages are built as the render stage builds them: one shared :class:`BodyTemplate` per
variant, each recipient's html/text from ``personalise``, and the plain token values. The fake
expands each recipient's copy as Mailgun does, so the tests check what every recipient would
get against the message the provider was given.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Any

import pytest

from digest.config import MailgunSettings, RetrySettings
from digest.delivery.mailgun import MailgunProvider
from digest.errors import PermanentDeliveryError
from digest.models import BodyTemplate, OutgoingMessage, RenderedVariant, SendResult, SendStatus
from digest.render.personalise import (
    GREETING,
    PREFERENCES,
    UNSUBSCRIBE,
    body_template,
    greeting,
    personalise,
)
from tests.apiserver import Answer, ApiServer, Request

from . import EDITION, assert_one_per_message
from .fake_mailgun import FakeMailgun

DOMAIN = "mg.example.org"
KEY = "key-test"
FROM = "The Weekly Dispatch <digest@example.com>"
SUBJECT = "The Weekly Dispatch: Zoë's news & more"
TRICKY_NAME = 'Zoë <"O\'Neil"> & co'

HTML = (
    "<html><body><p>%%GREETING%%</p>\n"
    '<p>Read <a href="https://example.com/a?x=1&amp;y=2">this</a> (100% free).</p>\n'
    '<p><a href="%%PREFERENCES_URL%%">Preferences</a> · '
    '<a href="%%UNSUBSCRIBE_URL%%">Unsubscribe</a></p></body></html>\n'
)
TEXT = (
    "%%GREETING%%\n\nRead this: https://example.com/a?x=1&y=2 (100% free)\n\n"
    "Preferences: %%PREFERENCES_URL%%\nUnsubscribe: %%UNSUBSCRIBE_URL%%\n"
)


def make_template(variant: str = "all") -> BodyTemplate:
    return body_template(
        f"{EDITION}/{variant}",
        HTML.replace("<body>", f"<body><!-- {variant} -->"),
        f"[{variant}]\n" + TEXT,
    )


def personal(
    template: BodyTemplate,
    n: int,
    *,
    email: str | None = None,
    name: str = "",
    key: str | None = None,
) -> OutgoingMessage:
    """Subscriber ``n``'s message of ``template``, as the render stage would build it."""
    email = email or f"reader{n}@example.org"
    unsubscribe = f"https://links.example.com/u?s={n}&t=tok{n}"
    preferences = f"https://links.example.com/p?s={n}&t=tok{n}"
    variant = RenderedVariant(EDITION, None, SUBJECT, template.html, template.text)
    body_html, body_text = personalise(
        variant, unsubscribe_url=unsubscribe, preferences_url=preferences, name=name
    )
    message_id = f"<{EDITION}.{n}@example.com>"
    headers = {
        "From": FROM,
        "Subject": SUBJECT,
        "List-Id": '"The Weekly Dispatch" <weekly.example.com>',
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Reply-To": "editor@example.com",
        "To": str(Address(display_name=name, addr_spec=email)),
        "Date": "Mon, 23 Nov 2026 07:00:00 +0000",
        "Message-ID": message_id,
        "List-Unsubscribe": f"<{unsubscribe}>, <mailto:leave@example.com?subject=unsubscribe>",
    }
    return OutgoingMessage(
        key=key or f"{EDITION}/{n}",
        edition_id=EDITION,
        message_id=message_id,
        sender="digest@example.com",
        recipient=email,
        subject=SUBJECT,
        raw=b"(not used by HTTP providers)",
        html=body_html,
        text=body_text,
        headers=headers,
        template=template,
        tokens={UNSUBSCRIBE: unsubscribe, PREFERENCES: preferences, GREETING: greeting(name)},
    )


@dataclass
class Mailgun:
    fake: FakeMailgun
    api: ApiServer
    waits: list[float] = field(default_factory=list)

    def provider(self, **kwargs: Any) -> MailgunProvider:
        url = kwargs.pop("base_url", self.api.url)
        settings = MailgunSettings(base_url=url, domain=self.fake.domain, timeout=5.0)
        return MailgunProvider(
            settings, RetrySettings(), api_key=KEY, sleep=self.waits.append, **kwargs
        )


@dataclass
class _Current:
    """Routes the shared server's requests to the running test's fake."""

    fake: FakeMailgun

    def respond(self, request: Request) -> Answer:
        return self.fake.respond(request)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ApiServer, _Current]]:
    # One server for the module: stopping one takes half a second (its poll interval).
    current = _Current(FakeMailgun())
    with ApiServer(current.respond) as api:
        yield api, current


@pytest.fixture
def mailgun(server: tuple[ApiServer, _Current]) -> Mailgun:
    api, current = server
    api.requests.clear()
    api.script.clear()
    current.fake = FakeMailgun(domain=DOMAIN, api_key=KEY)
    return Mailgun(current.fake, api)


def _statuses(results: list[SendResult]) -> set[SendStatus]:
    return {r.status for r in results}


def _assert_received(fake: FakeMailgun, messages: list[OutgoingMessage]) -> None:
    """Every message arrived once, and its recipient's copy is exactly that message."""
    copies = {c.address: c for c in fake.copies}
    assert len(fake.copies) == len(messages) == len(copies)
    for m in messages:
        copy = copies[m.recipient]
        assert copy.html == m.html
        assert copy.text == m.text
        assert copy.subject == m.subject
        assert copy.sender == m.headers["From"]
        assert copy.headers["List-Unsubscribe"] == m.headers["List-Unsubscribe"]
        assert copy.variables == {"delivery": m.key, "edition": m.edition_id}


def test_each_recipient_gets_exactly_their_message(mailgun: Mailgun) -> None:
    template = make_template()
    messages = [
        personal(template, 1, name=TRICKY_NAME),
        personal(template, 2, name="Smith, Jane"),
        personal(template, 3),
    ]
    seen: list[SendResult] = []
    with mailgun.provider() as provider:
        results = provider.send(messages, on_result=seen.append)

    assert_one_per_message(messages, results)
    assert seen == results
    assert _statuses(results) == {SendStatus.SUBMITTED}
    (accepted,) = mailgun.fake.accepted
    assert [r.provider_id for r in results] == [f"{accepted.id}#{n}" for n in range(3)]
    _assert_received(mailgun.fake, messages)

    (request,) = mailgun.api.requests
    assert request.path == f"/v3/{DOMAIN}/messages"
    # The body went once, with references in place of every personal value.
    (body,) = accepted.values("html")
    assert "%recipient.html_greeting%" in body and "%%" not in body and "Zoë" not in body
    (text,) = accepted.values("text")
    assert "%recipient.text_unsubscribe_url%" in text and "tok1" not in text
    variables = json.loads(accepted.values("recipient-variables")[0])
    assert variables["reader1@example.org"]["html_greeting"] == (
        "Hello Zoë &lt;&quot;O&#x27;Neil&quot;&gt; &amp; co,"
    )
    # The To header keeps the display name; the variables are keyed by the bare address.
    copies = {c.address: c for c in mailgun.fake.copies}
    assert copies["reader1@example.org"].to == messages[0].headers["To"]
    assert copies["reader2@example.org"].to == '"Smith, Jane" <reader2@example.org>'
    assert copies["reader3@example.org"].to == "reader3@example.org"
    # Shared headers as they are; nothing Mailgun writes itself; tracking off.
    for copy in copies.values():
        assert copy.headers == {
            "List-Id": '"The Weekly Dispatch" <weekly.example.com>',
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Reply-To": "editor@example.com",
            "List-Unsubscribe": copy.headers["List-Unsubscribe"],
        }
        assert copy.options == {"tracking": "no", "tracking-clicks": "no", "tracking-opens": "no"}
    assert len({c.headers["List-Unsubscribe"] for c in copies.values()}) == 3
    assert accepted.values("h:List-Unsubscribe") == ["%recipient.h:List-Unsubscribe%"]
    assert accepted.values("v:delivery") == ["%recipient.v:delivery%"]
    assert accepted.values("v:edition") == [EDITION]


def test_2500_messages_go_in_three_requests(mailgun: Mailgun) -> None:
    template = make_template()
    messages = [personal(template, n) for n in range(2500)]
    requests_at_result: list[int] = []

    def on_result(result: SendResult) -> None:
        requests_at_result.append(len(mailgun.api.requests))

    with mailgun.provider() as provider:
        results = provider.send(messages, on_result=on_result)

    assert_one_per_message(messages, results)
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert len({r.provider_id for r in results}) == 2500
    assert [len(a.copies) for a in mailgun.fake.accepted] == [1000, 1000, 500]
    for accepted in mailgun.fake.accepted:
        assert len(accepted.values("html")) == len(accepted.values("text")) == 1
    # Each result was reported right after its own request, before the next one.
    assert requests_at_result == [1] * 1000 + [2] * 1000 + [3] * 500
    _assert_received(mailgun.fake, messages)
    assert mailgun.waits == []


def test_variants_go_in_separate_requests(mailgun: Mailgun) -> None:
    a, b = make_template("a"), make_template("b")
    messages = [personal(a if n % 2 else b, n) for n in range(6)]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert len(mailgun.fake.accepted) == 2
    assert [len(x.copies) for x in mailgun.fake.accepted] == [3, 3]
    _assert_received(mailgun.fake, messages)


def test_one_address_twice_goes_in_two_requests(mailgun: Mailgun) -> None:
    template = make_template()
    messages = [
        personal(template, 1, email="same@example.org"),
        personal(template, 2),
        personal(template, 3, email="SAME@example.org"),
    ]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert [[c.address for c in x.copies] for x in mailgun.fake.accepted] == [
        ["same@example.org", "reader2@example.org"],
        ["SAME@example.org"],
    ]


def test_messages_without_template_go_one_by_one(mailgun: Mailgun) -> None:
    from dataclasses import replace

    template = make_template()
    messages = [replace(personal(template, n), template=None, tokens={}) for n in range(3)]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert len(mailgun.fake.accepted) == 3
    _assert_received(mailgun.fake, messages)
    # A lone recipient's values go as they are.
    first = mailgun.fake.accepted[0]
    assert first.values("v:delivery") == [messages[0].key]
    assert first.values("html") == [messages[0].html]


def test_rate_limit_waits_for_retry_after(mailgun: Mailgun) -> None:
    mailgun.api.script.append((429, {"Retry-After": "7"}, {"message": "Too many requests"}))
    messages = [personal(make_template(), n) for n in range(3)]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert len(mailgun.api.requests) == 2
    assert len(mailgun.waits) == 1 and mailgun.waits[0] >= 7
    assert len(mailgun.fake.accepted) == 1  # nothing sent twice
    _assert_received(mailgun.fake, messages)


def test_server_errors_that_persist_are_transient(mailgun: Mailgun) -> None:
    mailgun.api.script.extend([(500, {}, {"message": "Internal error"})] * 3)
    a, b = make_template("a"), make_template("b")
    messages = [personal(a, 1), personal(a, 2), personal(b, 3)]
    seen: list[SendResult] = []
    with mailgun.provider() as provider:
        results = provider.send(messages, on_result=seen.append)
    assert_one_per_message(messages, results)
    assert _statuses(results) == {SendStatus.TRANSIENT}
    assert "HTTP 500" in results[0].reason
    # The batch stopped: variant b's request was not made.
    assert len(mailgun.api.requests) == 3 and len(mailgun.waits) == 2
    assert results[2].reason.startswith("not sent:")
    assert mailgun.fake.accepted == [] and len(seen) == 3


def test_refusal_is_permanent_and_quotes_mailgun(mailgun: Mailgun) -> None:
    mailgun.api.script.append((400, {}, {"message": "from parameter is not a valid address"}))
    messages = [personal(make_template(), n) for n in range(2)]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert _statuses(results) == {SendStatus.PERMANENT}
    assert all("from parameter is not a valid address" in r.reason for r in results)
    assert not any(r.bounce for r in results)
    assert len(mailgun.api.requests) == 1


def test_a_refused_address_is_isolated(mailgun: Mailgun) -> None:
    template = make_template()
    messages = [personal(template, n) for n in range(4)]
    messages[1] = personal(template, 1, email="not-an-address@nowhere")
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert [r.status for r in results] == [
        SendStatus.SUBMITTED,
        SendStatus.PERMANENT,
        SendStatus.SUBMITTED,
        SendStatus.SUBMITTED,
    ]
    assert "not a valid address" in results[1].reason
    # [0..3] refused → [0,1] refused, [2,3] sent → [0] sent, [1] refused.
    assert [r.answer for r in mailgun.api.requests] == [
        400,
        400,
        200,
        400,
        200,
    ]
    _assert_received(mailgun.fake, [messages[0], messages[2], messages[3]])


def test_wrong_key_raises_before_anything_is_sent(mailgun: Mailgun) -> None:
    seen: list[SendResult] = []
    settings = MailgunSettings(base_url=mailgun.api.url, domain=DOMAIN, timeout=5.0)
    with (
        MailgunProvider(settings, api_key="wrong", sleep=mailgun.waits.append) as provider,
        pytest.raises(PermanentDeliveryError, match="credentials refused"),
    ):
        provider.send([personal(make_template(), 1)], on_result=seen.append)
    assert seen == [] and mailgun.waits == [] and len(mailgun.api.requests) == 1


def test_key_refused_midway_leaves_the_rest_transient(mailgun: Mailgun) -> None:
    a, b = make_template("a"), make_template("b")
    messages = [personal(a, 1), personal(b, 2), personal(b, 3)]

    def revoke(result: SendResult) -> None:
        mailgun.fake.api_key = "rotated"

    with mailgun.provider() as provider:
        results = provider.send(messages, on_result=revoke)
    assert [r.status for r in results] == [
        SendStatus.SUBMITTED,
        SendStatus.TRANSIENT,
        SendStatus.TRANSIENT,
    ]
    assert "credentials refused" in results[1].reason
    assert len(mailgun.api.requests) == 2


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    settings = MailgunSettings(base_url=f"http://127.0.0.1:{port}", domain=DOMAIN, timeout=5.0)
    messages = [personal(make_template(), n) for n in range(2)]
    with MailgunProvider(settings, api_key=KEY, sleep=waits.append) as provider:
        results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert _statuses(results) == {SendStatus.TRANSIENT}
    assert "ConnectionError" in results[0].reason
    assert len(waits) == 2  # three tries


def test_too_large_requests_are_split(mailgun: Mailgun) -> None:
    mailgun.api.script.append((413, {}, "Request Entity Too Large"))
    messages = [personal(make_template(), n) for n in range(4)]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert [len(x.copies) for x in mailgun.fake.accepted] == [2, 2]
    _assert_received(mailgun.fake, messages)


def test_a_message_too_large_alone_is_permanent(mailgun: Mailgun) -> None:
    mailgun.fake.max_bytes = 100
    messages = [personal(make_template(), n) for n in range(4)]
    with mailgun.provider() as provider:
        results = provider.send(messages)
    assert _statuses(results) == {SendStatus.PERMANENT}
    assert all("HTTP 413" in r.reason for r in results)
    assert len(mailgun.api.requests) == 1 + 2 + 4


def test_empty_batch_makes_no_request(mailgun: Mailgun) -> None:
    with mailgun.provider() as provider:
        assert provider.send([]) == []
    assert mailgun.api.requests == []


def test_domain_is_quoted_in_the_path(mailgun: Mailgun) -> None:
    mailgun.fake.domain = "mg example.org"
    with mailgun.provider() as provider:
        results = provider.send([personal(make_template(), 1)])
    assert _statuses(results) == {SendStatus.SUBMITTED}
    assert mailgun.api.requests[0].path == "/v3/mg%20example.org/messages"


def test_unknown_domain_raises(mailgun: Mailgun) -> None:
    settings = MailgunSettings(base_url=mailgun.api.url, domain="other.example.org", timeout=5.0)
    with (
        MailgunProvider(settings, api_key=KEY, sleep=mailgun.waits.append) as provider,
        pytest.raises(PermanentDeliveryError, match="HTTP 404"),
    ):
        provider.send([personal(make_template(), 1)])


def test_close_twice_and_send_again(mailgun: Mailgun) -> None:
    provider = mailgun.provider()
    provider.close()
    provider.close()
    results = provider.send([personal(make_template(), 1)])
    provider.close()
    assert _statuses(results) == {SendStatus.SUBMITTED}
