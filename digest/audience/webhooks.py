"""Bounce, complaint and unsubscribe events from the HTTP providers, checked and applied.

Each provider's webhook request is first authenticated (a provider whose secret is not configured
refuses every request: events are never taken unsigned), then read into :class:`Event` values,
then applied to the subscribers through the store. Applying is idempotent: every event is
recorded by (provider, event id) before it changes anything, so a redelivery is counted as a
duplicate and changes nothing. No HTTP framework is imported here; ``digest.web.webhooks``
mounts the handlers as routes.

What the handlers rely on (the providers' public documentation):

SendGrid, the signed Event Webhook
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features,
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event):

- SendGrid signs with ECDSA; the signature of each POST is in
  ``X-Twilio-Email-Event-Webhook-Signature`` (base64 of a DER signature), the time in
  ``X-Twilio-Email-Event-Webhook-Timestamp``; the signed bytes are the timestamp followed by
  the raw body, hashed with SHA-256. The verification key is shown in SendGrid's Mail Settings
  (and ``GET /v3/user/webhooks/event/settings/signed``) as base64 of a DER
  SubjectPublicKeyInfo on P-256. SendGrid's own libraries (sendgrid-python, -java, -csharp,
  -nodejs) test with one published key, payload, timestamp and signature;
  tests/audience/test_webhooks.py checks that vector too.
- The body is a JSON array of events, each with ``event``, ``email``, ``timestamp``,
  ``sg_event_id`` (unique per event), ``sg_message_id``, ``reason``/``response`` and the
  message's custom arguments at the top level (``delivery``, see digest/delivery/sendgrid.py).
- ``bounce`` carries ``type``: ``bounce`` (the receiving server would not accept mail for the
  recipient permanently) or ``blocked`` (it would not accept the message temporarily);
  ``dropped`` means SendGrid did not send, with a ``reason`` such as ``Bounced Address``,
  ``Unsubscribed Address``, ``Spam Reporting Address``, ``Invalid`` (the drop reasons listed in
  https://github.com/sendgrid/docs/issues/69; django-anymail matches ``Bounced Address`` the same
  way, https://github.com/anymail/django-anymail/pull/379); ``deferred`` is a temporary delay
  that SendGrid retries; ``spamreport``; ``unsubscribe`` and ``group_unsubscribe``.

Postmark (https://postmarkapp.com/developer/webhooks/webhooks-overview,
https://postmarkapp.com/developer/webhooks/bounce-webhook,
https://postmarkapp.com/developer/webhooks/spam-complaint-webhook,
https://postmarkapp.com/developer/webhooks/subscription-change-webhook,
https://postmarkapp.com/developer/api/bounce-api):

- Postmark does not sign webhooks. Its documented protection is HTTP basic authentication: the
  user name and password go into the webhook URL (``https://user:password@host/path``) and
  arrive as an ``Authorization: Basic`` header, compared here in constant time. There is no
  timestamp, so there is no replay window: redeliveries are absorbed by the event ids.
- One JSON object per POST. ``RecordType`` tells them apart: ``Bounce`` and ``SpamComplaint``
  (``ID``, ``Type``, ``TypeCode``, ``Email``, ``Description``, ``Details``, ``MessageID``,
  ``Metadata``), ``SubscriptionChange`` (``Recipient``, ``ChangedAt``, ``SuppressSending``,
  ``SuppressionReason``: ``HardBounce``, ``SpamComplaint`` or ``ManualSuppression``, ``Origin``,
  ``Metadata``), and ``Delivery``, ``Open``, ``Click`` (ignored here). The older server-level
  bounce hook posts the bounce fields without ``RecordType``; such a body is read as a bounce.
- Bounce types (``Type``/``TypeCode``, the table of
  http://developer.postmarkapp.com/developer-bounces.html): ``HardBounce`` (1), ``Transient``
  (2, "Message delayed": Postmark may still deliver it, so it is ignored here like SendGrid's
  ``deferred``), ``Unsubscribe`` (16), ``DnsError`` (256), ``SpamNotification`` (512: flagged by
  a filter, not the recipient's complaint), ``SoftBounce`` (4096), ``BadEmailAddress`` (100000),
  ``SpamComplaint`` (100001), ``ManuallyDeactivated`` (100002), ``Blocked`` (100006: an ISP
  block, about the sender, not the address) and others (auto-responders, challenge
  verifications, …), ignored here.
- ``Metadata`` carries back what the message was sent with: ``delivery``, the ledger key
  (digest/delivery/postmark.py).

Mailgun (https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks,
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads,
https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types,
https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/tracking-failures):

- A JSON body ``{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}``.
  ``signature`` is the hex HMAC-SHA256, keyed with the webhook signing key, of ``timestamp``
  followed by ``token`` (a random 50-character string). The body itself is not signed, so a
  token is accepted once only (recorded in the store) and old timestamps are refused: otherwise
  a captured signature could carry any event.
- ``event-data``: ``event`` (``failed``, ``complained``, ``unsubscribed``, ``delivered``, …),
  ``id``, ``timestamp``, ``recipient``, ``severity`` (``permanent``/``temporary`` for
  ``failed``), ``reason`` (``bounce``, ``suppress-bounce``, ``suppress-unsubscribe``,
  ``suppress-complaint``, ``old``, ``generic``, …), ``delivery-status`` (``code``,
  ``message``, ``description``; Mailgun's API schema also has ``bounce-type``, ``hard`` or
  ``soft``) and ``user-variables`` (``delivery``, the ledger key, from ``v:delivery``; see
  digest/delivery/mailgun.py).
- A temporary failure is retried by Mailgun for up to 8 hours, each try reported as a
  temporary failure; the last try of a message that never went through is reported with reason
  ``old`` ("Too old", code 602)
  (https://help.mailgun.com/hc/en-us/articles/28956111811355-Will-Mailgun-retry-my-failed-messages,
  and Mailgun's feedback forum, where that last event still carries severity ``temporary``).
  Permanent failures are not retried (a 5xx, a full mailbox, a suppressed address).
- ``id`` is only guaranteed unique within a day (django-anymail's Mailgun notes), so the event
  key here is the id with the event's timestamp (a redelivery of the event carries both).

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

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from digest.errors import PermanentError

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.store import Store

Provider = Literal["sendgrid", "postmark", "mailgun"]
Kind = Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe", "ignored"]

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# Statuses an event may move away from; the suppressed ones (and a choice to leave) stay.
_REASON_CHARS = 300
_MAILGUN_UNCONFIGURED = (
    "mailgun: webhooks are not configured (set DIGEST__WEBHOOKS__MAILGUN_SIGNING_KEY)"
)


class WebhookRefused(PermanentError):
    """A webhook request was not accepted; ``status`` is the HTTP status to answer with (401:
    not authenticated, or the provider is not configured; 400: the body cannot be read).
    Messages never quote a secret."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Event:
    """One provider event, reduced to what the audience needs."""

    provider: Provider
    event_id: str
    email: str
    kind: Kind
    reason: str = ""
    delivery: str | None = None  # the ledger key the message was sent with, when given back


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """Counts for one request: ``received`` = ``applied`` + ``duplicates`` + ``ignored``."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# Shared helpers -------------------------------------------------------------------------------
def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _text(value: Any) -> str:
    """A short one-line reason from whatever a provider gave."""
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _digest(item: Any) -> str:
    raw = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:48]


def _derived_id(item: Any) -> str:
    """A stable id for an event that came without one: the hash of its content."""
    return "sha256:" + _digest(item)


def _json(provider: str, body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookRefused(f"{provider}: the body is not JSON", status=400) from None


def _check_time(provider: str, raw: str | None, *, now: datetime, max_age: int) -> None:
    """Refuse a signed timestamp outside ``max_age`` seconds of ``now`` (either way)."""
    if not raw or not re.fullmatch(r"\d{1,12}(\.\d{1,9})?", raw.strip()):
        raise WebhookRefused(f"{provider}: missing or unreadable signature timestamp")
    age = now.timestamp() - float(raw)
    if abs(age) > max_age:
        when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
        raise WebhookRefused(
            f"{provider}: the signature is {when}, outside the {max_age} s window "
            "(a replay, or a clock out of sync)"
        )


# Verifiers ------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _sendgrid_key(public_key: str) -> ec.EllipticCurvePublicKey:
    text = public_key.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused(
            "sendgrid: webhooks.sendgrid_public_key is not an elliptic-curve public key "
            "(give the verification key as SendGrid shows it: base64 DER, or PEM)"
        )
    return key


def verify_sendgrid(
    public_key: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: datetime,
    max_age: int,
) -> None:
    """Check SendGrid's ECDSA signature of ``timestamp + body``; raise WebhookRefused (401)."""
    if not public_key.strip():
        raise WebhookRefused(
            "sendgrid: webhooks are not configured (set webhooks.sendgrid_public_key)"
        )
    key = _sendgrid_key(public_key)
    if not signature:
        raise WebhookRefused(f"sendgrid: no {SENDGRID_SIGNATURE} header")
    _check_time("sendgrid", timestamp, now=now, max_age=max_age)
    assert timestamp is not None
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, timestamp.strip().encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookRefused("sendgrid: the signature does not match") from None


