"""Tests of the delivery adapters, and the small message builder they share.

Messages are built here with ``email.message.EmailMessage`` rather than by the render stage,
so these tests stay independent of templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP

from digest.models import OutgoingMessage, SendResult

EDITION = "weekly-2026-W48"


def make_message(
    recipient: str = "reader@example.org",
    *,
    n: int = 1,
    key: str | None = None,
    edition_id: str = EDITION,
    sender: str = "digest@example.com",
) -> OutgoingMessage:
    """A small but complete multipart message to ``recipient``; ``n`` keeps keys apart."""
    key = key or f"{edition_id}/{n}"
    message_id = f"<{edition_id}.{n}@example.com>"
    subject = f"The Weekly Dispatch #{n}"
    text = f"Hello reader {n}.\n.A line that starts with a dot.\n"
    html = f"<p>Hello reader {n}.</p>"
    mail = EmailMessage(policy=SMTP)
    mail["From"] = f"The Weekly Dispatch <{sender}>"
    mail["To"] = recipient
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return OutgoingMessage(
        key=key,
        edition_id=edition_id,
        message_id=message_id,
        sender=sender,
        recipient=recipient,
        subject=subject,
        raw=mail.as_bytes(),
        html=html,
        text=text,
    )


def assert_one_per_message(messages: Sequence[OutgoingMessage], results: list[SendResult]) -> None:
    """The port's first promise: one result per message, same order, same keys."""
    assert [r.key for r in results] == [m.key for m in messages]
