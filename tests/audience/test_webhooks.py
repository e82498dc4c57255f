"""Provider webhooks: real signatures made here, a real SQLite store, every refusal changes
nothing, and every event is applied once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from digest.audience.webhooks import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    Event,
    WebhookRefused,
    WebhookResult,
    apply_events,
    handle_mailgun,
    handle_postmark,
    handle_sendgrid,
    parse_mailgun,
    parse_postmark,
    parse_sendgrid,
    verify_sendgrid,
)
from digest.config import Settings
from digest.models import NewSubscriber, SubscriberStatus
from digest.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))
ADA = "ada@example.org"
BOB = "bob@example.org"
CY = "cy@example.org"

SG_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_SG_KEY = ec.generate_private_key(ec.SECP256R1())


def _b64_public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PM_USER = "postmark-hooks"
PM_PASSWORD = "pm-Secret-4d1f0b9c"
MG_KEY = "mg-signing-key-9f8e7d6c5b4a"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        {
            "webhooks": {
                "sendgrid_public_key": _b64_public(SG_KEY),
                "postmark_username": PM_USER,
                "soft_bounce_limit": 2,
                "max_age_seconds": 600,
            }
        },
        DIGEST__WEBHOOKS__POSTMARK_PASSWORD=PM_PASSWORD,
        DIGEST__WEBHOOKS__MAILGUN_SIGNING_KEY=MG_KEY,
    )


@pytest.fixture
def bare(make_settings: Callable[..., Settings]) -> Settings:
    """No provider configured."""
    return make_settings()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'digest.db'}")
    s.import_subscribers(
        [NewSubscriber(email=ADA), NewSubscriber(email=BOB), NewSubscriber(email=CY)],
        now=NOW - timedelta(days=30),
    )
    yield s
    s.close()


def status(store: Store, email: str) -> SubscriberStatus:
    person = store.subscriber_by_email(email)
    assert person is not None
    return person.status


def changes(store: Store, email: str) -> list[dict[str, Any]]:
    """Audit rows after the one written when the subscriber was added."""
    person = store.subscriber_by_email(email)
    assert person is not None
    return store.subscriber_events(person.id)[1:]


def untouched(store: Store) -> bool:
    return all(
        status(store, e) is SubscriberStatus.ACTIVE and not changes(store, e)
        for e in (ADA, BOB, CY)
    )


# SendGrid --------------------------------------------------------------------------------------
def sg_body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def sg_event(event: str, email: str = ADA, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": int(NOW.timestamp()) - 60,
        "event": event,
        "sg_event_id": f"sg-{event}-{email}-{n}",
        "sg_message_id": f"msg{n}.filter0001",
        "delivery": f"weekly-2026-W48.{n}",
        **extra,
    }


def sg_headers(
    body: bytes, *, ts: str = TS, key: ec.EllipticCurvePrivateKey = SG_KEY
) -> dict[str, str]:
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SENDGRID_SIGNATURE: base64.b64encode(signature).decode(), SENDGRID_TIMESTAMP: ts}


def test_sendgrid_published_test_vector_verifies() -> None:
    # The key, payload, timestamp and signature SendGrid's own libraries test with.
    key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7"
        "yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    payload = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    signature = (
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFD"
        "WYNH2j/0="
    )
    then = datetime.fromtimestamp(1588788367, UTC) + timedelta(seconds=5)
    verify_sendgrid(key, payload, signature, "1588788367", now=then, max_age=600)
    with pytest.raises(WebhookRefused):
        verify_sendgrid(key, payload + b" ", signature, "1588788367", now=then, max_age=600)
    # The same key in PEM form works too.
    pem = "-----BEGIN PUBLIC KEY-----\n" + key + "\n-----END PUBLIC KEY-----\n"
    verify_sendgrid(pem, payload, signature, "1588788367", now=then, max_age=600)


def test_sendgrid_hard_bounce_suppresses_with_an_audit_row(
    settings: Settings, store: Store
) -> None:
    body = sg_body(sg_event("bounce", type="bounce", reason="550 5.1.1 no such user"))
    result = handle_sendgrid(settings, store, body, sg_headers(body), now=NOW)
    assert result == WebhookResult(received=1, applied=1, duplicates=0, ignored=0)
    assert status(store, ADA) is SubscriberStatus.BOUNCED
    [row] = changes(store, ADA)
    assert row["old_status"] == "active" and row["new_status"] == "bounced"
    assert row["cause"] == "hard bounce reported by sendgrid: 550 5.1.1 no such user"
    assert row["at"] == NOW


def test_sendgrid_headers_are_read_in_any_case(settings: Settings, store: Store) -> None:
    body = sg_body(sg_event("spamreport"))
    headers = {k.lower(): v for k, v in sg_headers(body).items()}
    assert handle_sendgrid(settings, store, body, headers, now=NOW).applied == 1
    assert status(store, ADA) is SubscriberStatus.COMPLAINED


def _sg_refusals() -> list[Any]:
    body = sg_body(sg_event("bounce", type="bounce", reason="550 no such user"))
    good = sg_headers(body)
    other_body = sg_body(sg_event("bounce", BOB, type="bounce", reason="550 no such user"))
    old_ts = str(int(NOW.timestamp()) - 601)
    future_ts = str(int(NOW.timestamp()) + 601)
    return [
        pytest.param(
            body,
            {**good, SENDGRID_SIGNATURE: base64.b64encode(b"x" * 70).decode()},
            id="invalid-signature",
        ),
        pytest.param(body, {**good, SENDGRID_SIGNATURE: "not base64!"}, id="garbled-signature"),
        pytest.param(body, sg_headers(body, key=OTHER_SG_KEY), id="other-key"),
        pytest.param(other_body, good, id="tampered-body"),
        pytest.param(body, {SENDGRID_TIMESTAMP: TS}, id="no-signature-header"),
        pytest.param(body, {SENDGRID_SIGNATURE: good[SENDGRID_SIGNATURE]}, id="no-timestamp"),
        pytest.param(body, {**good, SENDGRID_TIMESTAMP: str(int(TS) + 1)}, id="other-timestamp"),
        pytest.param(body, sg_headers(body, ts=old_ts), id="old-timestamp"),
        pytest.param(body, sg_headers(body, ts=future_ts), id="future-timestamp"),
        pytest.param(body, {}, id="no-headers"),
    ]


@pytest.mark.parametrize(("body", "headers"), _sg_refusals())
def test_sendgrid_refusals_change_nothing(
    settings: Settings, store: Store, body: bytes, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookRefused) as e:
        handle_sendgrid(settings, store, body, headers, now=NOW)
    assert e.value.status == 401
    assert untouched(store)
    # Nothing was recorded either: the genuine delivery still applies.
    good = sg_body(sg_event("bounce", type="bounce", reason="550 no such user"))
    assert handle_sendgrid(settings, store, good, sg_headers(good), now=NOW).applied == 1


def test_sendgrid_unconfigured_refuses_even_signed_events(bare: Settings, store: Store) -> None:
    body = sg_body(sg_event("bounce", type="bounce"))
    with pytest.raises(WebhookRefused) as e:
        handle_sendgrid(bare, store, body, sg_headers(body), now=NOW)
    assert e.value.status == 401 and "not configured" in e.value.message
    assert untouched(store)


def test_sendgrid_unreadable_key_refuses(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    broken = make_settings({"webhooks": {"sendgrid_public_key": "bm90IGEga2V5"}})
    body = sg_body(sg_event("bounce", type="bounce"))
    with pytest.raises(WebhookRefused) as e:
        handle_sendgrid(broken, store, body, sg_headers(body), now=NOW)
    assert e.value.status == 401
    assert untouched(store)


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b'{"event": "bounce"}', b"[1, 2]"])
def test_sendgrid_signed_but_unreadable_body_is_400(
    settings: Settings, store: Store, body: bytes
) -> None:
    with pytest.raises(WebhookRefused) as e:
        handle_sendgrid(settings, store, body, sg_headers(body), now=NOW)
    assert e.value.status == 400
    assert untouched(store)


def test_sendgrid_redelivery_is_a_duplicate_applied_once(settings: Settings, store: Store) -> None:
    body = sg_body(sg_event("unsubscribe"))
    first = handle_sendgrid(settings, store, body, sg_headers(body), now=NOW)
    later = NOW + timedelta(minutes=5)
    again = handle_sendgrid(
        settings, store, body, sg_headers(body, ts=str(int(later.timestamp()))), now=later
    )
    assert first == WebhookResult(received=1, applied=1, duplicates=0, ignored=0)
    assert again == WebhookResult(received=1, applied=0, duplicates=1, ignored=0)
    assert status(store, ADA) is SubscriberStatus.UNSUBSCRIBED
    assert len(changes(store, ADA)) == 1


def test_sendgrid_mixed_batch(settings: Settings, store: Store) -> None:
    body = sg_body(
        sg_event("processed", ADA, 1),
        sg_event("deferred", ADA, 2, response="421 try again later", attempt="1"),
        sg_event("delivered", ADA, 3, response="250 OK"),
        sg_event("open", ADA, 4),
        sg_event("bounce", ADA, 5, type="blocked", reason="421 blocked for now"),
        sg_event("bounce", BOB, 6, type="bounce", reason="550 5.1.1 unknown user"),
        sg_event("group_unsubscribe", CY, 7, asm_group_id=1),
        sg_event("spamreport", CY, 8),
        sg_event("dropped", "nobody@example.org", 9, reason="Bounced Address"),
        sg_event("bounce", "", 10, type="bounce"),
        sg_event("bounce", BOB, 6, type="bounce", reason="550 5.1.1 unknown user"),  # again
    )
    result = handle_sendgrid(settings, store, body, sg_headers(body), now=NOW)
    # processed, deferred, delivered, open, no address: ignored; an unknown address: ignored.
    assert result == WebhookResult(received=11, applied=4, duplicates=1, ignored=6)
    assert status(store, ADA) is SubscriberStatus.ACTIVE  # one soft bounce, limit 2
    assert status(store, BOB) is SubscriberStatus.BOUNCED
    # Unsubscribed first, then the complaint of the same batch wins.
    assert status(store, CY) is SubscriberStatus.COMPLAINED
    assert [r["new_status"] for r in changes(store, CY)] == ["unsubscribed", "complained"]
    assert changes(store, CY)[1]["cause"] == "spam complaint reported by sendgrid: marked as spam"


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (sg_event("bounce", type="bounce"), "hard_bounce"),
        (sg_event("bounce"), "hard_bounce"),
        (sg_event("bounce", type="blocked"), "soft_bounce"),
        (sg_event("dropped", reason="Bounced Address"), "hard_bounce"),
        (sg_event("dropped", reason="Spam Reporting Address"), "complaint"),
        (sg_event("dropped", reason="Unsubscribed Address"), "unsubscribe"),
        (sg_event("dropped", reason="Spam Content"), "ignored"),
        (sg_event("deferred"), "ignored"),
        (sg_event("spamreport"), "complaint"),
        (sg_event("unsubscribe"), "unsubscribe"),
        (sg_event("group_unsubscribe"), "unsubscribe"),
        (sg_event("group_resubscribe"), "ignored"),
        (sg_event("click"), "ignored"),
    ],
)
def test_sendgrid_kinds(event: dict[str, Any], kind: str) -> None:
    [parsed] = parse_sendgrid(sg_body(event))
    assert parsed.kind == kind
    assert parsed.provider == "sendgrid" and parsed.event_id == event["sg_event_id"]
    assert parsed.delivery == event["delivery"]


# Postmark --------------------------------------------------------------------------------------
def pm_headers(user: str = PM_USER, password: str = PM_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def pm_bounce(
    type_: str = "HardBounce",
    code: int = 1,
    email: str = ADA,
    n: int = 42,
    delivery: str = "weekly-2026-W48.1",
    record: str | None = "Bounce",
) -> bytes:
    data: dict[str, Any] = {
        "ID": n,
        "Type": type_,
        "TypeCode": code,
        "Name": type_,
        "MessageID": f"883953f4-6105-42a2-a16a-77a8eac7{n:04d}",
        "Description": "The server was unable to deliver your message.",
        "Details": f"smtp;550 5.1.1 {email} unknown",
        "Email": email,
        "From": "digest@meridian.example.org",
        "BouncedAt": "2026-11-30T11:59:00Z",
        "Inactive": True,
        "MessageStream": "broadcast",
        "Metadata": {"delivery": delivery},
    }
    if record:
        data["RecordType"] = record
    return json.dumps(data).encode()


def pm_subscription(
    email: str = ADA, reason: str = "ManualSuppression", suppress: bool = True
) -> bytes:
    return json.dumps(
        {
            "RecordType": "SubscriptionChange",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "ServerID": 23,
            "MessageStream": "broadcast",
            "ChangedAt": "2026-11-30T11:58:00Z",
            "Recipient": email,
            "Origin": "Recipient",
            "SuppressSending": suppress,
            "SuppressionReason": reason,
            "Metadata": {"delivery": "weekly-2026-W48.1"},
        }
    ).encode()


def test_postmark_hard_bounce(settings: Settings, store: Store) -> None:
    result = handle_postmark(settings, store, pm_bounce(), pm_headers(), now=NOW)
    assert result == WebhookResult(received=1, applied=1, duplicates=0, ignored=0)
    assert status(store, ADA) is SubscriberStatus.BOUNCED
    [row] = changes(store, ADA)
    assert row["cause"] == (
        f"hard bounce reported by postmark: HardBounce: smtp;550 5.1.1 {ADA} unknown"
    )


def test_postmark_spam_complaint(settings: Settings, store: Store) -> None:
    body = pm_bounce("SpamComplaint", 100001, record="SpamComplaint")
    assert handle_postmark(settings, store, body, pm_headers(), now=NOW).applied == 1
    assert status(store, ADA) is SubscriberStatus.COMPLAINED
    [row] = changes(store, ADA)
    assert row["cause"].startswith("spam complaint reported by postmark: SpamComplaint")


def test_postmark_bounce_hook_without_record_type(settings: Settings, store: Store) -> None:
    body = pm_bounce(record=None)
    assert handle_postmark(settings, store, body, pm_headers(), now=NOW).applied == 1
    assert status(store, ADA) is SubscriberStatus.BOUNCED


def test_postmark_subscription_changes(settings: Settings, store: Store) -> None:
    assert handle_postmark(settings, store, pm_subscription(), pm_headers(), now=NOW).applied == 1
    assert status(store, ADA) is SubscriberStatus.UNSUBSCRIBED
    assert changes(store, ADA)[0]["cause"] == (
        "unsubscribe reported by postmark: suppressed: ManualSuppression (origin: Recipient)"
    )
    # A reactivation never revives an address.
    revived = pm_subscription(suppress=False)
    result = handle_postmark(settings, store, revived, pm_headers(), now=NOW)
    assert result == WebhookResult(received=1, applied=0, duplicates=0, ignored=1)
    assert status(store, ADA) is SubscriberStatus.UNSUBSCRIBED
    body = pm_subscription(BOB, "HardBounce")
    assert handle_postmark(settings, store, body, pm_headers(), now=NOW).applied == 1
    assert status(store, BOB) is SubscriberStatus.BOUNCED


def test_postmark_other_records_are_ignored(settings: Settings, store: Store) -> None:
    delivery = json.dumps(
        {"RecordType": "Delivery", "Recipient": ADA, "MessageID": "m1", "Details": "250 OK"}
    ).encode()
    result = handle_postmark(settings, store, delivery, pm_headers(), now=NOW)
    assert result == WebhookResult(received=1, applied=0, duplicates=0, ignored=1)
    for type_, code in [("SpamNotification", 512), ("AutoResponder", 64), ("Blocked", 100006)]:
        body = pm_bounce(type_, code, n=code)
        assert handle_postmark(settings, store, body, pm_headers(), now=NOW).ignored == 1
    assert untouched(store)


def test_postmark_redelivery_is_a_duplicate(settings: Settings, store: Store) -> None:
    handle_postmark(settings, store, pm_bounce(), pm_headers(), now=NOW)
    again = handle_postmark(settings, store, pm_bounce(), pm_headers(), now=NOW)
    assert again == WebhookResult(received=1, applied=0, duplicates=1, ignored=0)
    assert len(changes(store, ADA)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(pm_headers(password="wrong-password"), id="wrong-password"),
        pytest.param(pm_headers(user="someone"), id="wrong-user"),
        pytest.param(pm_headers(password=PM_PASSWORD + "x"), id="longer-password"),
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer " + PM_PASSWORD}, id="other-scheme"),
        pytest.param({"Authorization": "Basic !!!"}, id="garbled"),
        pytest.param({"Authorization": "Basic"}, id="empty"),
    ],
)
def test_postmark_wrong_credentials_change_nothing(
    settings: Settings, store: Store, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookRefused) as e:
        handle_postmark(settings, store, pm_bounce(), headers, now=NOW)
    assert e.value.status == 401
    assert PM_PASSWORD not in str(e.value)
    assert untouched(store)


def test_postmark_unconfigured_refuses(
    make_settings: Callable[..., Settings], bare: Settings, store: Store
) -> None:
    user_only = make_settings({"webhooks": {"postmark_username": PM_USER}})
    for s in (bare, user_only):
        with pytest.raises(WebhookRefused) as e:
            handle_postmark(s, store, pm_bounce(), pm_headers(), now=NOW)
        assert e.value.status == 401 and "not configured" in e.value.message
    assert untouched(store)


def test_postmark_garbage_body_is_400(settings: Settings, store: Store) -> None:
    for body in (b"<xml/>", b'"text"', b"[1]"):
        with pytest.raises(WebhookRefused) as e:
            handle_postmark(settings, store, body, pm_headers(), now=NOW)
        assert e.value.status == 400
    assert untouched(store)


@pytest.mark.parametrize(
    ("type_", "code", "kind"),
    [
        ("HardBounce", 1, "hard_bounce"),
        ("BadEmailAddress", 100000, "hard_bounce"),
        ("SoftBounce", 4096, "soft_bounce"),
        ("Transient", 2, "ignored"),  # "message delayed": it may still arrive
        ("DnsError", 256, "soft_bounce"),
        ("Unsubscribe", 16, "unsubscribe"),
        ("SpamNotification", 512, "ignored"),
        ("ManuallyDeactivated", 100002, "ignored"),
        ("", 4096, "soft_bounce"),  # the code alone
    ],
)
def test_postmark_kinds(type_: str, code: int, kind: str) -> None:
    [event] = parse_postmark(pm_bounce(type_, code))
    assert event.kind == kind
    assert event.event_id == "Bounce:42" and event.delivery == "weekly-2026-W48.1"


# Soft bounces ----------------------------------------------------------------------------------
def test_soft_bounces_suppress_only_at_the_limit(settings: Settings, store: Store) -> None:
    # Two reports about one message count once.
    for n, type_, code in [(1, "SoftBounce", 4096), (2, "DnsError", 256)]:
        body = pm_bounce(type_, code, n=n, delivery="weekly-2026-W47.1")
        handle_postmark(settings, store, body, pm_headers(), now=NOW)
    assert status(store, ADA) is SubscriberStatus.ACTIVE
    assert not changes(store, ADA)
    # A second message soft-bounces: the limit (2) is reached.
    body = pm_bounce("SoftBounce", 4096, n=3, delivery="weekly-2026-W48.1")
    assert handle_postmark(settings, store, body, pm_headers(), now=NOW).applied == 1
    assert status(store, ADA) is SubscriberStatus.BOUNCED
    [row] = changes(store, ADA)
    assert row["cause"].startswith(
        "2 soft bounces (limit 2); last: soft bounce reported by postmark"
    )


def test_hard_bounce_leaves_an_unsubscribed_address_alone(settings: Settings, store: Store) -> None:
    ada, bob = store.subscriber_by_email(ADA), store.subscriber_by_email(BOB)
    assert ada is not None and bob is not None
    store.set_subscriber_status(ada.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    store.set_subscriber_status(bob.id, SubscriberStatus.PAUSED, now=NOW)
    for email, n in [(ADA, 1), (BOB, 2)]:
        handle_postmark(settings, store, pm_bounce(email=email, n=n), pm_headers(), now=NOW)
    assert status(store, ADA) is SubscriberStatus.UNSUBSCRIBED
    assert status(store, BOB) is SubscriberStatus.BOUNCED


def test_unknown_address_is_ignored(settings: Settings, store: Store) -> None:
    body = pm_bounce(email="stranger@example.net")
    result = handle_postmark(settings, store, body, pm_headers(), now=NOW)
    assert result == WebhookResult(received=1, applied=0, duplicates=0, ignored=1)
    assert untouched(store)
    assert store.subscriber_by_email("stranger@example.net") is None


def test_apply_events_directly(settings: Settings, store: Store) -> None:
    events = [
        Event("sendgrid", "e1", ADA.upper(), "hard_bounce", "550 gone"),
        Event("sendgrid", "e1", ADA, "hard_bounce", "550 gone"),
        Event("mailgun", "e1", BOB, "unsubscribe"),  # same id, another provider
        Event("postmark", "e2", CY, "ignored"),
    ]
    result = apply_events(store, settings, events, now=NOW)
    assert result == WebhookResult(received=4, applied=2, duplicates=1, ignored=1)
    assert status(store, ADA) is SubscriberStatus.BOUNCED
    assert status(store, BOB) is SubscriberStatus.UNSUBSCRIBED
    assert changes(store, BOB)[0]["cause"] == "unsubscribe reported by mailgun: no reason given"


# Mailgun ---------------------------------------------------------------------------------------
def mg_event(
    event: str = "failed",
    email: str = ADA,
    n: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event": event,
        "id": f"mgEv{n:018d}",
        "timestamp": NOW.timestamp() - 30,
        "recipient": email,
        "recipient-domain": email.partition("@")[2],
        "user-variables": {"delivery": f"weekly-2026-W48.{n}", "edition": "weekly-2026-W48"},
        **extra,
    }


def mg_body(
    event_data: Any,
    *,
    key: str = MG_KEY,
    ts: str = TS,
    token: str | None = None,
) -> bytes:
    token = token or hashlib.sha256(json.dumps(event_data).encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": ts, "token": token, "signature": signature},
            "event-data": event_data,
        }
    ).encode()


HARD: dict[str, Any] = {
    "severity": "permanent",
    "reason": "bounce",
    "delivery-status": {
        "code": 550,
        "message": "5.1.1 The email account that you tried to reach does not exist",
        "bounce-type": "hard",
    },
}


def test_mailgun_permanent_failure_suppresses(settings: Settings, store: Store) -> None:
    result = handle_mailgun(settings, store, mg_body(mg_event(**HARD)), {}, now=NOW)
    assert result == WebhookResult(received=1, applied=1, duplicates=0, ignored=0)
    assert status(store, ADA) is SubscriberStatus.BOUNCED
    [row] = changes(store, ADA)
    assert row["cause"] == (
        "hard bounce reported by mailgun: permanent bounce 550 "
        "5.1.1 The email account that you tried to reach does not exist"
    )


def test_mailgun_complaint_and_unsubscribe(settings: Settings, store: Store) -> None:
    handle_mailgun(settings, store, mg_body(mg_event("complained", ADA, 1)), {}, now=NOW)
    handle_mailgun(settings, store, mg_body(mg_event("unsubscribed", BOB, 2)), {}, now=NOW)
    assert status(store, ADA) is SubscriberStatus.COMPLAINED
    assert status(store, BOB) is SubscriberStatus.UNSUBSCRIBED


def test_mailgun_temporary_failures_wait_for_the_last_try(settings: Settings, store: Store) -> None:
    status_421: dict[str, Any] = {"delivery-status": {"code": 421}}
    retry = mg_event(severity="temporary", reason="generic", **status_421)
    result = handle_mailgun(settings, store, mg_body(retry), {}, now=NOW)
    assert result.ignored == 1
    last = mg_event(n=2, severity="temporary", reason="old")
    assert handle_mailgun(settings, store, mg_body(last), {}, now=NOW).applied == 1
    gone = mg_event(n=3, severity="permanent", reason="old")
    assert handle_mailgun(settings, store, mg_body(gone), {}, now=NOW).applied == 1
    assert status(store, ADA) is SubscriberStatus.BOUNCED  # two messages, limit 2
    assert changes(store, ADA)[0]["cause"].startswith("2 soft bounces (limit 2)")


def test_mailgun_redelivery_with_a_new_token_is_a_duplicate(
    settings: Settings, store: Store
) -> None:
    event = mg_event(**HARD)
    handle_mailgun(settings, store, mg_body(event, token="a" * 50), {}, now=NOW)
    again = handle_mailgun(settings, store, mg_body(event, token="b" * 50), {}, now=NOW)
    assert again == WebhookResult(received=1, applied=0, duplicates=1, ignored=0)
    assert len(changes(store, ADA)) == 1


def test_mailgun_replayed_token_is_refused(settings: Settings, store: Store) -> None:
    handle_mailgun(settings, store, mg_body(mg_event("delivered"), token="t" * 50), {}, now=NOW)
    # The same signed token with another event (the body is not signed): refused.
    forged = mg_body(mg_event(email=BOB, n=2, **HARD), token="t" * 50)
    with pytest.raises(WebhookRefused) as e:
        handle_mailgun(settings, store, forged, {}, now=NOW + timedelta(seconds=30))
    assert e.value.status == 401 and "replay" in e.value.message
    assert untouched(store)


def _mg_refusals() -> list[Any]:
    event = mg_event(**HARD)
    good = json.loads(mg_body(event))
    old = str(int(NOW.timestamp()) - 601)

    def edited(**signature: Any) -> bytes:
        return json.dumps({**good, "signature": {**good["signature"], **signature}}).encode()

    return [
        pytest.param(edited(signature="0" * 64), id="invalid-signature"),
        pytest.param(mg_body(event, key="another-signing-key"), id="other-key"),
        pytest.param(edited(token="z" * 50), id="other-token"),
        pytest.param(edited(timestamp=str(int(TS) - 1)), id="other-timestamp"),
        pytest.param(mg_body(event, ts=old), id="old-timestamp"),
        pytest.param(edited(timestamp="yesterday"), id="unreadable-timestamp"),
        pytest.param(json.dumps({"event-data": event}).encode(), id="no-signature"),
        pytest.param(edited(signature=None), id="null-signature"),
    ]


@pytest.mark.parametrize("body", _mg_refusals())
def test_mailgun_refusals_change_nothing(settings: Settings, store: Store, body: bytes) -> None:
    with pytest.raises(WebhookRefused) as e:
        handle_mailgun(settings, store, body, {}, now=NOW)
    assert e.value.status == 401
    assert MG_KEY not in str(e.value)
    assert untouched(store)
    # The genuine one still applies: the refusal recorded nothing.
    assert handle_mailgun(settings, store, mg_body(mg_event(**HARD)), {}, now=NOW).applied == 1


def test_mailgun_unconfigured_refuses_everything(bare: Settings, store: Store) -> None:
    for body in (mg_body(mg_event(**HARD)), b"garbage"):
        with pytest.raises(WebhookRefused) as e:
            handle_mailgun(bare, store, body, {}, now=NOW)
        assert e.value.status == 401 and "not configured" in e.value.message
    assert untouched(store)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(mg_body(3), id="signed-but-no-event-data"),
    ],
)
def test_mailgun_unreadable_body_is_400(settings: Settings, store: Store, body: bytes) -> None:
    with pytest.raises(WebhookRefused) as e:
        handle_mailgun(settings, store, body, {}, now=NOW)
    assert e.value.status == 400
    assert untouched(store)


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ({"event": "failed", **HARD}, "hard_bounce"),
        ({"event": "failed", "severity": "permanent", "reason": "suppress-bounce"}, "hard_bounce"),
        (
            {"event": "failed", "severity": "permanent", "reason": "suppress-complaint"},
            "complaint",
        ),
        (
            {"event": "failed", "severity": "permanent", "reason": "suppress-unsubscribe"},
            "unsubscribe",
        ),
        (
            {
                "event": "failed",
                "severity": "permanent",
                "reason": "bounce",
                "delivery-status": {"code": 552, "bounce-type": "soft"},
            },
            "soft_bounce",
        ),
        ({"event": "failed", "severity": "permanent", "reason": "espblock"}, "soft_bounce"),
        ({"event": "failed", "severity": "temporary", "reason": "generic"}, "ignored"),
        ({"event": "failed", "severity": "temporary", "reason": "old"}, "soft_bounce"),
        ({"event": "complained"}, "complaint"),
        ({"event": "unsubscribed"}, "unsubscribe"),
        ({"event": "delivered"}, "ignored"),
        ({"event": "opened"}, "ignored"),
    ],
)
def test_mailgun_kinds(extra: dict[str, Any], kind: str) -> None:
    [event] = parse_mailgun(mg_body(mg_event(**extra)))
    assert event.kind == kind
    assert event.provider == "mailgun" and event.delivery == "weekly-2026-W48.1"
    assert event.event_id.startswith("mgEv")