def verify_postmark(username: str, password: str, authorization_header: str | None) -> None:
    """Check the basic-auth credentials Postmark sends (from its webhook URL), in constant
    time; raise WebhookRefused (401)."""
    if not username or not password:
        raise WebhookRefused(
            "postmark: webhooks are not configured (set webhooks.postmark_username and "
            "DIGEST__WEBHOOKS__POSTMARK_PASSWORD)"
        )
    scheme, _, value = (authorization_header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise WebhookRefused("postmark: no basic-auth credentials")
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRefused("postmark: unreadable basic-auth credentials") from None
    expected = f"{username}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise WebhookRefused("postmark: wrong credentials")


def verify_mailgun(
    signing_key: str,
    timestamp: str | None,
    token: str | None,
    signature: str | None,
    *,
    now: datetime,
    max_age: int,
) -> None:
    """Check Mailgun's HMAC-SHA256 of ``timestamp + token`` and the timestamp's age; raise
    WebhookRefused (401). That a token is used once is checked against the store by
    :func:`handle_mailgun`."""
    if not signing_key:
        raise WebhookRefused(_MAILGUN_UNCONFIGURED)
    if not token or not signature:
        raise WebhookRefused("mailgun: no signature")
    _check_time("mailgun", timestamp, now=now, max_age=max_age)
    assert timestamp is not None
    expected = hmac.new(
        signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode()):
        raise WebhookRefused("mailgun: the signature does not match")


# Parsers --------------------------------------------------------------------------------------
_SENDGRID_DROPS: dict[str, Kind] = {
    "bounced address": "hard_bounce",
    "spam reporting address": "complaint",
    "unsubscribed address": "unsubscribe",
}


def _sendgrid_kind(item: Mapping[str, Any]) -> tuple[Kind, str]:
    event = _str(item.get("event")).lower()
    reason = _text(item.get("reason") or item.get("response"))
    if event == "bounce":
        blocked = _str(item.get("type")).lower() == "blocked"
        return ("soft_bounce" if blocked else "hard_bounce"), reason
    if event == "dropped":
        return _SENDGRID_DROPS.get(reason.lower(), "ignored"), f"dropped: {reason}"
    if event == "spamreport":
        return "complaint", reason or "marked as spam"
    if event in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribe", reason or event.replace("_", " ")
    return "ignored", reason or event


def parse_sendgrid(body: bytes) -> list[Event]:
    """SendGrid's JSON array of events. Raises WebhookRefused (400) when it is not one."""
    data = _json("sendgrid", body)
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise WebhookRefused("sendgrid: the body is not a JSON array of events", status=400)
    events = []
    for item in data:
        kind, reason = _sendgrid_kind(item)
        email = _str(item.get("email"))
        delivery = item.get("delivery")
        events.append(
            Event(
                provider="sendgrid",
                event_id=_str(item.get("sg_event_id")) or _derived_id(item),
                email=email,
                kind=kind if email else "ignored",
                reason=reason,
                delivery=delivery if isinstance(delivery, str) and delivery else None,
            )
        )
    return events


_POSTMARK_CODES = {
    1: "HardBounce",
    2: "Transient",
    16: "Unsubscribe",
    256: "DnsError",
    4096: "SoftBounce",
    100000: "BadEmailAddress",
    100001: "SpamComplaint",
}
_POSTMARK_TYPES: dict[str, Kind] = {
    "HardBounce": "hard_bounce",
    "BadEmailAddress": "hard_bounce",
    "SoftBounce": "soft_bounce",
    "DnsError": "soft_bounce",
    "SpamComplaint": "complaint",
    "Unsubscribe": "unsubscribe",
}
_POSTMARK_SUPPRESSIONS: dict[str, Kind] = {
    "HardBounce": "hard_bounce",
    "SpamComplaint": "complaint",
    "ManualSuppression": "unsubscribe",
}


def _postmark_event(item: Mapping[str, Any]) -> Event:
    record = _str(item.get("RecordType"))
    if not record and ("Type" in item or "TypeCode" in item):
        record = "SpamComplaint" if item.get("Type") == "SpamComplaint" else "Bounce"
    metadata = item.get("Metadata")
    delivery = metadata.get("delivery") if isinstance(metadata, dict) else None
    delivery = delivery if isinstance(delivery, str) and delivery else None
    kind: Kind = "ignored"
    if record in ("Bounce", "SpamComplaint"):
        code = item.get("TypeCode")
        type_ = _str(item.get("Type")) or _POSTMARK_CODES.get(
            code if isinstance(code, int) else 0, ""
        )
        kind = "complaint" if record == "SpamComplaint" else _POSTMARK_TYPES.get(type_, "ignored")
        detail = _text(item.get("Details") or item.get("Description"))
        bounce_id = item.get("ID")
        return Event(
            provider="postmark",
            event_id=f"{record}:{bounce_id}" if bounce_id is not None else _derived_id(item),
            email=_str(item.get("Email")),
            kind=kind,
            reason=_text(f"{type_}: {detail}" if detail else type_),
            delivery=delivery,
        )
    if record == "SubscriptionChange":
        why = _str(item.get("SuppressionReason"))
        # A reactivation (SuppressSending false) never revives anyone: only opt-in does.
        if item.get("SuppressSending") is True:
            kind = _POSTMARK_SUPPRESSIONS.get(why, "ignored")
        origin = _str(item.get("Origin"))
        key = [item.get(k) for k in ("Recipient", "ChangedAt", "SuppressSending", "MessageStream")]
        return Event(
            provider="postmark",
            event_id="SubscriptionChange:" + _digest([*key, why]),
            email=_str(item.get("Recipient")),
            kind=kind,
            reason=_text(f"suppressed: {why}" + (f" (origin: {origin})" if origin else "")),
            delivery=delivery,
        )
    return Event(
        provider="postmark",
        event_id=_derived_id(item),
        email=_str(item.get("Recipient") or item.get("Email")),
        kind="ignored",
        reason=record,
        delivery=delivery,
    )


def parse_postmark(body: bytes) -> list[Event]:
    """One Postmark webhook record (an array of them is read too). Raises WebhookRefused
    (400) when the body is not a JSON object."""
    data = _json("postmark", body)
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(i, dict) for i in items):
        raise WebhookRefused("postmark: the body is not a JSON object", status=400)
    events = [_postmark_event(i) for i in items]
    return [e if e.email else _ignored(e) for e in events]


