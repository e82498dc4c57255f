"""Per-subscriber click links (``analytics.per_subscriber``): the footer says so exactly when
they are on, each copy's links name its subscriber with a signature no one can move to another
subscriber or edition, and the compiled message fills them as the reference does."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from html import unescape
from typing import Any

import pytest

from digest.config import Settings, parse_settings
from digest.errors import ConfigError
from digest.models import Subscriber
from digest.render import render_variant
from digest.render.clicks import per_subscriber, read_click_token, read_reader, reader_part
from digest.render.email import CLICKS_NOTICE
from digest.render.personalise import READER, personalise
from digest.steps.messages import personal_message, sample_message
from tests.render import NOW, settings_dict, weekly_edition

KEY = "a-signing-key-for-reader-links-0123456789"
OLD = "the-key-before-the-rotation-0123456789"
EDITION = weekly_edition()
NOTICE_START = "This newsletter records which links you click"
CLICK = re.compile(r"https://m\.example\.org/c/([A-Za-z0-9._-]+)(%%READER%%|/[^\s\"<]*)?")


def settings(
    *, tracking: bool = True, on: bool | None = True, digest: bool | None = None, **extra: Any
) -> Settings:
    data = settings_dict()
    data["digests"]["weekly"]["click_tracking"] = tracking
    if digest is not None:
        data["digests"]["weekly"]["per_subscriber_clicks"] = digest
    if on is not None:
        data["analytics"] = {"per_subscriber": on}
    data.update(extra)
    environ = {
        "DIGEST__SECRET_KEY": KEY,
        "DIGEST__OLD_SECRET_KEYS": OLD,
        "DIGEST__DELIVERY__MAILCHIMP__API_KEY": "key-us1",
        "DIGEST__DELIVERY__LISTMONK__TOKEN": "token",
    }
    return parse_settings(data, environ=environ)


def _text(body: str) -> str:
    return " ".join(body.split())


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({"on": True}, True),
        ({"on": False}, False),
        ({"on": None}, False),  # the default
        ({"tracking": False, "on": True}, False),  # no click links, nothing to record
        ({"on": True, "digest": False}, False),  # the digest's own choice wins
        ({"on": False, "digest": True}, True),
    ],
)
def test_the_footer_says_so_exactly_when_clicks_are_recorded(
    case: dict[str, Any], expected: bool
) -> None:
    s = settings(**case)
    assert per_subscriber(s, "weekly") is expected
    variant = render_variant(EDITION, s)
    for body in (variant.html, variant.text):
        assert (NOTICE_START in _text(unescape(body))) is expected
        assert (_text(CLICKS_NOTICE) in _text(unescape(body))) is expected
        assert (READER in body) is expected


def test_every_click_link_and_only_those_carry_the_reader_token() -> None:
    variant = render_variant(EDITION, settings())
    for body in (unescape(variant.html), variant.text):
        links = CLICK.findall(body)
        assert links and all(rest == READER for _, rest in links)
        assert body.count(READER) == len(links)


def _copy(subscriber: Subscriber, s: Settings | None = None) -> tuple[str, str]:
    s = s or settings()
    message = personal_message(s, EDITION, render_variant(EDITION, s), subscriber, now=NOW)
    parsed: Any = BytesParser(policy=policy.default).parsebytes(message.raw)
    html = _lf(parsed.get_body(("html",)).get_content())
    text = _lf(parsed.get_body(("plain",)).get_content())
    assert (html, text) == (_lf(message.html), _lf(message.text))
    return html, text


def _lf(body: str) -> str:
    return body.replace("\r\n", "\n")


def _reader_parts(body: str) -> set[str]:
    return {rest for _, rest in CLICK.findall(unescape(body))}


def test_each_copy_names_its_subscriber_with_a_signature_that_verifies() -> None:
    seen = {}
    for sid in (1, 2, 3_000_000):
        html, text = _copy(Subscriber(id=sid, email=f"r{sid}@example.org", name="Ré"))
        parts = _reader_parts(html)
        assert parts == _reader_parts(text) == {reader_part(KEY, EDITION.id, sid)}
        (part,) = parts
        assert read_reader([OLD, KEY], EDITION.id, part.removeprefix("/")) == sid
        for token, _ in CLICK.findall(unescape(html)):
            assert read_click_token(KEY, token) is not None
        seen[sid] = part
    assert len(set(seen.values())) == 3


def test_the_compiled_message_is_what_the_reference_makes() -> None:
    s = settings()
    variant = render_variant(EDITION, s)
    reader = Subscriber(id=42, email="a@example.org", name="Zoë")
    html, text = _copy(reader, s)
    message = personal_message(s, EDITION, variant, reader, now=NOW)
    unsubscribe = message.tokens["%%UNSUBSCRIBE_URL%%"]
    preferences = message.tokens["%%PREFERENCES_URL%%"]
    assert (html, text) == tuple(
        _lf(b)
        for b in personalise(
            variant,
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
            name="Zoë",
            reader=reader_part(KEY, EDITION.id, 42),
        )
    )


def test_a_reader_part_cannot_be_moved_to_another_subscriber_or_edition() -> None:
    part = reader_part(KEY, EDITION.id, 7).removeprefix("/")
    _, signature = part.split(".")
    assert read_reader(KEY, EDITION.id, part) == 7
    assert read_reader(KEY, EDITION.id, f"8.{signature}") is None  # another subscriber
    assert read_reader(KEY, EDITION.id, f"07.{signature}") is None
    assert read_reader(KEY, "weekly-2026-W18", part) is None  # another edition
    assert read_reader("another key", EDITION.id, part) is None
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (
        f"7.{flipped}",
        f"7.{signature}x",
        "7",
        f"-7.{signature}",
        "",
        f"7.{signature[:-1]}",
    ):
        assert read_reader(KEY, EDITION.id, bad) is None, bad
    # Made with the key before a rotation: still accepted while it is listed.
    old = reader_part(OLD, EDITION.id, 7).removeprefix("/")
    assert read_reader([OLD, KEY], EDITION.id, old) == 7
    assert read_reader(KEY, EDITION.id, old) is None


def test_previews_and_tests_name_no_one() -> None:
    s = settings()
    message = sample_message(s, EDITION, render_variant(EDITION, s), now=NOW)
    assert _reader_parts(message.html) == _reader_parts(message.text) == {""}


@pytest.mark.parametrize("provider", ["mailchimp", "listmonk"])
def test_campaign_providers_refuse_per_subscriber_clicks(provider: str) -> None:
    delivery = {
        "provider": provider,
        "mailchimp": {"list_id": "L1"},
        "listmonk": {"base_url": "https://l.example", "api_user": "u", "list_ids": [1]},
    }
    with pytest.raises(ConfigError) as e:
        settings(delivery=delivery)
    assert "analytics.per_subscriber: not possible with delivery.provider" in str(e.value)
    assert "owns the list" in str(e.value)
    with pytest.raises(ConfigError) as e:
        settings(on=False, digest=True, delivery=delivery)
    assert "digests.weekly.per_subscriber_clicks: not possible" in str(e.value)
    # Off, or without click tracking: fine.
    assert not per_subscriber(settings(on=False, delivery=delivery), "weekly")
    assert settings(tracking=False, delivery=delivery).delivery.provider == provider
