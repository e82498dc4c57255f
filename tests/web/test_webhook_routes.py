"""The webhook routes on a bare FastAPI app: status codes and counts over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from digest.audience.webhooks import SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP
from digest.config import Settings
from digest.errors import TransientError
from digest.models import NewSubscriber, SubscriberStatus
from digest.store import Store
from digest.web.webhooks import MAX_BODY, router

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))
ADA = "ada@example.org"
SG_KEY = ec.generate_private_key(ec.SECP256R1())
PM_USER, PM_PASSWORD = "postmark-hooks", "pm-Secret-4d1f0b9c"
MG_KEY = "mg-signing-key-9f8e7d6c5b4a"
COUNTS = {"received", "applied", "duplicates", "ignored"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'digest.db'}")
    s.import_subscribers([NewSubscriber(email=ADA)], now=NOW)
    yield s
    s.close()


@pytest.fixture
def client(make_settings: Callable[..., Settings], store: Store) -> Iterator[TestClient]:
    der = SG_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = make_settings(
        {
            "webhooks": {
                "sendgrid_public_key": base64.b64encode(der).decode(),
                "postmark_username": PM_USER,
            }
        },
        DIGEST__WEBHOOKS__POSTMARK_PASSWORD=PM_PASSWORD,
        DIGEST__WEBHOOKS__MAILGUN_SIGNING_KEY=MG_KEY,
    )
    app = FastAPI()
    app.include_router(router)
    app.state.settings = settings
    app.state.store = store
    app.state.clock = lambda: NOW
    with TestClient(app) as c:
        yield c


def status(store: Store) -> SubscriberStatus:
    person = store.subscriber_by_email(ADA)
    assert person is not None
    return person.status


def sg_headers(body: bytes) -> dict[str, str]:
    signature = SG_KEY.sign(TS.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SENDGRID_SIGNATURE: base64.b64encode(signature).decode(),
        SENDGRID_TIMESTAMP: TS,
        "Content-Type": "application/json",
    }


def sg_bounce() -> bytes:
    event = {
        "email": ADA,
        "event": "bounce",
        "type": "bounce",
        "reason": "550 5.1.1 unknown user",
        "sg_event_id": "ev-1",
        "timestamp": int(TS) - 60,
        "delivery": "weekly-2026-W48.1",
    }
    return json.dumps([event, {**event, "event": "delivered", "sg_event_id": "ev-2"}]).encode()


def test_sendgrid_valid_then_redelivered(client: TestClient, store: Store) -> None:
    body = sg_bounce()
    r = client.post("/webhooks/sendgrid", content=body, headers=sg_headers(body))
    assert r.status_code == 200
    assert r.json() == {"received": 2, "applied": 1, "duplicates": 0, "ignored": 1}
    assert status(store) is SubscriberStatus.BOUNCED
    r = client.post("/webhooks/sendgrid", content=body, headers=sg_headers(body))
    assert r.status_code == 200
    assert r.json() == {"received": 2, "applied": 0, "duplicates": 1, "ignored": 1}


def test_sendgrid_bad_signature_is_401(client: TestClient, store: Store) -> None:
    body = sg_bounce()
    headers = sg_headers(body + b" ")  # signed other bytes
    r = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert r.status_code == 401
    assert set(r.json()) == {"error"} and "signature" in r.json()["error"]
    r = client.post("/webhooks/sendgrid", content=body)
    assert r.status_code == 401
    assert status(store) is SubscriberStatus.ACTIVE


def test_sendgrid_garbage_body_is_400(client: TestClient, store: Store) -> None:
    body = b"this is not json"
    r = client.post("/webhooks/sendgrid", content=body, headers=sg_headers(body))
    assert r.status_code == 400
    assert "error" in r.json()


def test_postmark_routes(client: TestClient, store: Store) -> None:
    bounce = {
        "RecordType": "Bounce",
        "ID": 7,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": ADA,
        "Details": "smtp;550 unknown",
        "Metadata": {"delivery": "weekly-2026-W48.1"},
    }
    r = client.post("/webhooks/postmark", json=bounce, auth=(PM_USER, "wrong"))
    assert r.status_code == 401
    assert PM_PASSWORD not in r.text
    assert status(store) is SubscriberStatus.ACTIVE
    r = client.post("/webhooks/postmark", content=b"{oops", auth=(PM_USER, PM_PASSWORD))
    assert r.status_code == 400
    r = client.post("/webhooks/postmark", json=bounce, auth=(PM_USER, PM_PASSWORD))
    assert r.status_code == 200 and set(r.json()) == COUNTS
    assert r.json()["applied"] == 1
    assert status(store) is SubscriberStatus.BOUNCED


def mg_body(event_data: dict[str, object], token: str) -> bytes:
    signature = hmac.new(MG_KEY.encode(), (TS + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": TS, "token": token, "signature": signature},
            "event-data": event_data,
        }
    ).encode()


def test_mailgun_routes(client: TestClient, store: Store) -> None:
    event: dict[str, object] = {
        "event": "complained",
        "id": "mgEv1",
        "timestamp": NOW.timestamp(),
        "recipient": ADA,
        "user-variables": {"delivery": "weekly-2026-W48.1"},
    }
    body = mg_body(event, "t" * 50)
    r = client.post("/webhooks/mailgun", content=body)
    assert r.status_code == 200
    assert r.json() == {"received": 1, "applied": 1, "duplicates": 0, "ignored": 0}
    assert status(store) is SubscriberStatus.COMPLAINED
    r = client.post("/webhooks/mailgun", content=body)  # the same token again
    assert r.status_code == 401 and "replay" in r.json()["error"]
    tampered = body.replace(b'"signature": "', b'"signature": "0')
    assert client.post("/webhooks/mailgun", content=tampered).status_code == 401
    assert client.post("/webhooks/mailgun", content=b"garbage").status_code == 400


def test_unconfigured_provider_is_401(make_settings: Callable[..., Settings], store: Store) -> None:
    app = FastAPI()
    app.include_router(router)
    app.state.settings = make_settings()
    app.state.store = store
    app.state.clock = lambda: NOW
    with TestClient(app) as c:
        body = sg_bounce()
        for path, headers in [
            ("/webhooks/sendgrid", sg_headers(body)),
            ("/webhooks/postmark", {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}),
            ("/webhooks/mailgun", {}),
        ]:
            r = c.post(path, content=body, headers=headers)
            assert r.status_code == 401 and "not configured" in r.json()["error"]
    assert status(store) is SubscriberStatus.ACTIVE


def test_oversized_body_is_413(client: TestClient, store: Store) -> None:
    body = b"[" + b" " * MAX_BODY + b"]"
    r = client.post("/webhooks/sendgrid", content=body, headers=sg_headers(body))
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(6):
            yield b" " * 1_000_000

    r = client.post("/webhooks/mailgun", content=chunks())
    assert r.status_code == 413
    assert status(store) is SubscriberStatus.ACTIVE


def test_store_outage_is_503(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: object, **__: object) -> bool:
        raise TransientError("store: cannot reach the database")

    monkeypatch.setattr(store, "apply_subscriber_event", down)
    body = sg_bounce()
    r = client.post("/webhooks/sendgrid", content=body, headers=sg_headers(body))
    assert r.status_code == 503
    assert status(store) is SubscriberStatus.ACTIVE


def test_only_post_is_routed(client: TestClient) -> None:
    assert client.get("/webhooks/sendgrid").status_code == 405