def _ignored(event: Event) -> Event:
    return Event(event.provider, event.event_id, event.email, "ignored", event.reason, None)


def _mailgun_document(body: bytes) -> dict[str, Any]:
    data = _json("mailgun", body)
    if not isinstance(data, dict):
        raise WebhookRefused("mailgun: the body is not a JSON object", status=400)
    return data


def _mailgun_kind(data: Mapping[str, Any]) -> Kind:
    event = _str(data.get("event")).lower()
    if event == "complained":
        return "complaint"
    if event == "unsubscribed":
        return "unsubscribe"
    if event != "failed":
        return "ignored"
    severity = _str(data.get("severity")).lower()
    reason = _str(data.get("reason")).lower()
    status = data.get("delivery-status")
    bounce_type = _str(status.get("bounce-type")).lower() if isinstance(status, dict) else ""
    if severity != "permanent":
        # Mailgun tries again; the last try of a message that never went through says "old".
        return "soft_bounce" if reason == "old" else "ignored"
    if reason == "suppress-complaint":
        return "complaint"
    if reason == "suppress-unsubscribe":
        return "unsubscribe"
    if bounce_type == "soft":
        return "soft_bounce"
    if bounce_type == "hard" or reason in ("bounce", "suppress-bounce"):
        return "hard_bounce"
    # Permanent for another reason (retries exhausted, an ESP block…): not delivered, and not
    # proof that the address is dead; counted towards the soft-bounce limit.
    return "soft_bounce"


