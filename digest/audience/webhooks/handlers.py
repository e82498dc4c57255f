"""One handler for every provider's webhook request: check it, read its events, apply them once.

A provider differs only in how its request is checked and read (``_sendgrid``, ``_postmark``,
``_mailgun``: each gives a :class:`Checked`); :class:`WebhookHandler` does the rest the same
way for all. A request that may be used only once (Mailgun's signature token, since Mailgun
signs no body) is refused when seen before, and recorded with its first event.

How events become changes:

- hard bounce: ``bounced``, only from ``active``, ``paused`` or ``pending`` (an address that
  unsubscribed or complained keeps that status), with the audit cause
  ``hard bounce reported by <provider>: <reason>``;
- complaint: ``complained``, from any other status (the strongest suppression);
- unsubscribe: ``unsubscribed``, only from ``active``, ``paused`` or ``pending``;
- soft bounce (SendGrid ``blocked``; Postmark ``SoftBounce``, ``DnsError``; Mailgun's last
  try ``old`` and permanent failures that are not a hard bounce): :meth:`Store.soft_bounce`
  counts it and suppresses an active address at ``webhooks.soft_bounce_limit``. One message
  counts once (keyed by its ``delivery`` key): a provider may report one message twice;
- anything else (deliveries, opens, delays a provider retries, events for addresses that are not
  subscribers): counted as ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from digest.audience.webhooks.events import Event, Provider, WebhookRefused, WebhookResult
from digest.audience.webhooks.parse import (
    mailgun_document,
    mailgun_events,
    mailgun_signature,
    parse_postmark,
    parse_sendgrid,
)
from digest.audience.webhooks.verify import (
    MAILGUN_UNCONFIGURED,
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
)

if TYPE_CHECKING:
    from digest.config import Settings, WebhookSettings
    from digest.store import Store


def apply_events(
    store: Store,
    settings: Settings,
    events: Iterable[Event],
    *,
    now: datetime,
    request_id: str | None = None,
) -> WebhookResult:
    """Apply events to the subscribers they name, each (provider, event id) once. Each event's
    record and its effect are one transaction (a failure leaves the event unseen, so the
    provider's redelivery applies it). ``request_id`` (Mailgun's signature token) is recorded
    with the first event, so a replayed request is a duplicate even under other event ids."""
    received = applied = duplicates = ignored = 0
    hooks = settings.webhooks
    pending_request = request_id
    for event in events:
        received += 1
        if event.kind == "ignored" or not event.email:
            ignored += 1
            continue
        ids = [event.event_id] + ([pending_request] if pending_request else [])
        reason = event.reason or "no reason given"
        what = {
            "hard_bounce": "hard bounce",
            "soft_bounce": "soft bounce",
            "complaint": "spam complaint",
            "unsubscribe": "unsubscribe",
        }[event.kind]
        outcome = store.apply_subscriber_event(
            provider=event.provider,
            event_ids=ids,
            email=event.email,
            kind=event.kind,
            cause=f"{what} reported by {event.provider}: {reason}",
            now=now,
            once=f"soft-bounce:{event.delivery}" if event.delivery else None,
            soft_limit=hooks.soft_bounce_limit,
            soft_window=timedelta(days=hooks.soft_bounce_window_days),
        )
        if outcome == "duplicate":
            duplicates += 1
            continue
        pending_request = None  # recorded with this event
        if outcome == "applied":
            applied += 1
        else:
            ignored += 1
    if pending_request and not store.record_webhook_event("mailgun", pending_request, now=now):
        duplicates += 1
    return WebhookResult(received, applied, duplicates, ignored)


# One handler, every provider -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Checked:
    """A request whose signature or credentials were checked: its events, and ``once``, the id
    under which the request itself may be taken only once (None: its events' ids suffice)."""

    events: list[Event]
    once: str | None = None


# (the provider's settings, the raw body, the headers with lower-case names, now) -> Checked
Check = Callable[["WebhookSettings", bytes, Mapping[str, str], datetime], Checked]


@dataclass(frozen=True, slots=True)
class WebhookHandler:
    """Handles one provider's webhook requests: ``check`` authenticates and reads a request,
    then the events are applied (see the module docstring). Called as
    ``handler(settings, store, body, headers, now=now)``; raises WebhookRefused."""

    provider: Provider
    check: Check

    def __call__(
        self,
        settings: Settings,
        store: Store,
        body: bytes,
        headers: Mapping[str, str],
        *,
        now: datetime,
    ) -> WebhookResult:
        checked = self.check(settings.webhooks, body, _lower(headers), now)
        if checked.once is not None and store.webhook_event_seen(self.provider, checked.once):
            raise WebhookRefused(
                f"{self.provider}: this signature token was used before (a replay)"
            )
        return apply_events(store, settings, checked.events, now=now, request_id=checked.once)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _sendgrid(
    cfg: WebhookSettings, body: bytes, headers: Mapping[str, str], now: datetime
) -> Checked:
    verify_sendgrid(
        cfg.sendgrid_public_key,
        body,
        headers.get(SENDGRID_SIGNATURE.lower()),
        headers.get(SENDGRID_TIMESTAMP.lower()),
        now=now,
        max_age=cfg.max_age_seconds,
    )
    return Checked(parse_sendgrid(body))


def _postmark(
    cfg: WebhookSettings, body: bytes, headers: Mapping[str, str], now: datetime
) -> Checked:
    verify_postmark(
        cfg.postmark_username,
        cfg.postmark_password.get_secret_value(),
        headers.get("authorization"),
    )
    return Checked(parse_postmark(body))


def _mailgun(
    cfg: WebhookSettings, body: bytes, headers: Mapping[str, str], now: datetime
) -> Checked:
    key = cfg.mailgun_signing_key.get_secret_value()
    if not key:  # refused before the body is even read
        raise WebhookRefused(MAILGUN_UNCONFIGURED)
    document = mailgun_document(body)
    timestamp, token, signature = mailgun_signature(document)
    verify_mailgun(key, timestamp, token, signature, now=now, max_age=cfg.max_age_seconds)
    assert token is not None
    return Checked(mailgun_events(document), once=f"token:{token}")


handle_sendgrid = WebhookHandler("sendgrid", _sendgrid)
handle_postmark = WebhookHandler("postmark", _postmark)
handle_mailgun = WebhookHandler("mailgun", _mailgun)
