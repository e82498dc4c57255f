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

How events become changes: see :mod:`digest.audience.webhooks.handlers`.

The modules: ``events`` (what a request is read into, and its refusal), ``verify`` (signatures
and credentials), ``parse`` (each provider's body into events) and ``handlers`` (one handler for
every provider: check, read, apply once).
"""

from digest.audience.webhooks.events import Event, Kind, Provider, WebhookRefused, WebhookResult
from digest.audience.webhooks.handlers import (
    WebhookHandler,
    apply_events,
    handle_mailgun,
    handle_postmark,
    handle_sendgrid,
)
from digest.audience.webhooks.parse import parse_mailgun, parse_postmark, parse_sendgrid
from digest.audience.webhooks.verify import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
)

__all__ = [
    "SENDGRID_SIGNATURE",
    "SENDGRID_TIMESTAMP",
    "Event",
    "Kind",
    "Provider",
    "WebhookHandler",
    "WebhookRefused",
    "WebhookResult",
    "apply_events",
    "handle_mailgun",
    "handle_postmark",
    "handle_sendgrid",
    "parse_mailgun",
    "parse_postmark",
    "parse_sendgrid",
    "verify_mailgun",
    "verify_postmark",
    "verify_sendgrid",
]