def _mailgun_reason(data: Mapping[str, Any]) -> str:
    status = data.get("delivery-status")
    parts = [_str(data.get("severity")), _str(data.get("reason"))]
    if isinstance(status, dict):
        code = status.get("code")
        parts.append(str(code) if code not in (None, "") else "")
        parts.append(_str(status.get("message")) or _str(status.get("description")))
    return _text(" ".join(p for p in parts if p))


def _mailgun_events(document: Mapping[str, Any]) -> list[Event]:
    data = document.get("event-data")
    if not isinstance(data, dict):
        raise WebhookRefused("mailgun: the body has no event-data object", status=400)
    variables = data.get("user-variables")
    delivery = variables.get("delivery") if isinstance(variables, dict) else None
    event_id = _str(data.get("id"))
    email = _str(data.get("recipient"))
    kind = _mailgun_kind(data)
    return [
        Event(
            provider="mailgun",
            event_id=f"{event_id}/{data.get('timestamp')}" if event_id else _derived_id(data),
            email=email,
            kind=kind if email else "ignored",
            reason=_mailgun_reason(data) or _str(data.get("event")),
            delivery=delivery if isinstance(delivery, str) and delivery else None,
        )
    ]


def parse_mailgun(body: bytes) -> list[Event]:
    """The event of a Mailgun webhook body (without checking its signature). Raises
    WebhookRefused (400) when the body is not Mailgun's JSON."""
    return _mailgun_events(_mailgun_document(body))


