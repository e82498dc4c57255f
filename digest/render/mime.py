"""One subscriber's message: headers and the multipart/alternative body (RFC 5322, RFC 8058).

Every header value passes through ``clean_header``: CR, LF, NEL, U+2028/2029 and other control
characters can never reach a header, so a subject or a name cannot inject a header.

Three headers are written pre-folded with ``set_raw`` instead of through the policy, because
CPython's folder gets them wrong: it turns a long List-Unsubscribe URL into an RFC 2047 encoded
word (which no client would resolve), it RFC 2047-encodes the quotes of a non-ASCII List-Id
phrase, and when it splits a non-ASCII subject into several encoded words it can drop the space
that sat at the fold. ``email.header.Header`` encodes spaces inside the encoded words instead.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

from digest.config import Settings
from digest.errors import RenderError
from digest.models import Edition, OutgoingMessage, Subscriber
from digest.text import clean_header

# CRLF on the wire. Lines at most 76: the content manager takes the quoted-printable line length
# from the policy, and RFC 2045 allows 76 (the SMTP policy's 78 would give 78-character body
# lines); headers are then folded at 76 too, inside RFC 5322's 78. "none" keeps our pre-folded
# raw headers as written.
MAX_LINE = 76
POLICY = email.policy.SMTP.clone(refold_source="none", max_line_length=MAX_LINE)

# Characters allowed in the left part of a Message-ID (RFC 5322 dot-atom-text).
_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _address(name: str, addr: str, *, what: str) -> Address:
    addr = clean_header(addr)
    try:
        return Address(display_name=clean_header(name)[:100].rstrip(), addr_spec=addr)
    except (ValueError, IndexError) as e:
        raise RenderError(f"{what}: not a usable email address {addr!r}: {e}") from None


def _encoded(name: str, text: str) -> str:
    """Non-ASCII ``text`` as folded RFC 2047 encoded words, ready for a raw header line."""
    return Header(text, "utf-8", header_name=name, maxlinelen=MAX_LINE).encode(linesep="\r\n")


def _fold(name: str, items: list[str], sep: str) -> str:
    """Join ``items`` with ``sep``, breaking the line before an item that would pass MAX_LINE."""
    out = ""
    width = len(name) + 2
    for i, item in enumerate(items):
        piece = item + (sep.rstrip() if i < len(items) - 1 else "")
        if width + 1 + len(piece) > MAX_LINE:
            # Even the first item may go to a continuation line: "Name:" CRLF SP item is legal
            # folding, and a URL must never be split (RFC 2369 clients would not rejoin it).
            out += "\r\n "
            width = 1
        elif i:
            out += " "
            width += 1
        out += piece
        width += len(piece)
    return out


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class SharedHeaders:
    """What every recipient of an edition shares, built once: raw header values (pre-folded
    where the policy folds wrongly), the From and Reply-To addresses, and the plain values
    that ``OutgoingMessage.headers`` reports."""

    subject: str
    raw_subject: str
    list_id: str
    mailto_part: str
    sender: Address
    reply_to: Address | None
    domain: str
    date: datetime
    plain: dict[str, str]


@lru_cache(maxsize=64)
def _folded(
    digest_key: str, digest_title: str, from_email: str, mailto: str, subject: str
) -> tuple[str, str, str]:
    """(List-Id, the mailto part of List-Unsubscribe, the folded or encoded Subject)."""
    domain = _domain(from_email)
    title = clean_header(digest_title)
    phrase = _quoted(title) if title.isascii() else _encoded("List-Id", title)
    list_id = _fold("List-Id", [phrase, f"<{digest_key}.{domain}>"], "")
    mailto_part = f"<mailto:{mailto}?subject=unsubscribe>" if mailto else ""
    # ASCII subjects are folded at spaces by hand too: the policy's folder may break the line
    # right after "Subject:", which some parsers and clients read back with a leading space.
    raw_subject = (
        _fold("Subject", subject.split(" "), " ")
        if subject.isascii()
        else _encoded("Subject", subject)
    )
    return list_id, mailto_part, raw_subject


def shared_headers(edition: Edition, settings: Settings, now: datetime) -> SharedHeaders:
    """The headers an edition's messages share (``now`` is the Date; naive means UTC)."""
    pub = settings.publication
    digest = settings.digests[edition.digest]
    subject = clean_header(edition.subject)
    list_id, mailto_part, raw_subject = _folded(
        edition.digest, digest.title, pub.from_email, pub.unsubscribe_mailto, subject
    )
    sender = _address(pub.from_name or pub.name, pub.from_email, what="publication.from_email")
    reply_to = _address("", pub.reply_to, what="publication.reply_to") if pub.reply_to else None
    domain = _domain(pub.from_email)
    plain = {
        "From": str(sender),
        "Subject": subject,
        "List-Id": f"{_quoted(clean_header(digest.title))} <{edition.digest}.{domain}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if pub.reply_to:
        plain["Reply-To"] = pub.reply_to
    return SharedHeaders(
        subject=subject,
        raw_subject=raw_subject,
        list_id=list_id,
        mailto_part=mailto_part,
        sender=sender,
        reply_to=reply_to,
        domain=domain,
        date=now if now.tzinfo else now.replace(tzinfo=UTC),
        plain=plain,
    )


def message_id(edition: Edition, subscriber: Subscriber, from_email: str) -> str:
    """``<{edition}.{subscriber}@{domain}>``: the same inputs always give the same id, so a
    re-sent message is recognisably the same message."""
    left = _NOT_ATEXT.sub("-", f"{edition.id}.{subscriber.id}").strip(".")
    return f"<{left}@{_domain(from_email)}>"


def build_message(
    variant_html: str,
    variant_text: str,
    *,
    edition: Edition,
    subscriber: Subscriber,
    settings: Settings,
    unsubscribe_url: str,
    now: datetime,
    key: str,
) -> OutgoingMessage:
    """The complete message for ``subscriber`` from their personalised bodies.

    ``now`` is the Date header (a naive value is taken as UTC). ``key`` is the ledger row's key.
    """
    shared = shared_headers(edition, settings, now)
    recipient = _address(subscriber.name, subscriber.email, what=f"subscriber {subscriber.id}")
    msg_id = message_id(edition, subscriber, settings.publication.from_email)
    https_part = f"<{clean_header(unsubscribe_url)}>"
    unsubscribe = [https_part, shared.mailto_part] if shared.mailto_part else [https_part]

    msg = EmailMessage(policy=POLICY)
    msg["From"] = shared.sender
    msg["To"] = recipient
    if shared.reply_to is not None:
        msg["Reply-To"] = shared.reply_to
    if shared.raw_subject:
        msg.set_raw("Subject", shared.raw_subject)
    else:
        msg["Subject"] = shared.subject
    msg["Date"] = format_datetime(shared.date)
    msg["Message-ID"] = msg_id
    msg.set_raw("List-Id", shared.list_id)
    msg.set_raw("List-Unsubscribe", _fold("List-Unsubscribe", unsubscribe, ","))
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Text first: multipart/alternative lists parts from plainest to richest.
    msg.set_content(variant_text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(variant_html, subtype="html", charset="utf-8", cte="quoted-printable")

    headers = {
        **shared.plain,
        "To": str(recipient),
        "Date": str(msg["Date"]),
        "Message-ID": msg_id,
        "List-Unsubscribe": ", ".join(unsubscribe),
    }
    return OutgoingMessage(
        key=key,
        edition_id=edition.id,
        message_id=msg_id,
        sender=settings.publication.from_email,
        recipient=recipient.addr_spec,
        subject=shared.subject,
        raw=msg.as_bytes(),
        html=variant_html,
        text=variant_text,
        headers=headers,
    )
