"""Is a webhook request the provider's? SendGrid's ECDSA signature, Postmark's basic-auth
credentials, Mailgun's HMAC; a signed timestamp must be recent. Each check raises
:class:`WebhookRefused` (401); a provider whose secret is not configured refuses every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import datetime
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from digest.audience.webhooks.events import WebhookRefused

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
MAILGUN_UNCONFIGURED = (
    "mailgun: webhooks are not configured (set DIGEST__WEBHOOKS__MAILGUN_SIGNING_KEY)"
)


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
    :data:`~digest.audience.webhooks.handlers.handle_mailgun`."""
    if not signing_key:
        raise WebhookRefused(MAILGUN_UNCONFIGURED)
    if not token or not signature:
        raise WebhookRefused("mailgun: no signature")
    _check_time("mailgun", timestamp, now=now, max_age=max_age)
    assert timestamp is not None
    expected = hmac.new(
        signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode()):
        raise WebhookRefused("mailgun: the signature does not match")