# Applying -------------------------------------------------------------------------------------
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


# Handlers: verify, parse, apply ---------------------------------------------------------------
def handle_sendgrid(
    settings: Settings,
    store: Store,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
) -> WebhookResult:
    cfg = settings.webhooks
    h = _lower(headers)
    verify_sendgrid(
        cfg.sendgrid_public_key,
        body,
        h.get(SENDGRID_SIGNATURE.lower()),
        h.get(SENDGRID_TIMESTAMP.lower()),
        now=now,
        max_age=cfg.max_age_seconds,
    )
    return apply_events(store, settings, parse_sendgrid(body), now=now)


def handle_postmark(
    settings: Settings,
    store: Store,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
) -> WebhookResult:
    cfg = settings.webhooks
    verify_postmark(
        cfg.postmark_username,
        cfg.postmark_password.get_secret_value(),
        _lower(headers).get("authorization"),
    )
    return apply_events(store, settings, parse_postmark(body), now=now)


def handle_mailgun(
    settings: Settings,
    store: Store,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
) -> WebhookResult:
    cfg = settings.webhooks
    key = cfg.mailgun_signing_key.get_secret_value()
    if not key:  # refused before the body is even read
        raise WebhookRefused(_MAILGUN_UNCONFIGURED)
    document = _mailgun_document(body)
    sig = document.get("signature")
    sig = sig if isinstance(sig, dict) else {}
    timestamp, token, signature = (_plain(sig.get(k)) for k in ("timestamp", "token", "signature"))
    verify_mailgun(key, timestamp, token, signature, now=now, max_age=cfg.max_age_seconds)
    assert token is not None
    events = _mailgun_events(document)
    if store.webhook_event_seen("mailgun", f"token:{token}"):
        raise WebhookRefused("mailgun: this signature token was used before (a replay)")
    return apply_events(store, settings, events, now=now, request_id=f"token:{token}")


def _plain(value: Any) -> str | None:
    """A signature field as text (Mailgun sends the timestamp as a string; a number works)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return str(value).strip() or None
    return None
