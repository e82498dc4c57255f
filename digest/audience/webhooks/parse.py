"""Each provider's webhook body read into :class:`Event` values (nothing is checked or applied
here). A body that is not the provider's JSON is refused with :class:`WebhookRefused` (400).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from digest.audience.webhooks.events import Event, Kind, WebhookRefused

_REASON_CHARS = 300


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


def mailgun_document(body: bytes) -> dict[str, Any]:
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


def mailgun_events(document: Mapping[str, Any]) -> list[Event]:
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
    return mailgun_events(mailgun_document(body))


def mailgun_signature(document: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(timestamp, token, signature)`` of a Mailgun body's ``signature`` object, each None
    when missing or unreadable."""
    sig = document.get("signature")
    sig = sig if isinstance(sig, dict) else {}
    timestamp, token, signature = (_plain(sig.get(k)) for k in ("timestamp", "token", "signature"))
    return timestamp, token, signature


def _plain(value: Any) -> str | None:
    """A signature field as text (Mailgun sends the timestamp as a string; a number works)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return str(value).strip() or None
    return None
