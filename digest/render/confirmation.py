"""The confirmation message a sign-up is sent (double opt-in): its text and HTML bodies and its
headers. Pure: the link, the digests' titles and the time are given; the step that sends it
(:func:`digest.steps.messages.confirmation_message`) makes the signed link.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from digest.config import Settings
from digest.models import OutgoingMessage, Subscriber
from digest.render.mime import POLICY
from digest.text import clean_header

# Confirmation messages go into the outbox folder (and provider metadata) under this name.
CONFIRMATION_EDITION = "signup-confirmations"


def render_confirmation(
    settings: Settings, subscriber: Subscriber, *, link: str, what: str, now: datetime
) -> OutgoingMessage:
    """The message asking ``subscriber`` to confirm a sign-up to ``what`` (the digests' titles):
    multipart/alternative, text first, From the publication, with the confirmation ``link``."""
    pub = settings.publication
    days = settings.web.confirm_max_age_days
    # No name here: whoever signed the address up typed it, and it may not be the owner's.
    greeting = "Hello,"
    subject = clean_header(f"Confirm your subscription to {pub.name}")
    stamp = int(now.timestamp())
    domain = pub.from_email.rpartition("@")[2].lower()
    message_id = f"<confirm.{subscriber.id}.{stamp}@{domain}>"
    asked = (
        f"Someone, hopefully you, asked to receive {what} from {pub.name} at this address. "
        "To confirm, open the link below and press the button on the page."
    )
    lifetime = (
        f"The link works for {days} day{'s' if days != 1 else ''}. If you did not ask for "
        "this, ignore this message: you will hear nothing more from us."
    )
    text = "\n".join(
        [greeting, "", asked, "", link, "", lifetime, "", "-- ", pub.name, pub.postal_address, ""]
    )
    e = html.escape
    body_html = f"""<!doctype html>
<html lang="{e(pub.lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{e(subject)}</title></head>
<body style="margin:0;padding:24px 12px;background:#eceae4;">
<div style="max-width:560px;margin:0 auto;padding:28px 24px;background:#ffffff;\
border-top:4px solid #b3261e;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,\
Arial,sans-serif;font-size:16px;line-height:1.55;color:#1f2328;">
<h1 style="margin:0 0 18px;font-family:Georgia,'Times New Roman',serif;font-size:26px;\
line-height:1.2;">{e(pub.name)}</h1>
<p style="margin:0 0 12px;">{e(greeting)}</p>
<p style="margin:0 0 20px;">{e(asked)}</p>
<p style="margin:0 0 20px;"><a href="{e(link)}" style="display:inline-block;padding:12px 20px;\
background:#b3261e;color:#ffffff;font-weight:700;text-decoration:none;border-radius:4px;">\
Confirm my subscription</a></p>
<p style="margin:0 0 12px;font-size:14px;color:#5c6066;">{e(lifetime)}</p>
<p style="margin:24px 0 0;font-size:12px;color:#5c6066;">{e(pub.postal_address)}</p>
</div></body></html>
"""
    sender = Address(clean_header(pub.from_name or pub.name), addr_spec=pub.from_email)
    recipient = Address(addr_spec=subscriber.email)
    date = now if now.tzinfo else now.replace(tzinfo=UTC)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = recipient
    if pub.reply_to:
        msg["Reply-To"] = pub.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(body_html, subtype="html", charset="utf-8", cte="quoted-printable")
    headers = {
        "From": str(sender),
        "To": str(recipient),
        "Subject": subject,
        "Date": str(msg["Date"]),
        "Message-ID": message_id,
    }
    if pub.reply_to:
        headers["Reply-To"] = pub.reply_to
    return OutgoingMessage(
        key=f"confirm-{subscriber.id}-{stamp}",
        edition_id=CONFIRMATION_EDITION,
        message_id=message_id,
        sender=pub.from_email,
        recipient=subscriber.email,
        subject=subject,
        raw=msg.as_bytes(),
        html=body_html,
        text=text,
        headers=headers,
    )
