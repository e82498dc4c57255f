"""The outgoing message: round trip through a parser, headers, folding, injection attempts."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import cast

import pytest

from digest.config import Settings, parse_settings
from digest.errors import RenderError
from digest.models import Edition, OutgoingMessage, RenderedVariant, Subscriber
from digest.render import render_variant
from digest.render.mime import build_message
from digest.render.personalise import personalise
from tests.render import NOW, make_settings, settings_dict, weekly_edition

UNSUB = "https://m.example.org/u/MTIzNDU.aCxYzQ.abcdefghijklmnopqrstuvwxyz0"
PREFS = "https://m.example.org/p/MTIzNDU.aCxYzQ.abcdefghijklmnopqrstuvwxyz1"


@pytest.fixture(scope="module")
def variant() -> RenderedVariant:
    return render_variant(weekly_edition(), make_settings())


def build(
    variant: RenderedVariant,
    *,
    subscriber: Subscriber | None = None,
    edition: Edition | None = None,
    settings: Settings | None = None,
) -> OutgoingMessage:
    subscriber = subscriber or Subscriber(id=12345, email="zoe@example.com", name="Zoë Ångström")
    html, text = personalise(
        variant, unsubscribe_url=UNSUB, preferences_url=PREFS, name=subscriber.name
    )
    return build_message(
        html,
        text,
        edition=edition or weekly_edition(),
        subscriber=subscriber,
        settings=settings or make_settings(),
        unsubscribe_url=UNSUB,
        now=NOW,
        key="weekly-2026-W17:12345",
    )


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))


def test_round_trip(variant: RenderedVariant) -> None:
    out = build(variant)
    msg = parse(out.raw)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # The wire format is CRLF (RFC 5322); apart from that the bodies come back exactly.
    plain, html = (cast(EmailMessage, p).get_content().replace("\r\n", "\n") for p in parts)
    assert plain == out.text
    assert html == out.html
    assert "Hello Zoë Ångström," in plain
    assert UNSUB in plain and "%%" not in plain and "%%" not in html


def test_headers(variant: RenderedVariant) -> None:
    out = build(variant)
    msg = parse(out.raw)
    assert msg["From"].addresses[0].display_name == "The Meridian Review"
    assert msg["From"].addresses[0].addr_spec == "digest@meridian.example.org"
    assert msg["To"].addresses[0].display_name == "Zoë Ångström"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.com"
    assert str(msg["Subject"]) == weekly_edition().subject
    assert msg["Date"].datetime == NOW
    assert msg["Message-ID"] == "<weekly-2026-W17.12345@meridian.example.org>"
    assert msg["List-Id"] == '"The Weekly Dispatch" <weekly.meridian.example.org>'
    assert msg["List-Unsubscribe"].strip() == (
        f"<{UNSUB}>, <mailto:unsubscribe@meridian.example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Reply-To"] == "editors@meridian.example.org"
    assert out.message_id == msg["Message-ID"]
    assert out.sender == "digest@meridian.example.org"
    assert out.recipient == "zoe@example.com"
    assert out.edition_id == "weekly-2026-W17" and out.key == "weekly-2026-W17:12345"
    assert out.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert out.headers["Subject"] == weekly_edition().subject


def test_message_id_is_stable(variant: RenderedVariant) -> None:
    first, second = build(variant), build(variant)
    assert first.message_id == second.message_id
    other = build(variant, subscriber=Subscriber(id=7, email="a@example.com"))
    assert other.message_id == "<weekly-2026-W17.7@meridian.example.org>"


def test_no_mailto_no_reply_to(variant: RenderedVariant) -> None:
    data = settings_dict()
    data["publication"].update(unsubscribe_mailto="", reply_to="")
    msg = parse(build(variant, settings=parse_settings(data, environ={})).raw)
    assert msg["List-Unsubscribe"].strip() == f"<{UNSUB}>"
    assert msg["Reply-To"] is None


def test_non_ascii_everywhere_survives(variant: RenderedVariant) -> None:
    data = settings_dict()
    data["publication"]["from_name"] = "Revue Méridienne — Rédaction"
    data["digests"]["weekly"]["title"] = "La Dépêche, « hebdo »"
    subject = "La semaine : négociations à Genève — « prudemment » optimistes, et après ? 🕊️"
    edition = weekly_edition().model_copy(update={"subject": subject})
    settings = parse_settings(data, environ={})
    msg = parse(build(variant, edition=edition, settings=settings).raw)
    assert str(msg["Subject"]) == subject
    assert msg["From"].addresses[0].display_name == "Revue Méridienne — Rédaction"
    assert str(msg["List-Id"]) == "La Dépêche, « hebdo » <weekly.meridian.example.org>"
    assert_lines_short(build(variant, edition=edition, settings=settings).raw)


@pytest.mark.parametrize("length", [10, 66, 67, 70, 150])
def test_long_ascii_subjects_read_back_exactly(variant: RenderedVariant, length: int) -> None:
    subject = ("Diplomacy Watch: ceasefire talks resume in Doha and beyond " * 3)[:length].strip()
    edition = weekly_edition().model_copy(update={"subject": subject})
    raw = build(variant, edition=edition).raw
    assert str(parse(raw)["Subject"]) == subject
    assert_lines_short(raw)


def assert_lines_short(raw: bytes) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line
    for line in body.split(b"\r\n"):
        assert len(line) <= 76, line
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


def test_line_lengths(variant: RenderedVariant) -> None:
    assert_lines_short(build(variant).raw)


INJECTIONS = [
    "Hello\r\nBcc: x@evil.example",
    "Hello\nBcc: x@evil.example",
    "Hello\rBcc: x@evil.example",
    "Hello\u2028Bcc: x@evil.example",
    "Hello\u2029Bcc: x@evil.example",
    "Hello\x85Bcc: x@evil.example",
    "Hello\x0bBcc: x@evil.example\x00",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_header_injection_never_adds_headers(variant: RenderedVariant, evil: str) -> None:
    data = settings_dict()
    data["publication"]["from_name"] = evil
    data["digests"]["weekly"]["title"] = evil
    settings = parse_settings(data, environ={})
    edition = weekly_edition().model_copy(update={"subject": evil})
    subscriber = Subscriber(id=1, email="a@example.com", name=evil)
    out = build(variant, subscriber=subscriber, edition=edition, settings=settings)
    msg = parse(out.raw)
    assert msg["Bcc"] is None
    assert b"\nBcc:" not in out.raw
    names = [k.lower() for k in msg]
    assert sorted(names) == sorted(
        [
            "from",
            "to",
            "reply-to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
            "mime-version",
            "content-type",
        ]
    )
    assert "Bcc: x@evil.example" in str(msg["Subject"])  # kept as harmless text on one line
    assert msg["To"].addresses[0].display_name.startswith("Hello")
    assert_lines_short(out.raw)


def test_injection_in_address_is_refused(variant: RenderedVariant) -> None:
    subscriber = Subscriber(id=2, email="a@example.com\r\nBcc: x@evil.example")
    with pytest.raises(RenderError, match="subscriber 2"):
        build(variant, subscriber=subscriber)


def test_naive_now_is_utc(variant: RenderedVariant) -> None:
    html, text = variant.html, variant.text
    out = build_message(
        html,
        text,
        edition=weekly_edition(),
        subscriber=Subscriber(id=3, email="b@example.com"),
        settings=make_settings(),
        unsubscribe_url=UNSUB,
        now=datetime(2026, 4, 20, 11, 0),
        key="k",
    )
    assert parse(out.raw)["Date"].datetime == datetime(2026, 4, 20, 11, 0, tzinfo=UTC)
    assert parse(out.raw)["To"] == "b@example.com"
