"""Per-subscriber click links through every provider path: each recipient's copy, as SMTP,
SendGrid and Mailgun deliver it, carries click links that name that recipient (a signature that
verifies) and no one else; built one by one (``personal_message``) and in a batch (``Builder``,
the workers' path), including the rare address only the stdlib can write."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from html import unescape
from typing import Any

import pytest
from pydantic import SecretStr

from digest.config import (
    MailgunSettings,
    RetrySettings,
    SendGridSettings,
    Settings,
    parse_settings,
)
from digest.delivery.mailgun import MailgunProvider
from digest.delivery.sendgrid import SendGridProvider
from digest.delivery.smtp import SmtpProvider
from digest.models import OutgoingMessage, SendStatus, Subscriber
from digest.render.clicks import read_click_token, read_reader
from digest.render.variants import render_variants, variant_key
from digest.steps.messages import Builder, personal_message
from tests.apiserver import ApiServer
from tests.render import NOW, settings_dict, weekly_edition

from .fake_mailgun import FakeMailgun
from .fake_sendgrid import API_KEY, FakeSendGrid
from .test_smtp import smtp_server

KEY = "a-signing-key-for-reader-links-0123456789"
EDITION = weekly_edition()
CLICK = re.compile(r"https://m\.example\.org/c/([A-Za-z0-9._-]+)(?:/([0-9]+\.[A-Za-z0-9_-]+))?")
PEOPLE = [
    Subscriber(id=11, email="ann@example.org", name="Ann"),
    Subscriber(id=12, email="bob@example.org", name="Bob", sections=frozenset({"qiosk"})),
    Subscriber(id=13, email="zoe@bücher.example", name="Zoë"),  # only the stdlib writes this To
    Subscriber(id=14, email="dan@example.org"),
]


def settings(*, on: bool = True) -> Settings:
    data = settings_dict()
    data["digests"]["weekly"]["click_tracking"] = True
    data["analytics"] = {"per_subscriber": on}
    return parse_settings(data, environ={"DIGEST__SECRET_KEY": KEY})


def build(how: str, people: list[Subscriber], *, on: bool = True) -> list[OutgoingMessage]:
    s = settings(on=on)
    variants = render_variants(s, EDITION, [p.sections for p in people])
    if how == "batch":
        built = Builder(s, EDITION, variants, now=NOW).build(enumerate(people))
        assert not built.unusable and not built.skipped
        return built.messages
    return [
        personal_message(s, EDITION, variants[variant_key(EDITION, p.sections)], p, now=NOW)
        for p in people
    ]


def readers_in(body: str) -> set[int | None]:
    """The subscriber each click link of ``body`` names (None: a link naming no one); every
    token and reader part must verify."""
    found: set[int | None] = set()
    for token, reader in CLICK.findall(unescape(body)):
        target = read_click_token(KEY, token)
        assert target is not None, token
        found.add(read_reader(KEY, target.edition_id, reader) if reader else None)
        if reader:
            assert read_reader(KEY, target.edition_id, reader) is not None, reader
    assert found, "no click link in the body"
    return found


def assert_each_names_its_reader(copies: dict[str, tuple[str, str]]) -> None:
    """``copies``: address -> (html, text) as delivered."""
    by_address = {p.email: p.id for p in PEOPLE}
    assert set(copies) == set(by_address)
    for address, (html, text) in copies.items():
        assert readers_in(html) == {by_address[address]}, address
        assert readers_in(text) == {by_address[address]}, address


@pytest.fixture(params=["one by one", "batch"])
def how(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_smtp_copies_carry_their_reader_links(how: str) -> None:
    messages = build(how, PEOPLE)
    with smtp_server(enable_SMTPUTF8=True) as server, SmtpProvider(server.settings()) as provider:
        results = provider.send(messages)
        received = list(server.handler.received)
    assert {r.status for r in results} == {SendStatus.SUBMITTED}
    copies = {}
    for got in received:
        parsed: Any = BytesParser(policy=policy.default).parsebytes(got.content)
        copies[got.rcpt_tos[0]] = (
            parsed.get_body(("html",)).get_content(),
            parsed.get_body(("plain",)).get_content(),
        )
    assert_each_names_its_reader(copies)


@pytest.fixture
def sendgrid() -> Iterator[tuple[FakeSendGrid, ApiServer]]:
    fake = FakeSendGrid()
    with ApiServer(fake.respond) as api:
        yield fake, api


def test_sendgrid_substitutions_carry_their_reader_links(
    how: str, sendgrid: tuple[FakeSendGrid, ApiServer]
) -> None:
    fake, api = sendgrid
    # SendGrid's own tags stand in the shared body: one request per variant.
    messages = [m for m in build(how, PEOPLE) if m.recipient.isascii()]
    provider = SendGridProvider(
        SendGridSettings(base_url=api.url, api_key=SecretStr(API_KEY), timeout=5.0),
        RetrySettings(request_attempts=1),
        sleep=lambda _: None,
    )
    with provider:
        results = provider.send(messages)
    assert {r.status for r in results} == {SendStatus.SUBMITTED}
    bodies = [c["value"] for r in api.requests for c in r.json()["content"]]
    assert bodies and all("%%" not in b and "/ann" not in b for b in bodies)
    delivered = {d.to["email"]: (d.html or "", d.text or "") for d in fake.delivered}
    assert len(delivered) == len(messages)
    for m in messages:
        assert delivered[m.recipient] == (m.html, m.text)
    ascii_people = [p for p in PEOPLE if p.email.isascii()]
    by_address = {p.email: p.id for p in ascii_people}
    for address, (html, text) in delivered.items():
        assert readers_in(html) == readers_in(text) == {by_address[address]}


def test_mailgun_recipient_variables_carry_their_reader_links(how: str) -> None:
    fake = FakeMailgun(domain="mg.example.org", api_key="key-reader")
    messages = [m for m in build(how, PEOPLE) if m.recipient.isascii()]
    with ApiServer(fake.respond) as api:
        provider = MailgunProvider(
            MailgunSettings(base_url=api.url, domain=fake.domain, timeout=5.0),
            RetrySettings(request_attempts=1),
            api_key="key-reader",
            sleep=lambda _: None,
        )
        with provider:
            results = provider.send(messages)
        bodies = [v for r in api.requests for k, v in r.form() if k in ("html", "text")]
    assert {r.status for r in results} == {SendStatus.SUBMITTED}
    assert bodies and all("%%" not in b for b in bodies)
    assert any("%recipient." in b for b in bodies)  # the batched path, not one by one
    copies = {c.address: (c.html or "", c.text or "") for c in fake.copies}
    for m in messages:
        assert copies[m.recipient] == (m.html, m.text)
    by_address = {p.email: p.id for p in PEOPLE}
    for address, (html, text) in copies.items():
        assert readers_in(html) == readers_in(text) == {by_address[address]}


def test_off_no_link_names_anyone_and_the_id_is_nowhere_in_the_bodies(how: str) -> None:
    people = [Subscriber(id=987_654_321, email="ann@example.org", name="Ann")]
    (message,) = build(how, people, on=False)
    parsed: Any = BytesParser(policy=policy.default).parsebytes(message.raw)
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert readers_in(html) == readers_in(text) == {None}
    for body in (html, text, message.html, message.text):
        assert "987654321" not in body
        assert "records which links you click" not in body
    assert "%%READER%%" not in message.template.html if message.template else True
    # Only the Message-ID names the subscriber, as it always did (nothing click-related).
    raw = message.raw.decode("utf-8", "replace")
    lines = [line for line in raw.splitlines() if "987654321" in line]
    assert lines == [f"Message-ID: {message.message_id}"]
