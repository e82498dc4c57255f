"""Fixtures for the web app: a publication with two digests that share sections, a real SQLite
store, a clock the test moves, and the in-memory provider for confirmation messages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from digest.audience.tokens import SALTS, Purpose, make_token
from digest.config import Settings
from digest.delivery.memory import MemoryProvider
from digest.models import NewSubscriber, Subscriber, SubscriberStatus
from digest.store import Store
from digest.web.app import create_app

KEY = "web-test-signing-key"
OLD_KEY = "web-test-old-key"
BASE = "https://news.meridian.example.org"
SIGNUPS_PER_HOUR = 3
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = 86_400
ONE_CLICK = {"List-Unsubscribe": "One-Click"}

Add = Callable[..., Subscriber]


def web_overrides() -> dict[str, Any]:
    """Two digests: the weekly one carries every section, the briefing two of them."""
    return {
        "delivery": {"provider": "memory"},
        "web": {"base_url": BASE, "signups_per_hour": SIGNUPS_PER_HOUR},
        "digests": {
            "briefing": {
                "title": "The Morning Briefing",
                "sections": ["qiosk", "analysis"],
                "schedule": {"cron": "0 6 * * *", "timezone": "UTC"},
                "period": "daily",
            }
        },
    }


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(web_overrides(), DIGEST__SECRET_KEY=KEY, DIGEST__OLD_SECRET_KEYS=OLD_KEY)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.open(settings.database_url)
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def app(settings: Settings, store: Store, clock: Clock, provider: MemoryProvider) -> FastAPI:
    return create_app(settings, store, clock=clock, provider_factory=lambda: provider)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def add(store: Store, clock: Clock) -> Callable[..., Subscriber]:
    """Add a subscriber straight to the store, in any status."""

    def _add(
        email: str = "reader@example.org",
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
        **kw: Any,
    ) -> Subscriber:
        sub, added = store.add_subscriber(
            NewSubscriber(email=email, **kw),
            status=status,
            source="test",
            now=clock(),
            cause="added by a test",
        )
        assert added
        return sub

    return _add


def token(subscriber: Subscriber | int, purpose: Purpose, key: str = KEY) -> str:
    ident = subscriber if isinstance(subscriber, int) else subscriber.link_id
    return make_token(key, ident, purpose)


def link(subscriber: Subscriber | int, purpose: Purpose, key: str = KEY) -> str:
    """The app-relative path of a subscriber's link."""
    prefix = {"unsubscribe": "/u/", "preferences": "/p/", "confirm": "/confirm/"}[purpose]
    return prefix + token(subscriber, purpose, key)


def signed_days_ago(ident: object, purpose: Purpose, days: int, key: str = KEY) -> str:
    """A link token for ``ident`` as it was signed ``days`` ago."""

    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - days * DAY

    return URLSafeTimedSerializer(key, salt=SALTS[purpose], signer=Old).dumps(ident)


def status_of(store: Store, sub: Subscriber) -> SubscriberStatus:
    """The subscriber's status in the store now."""
    current = store.subscriber(sub.id)
    assert current is not None
    return current.status


def causes_of(store: Store, sub: Subscriber) -> list[str]:
    """The causes of the subscriber's recorded status changes, oldest first."""
    return [e["cause"] for e in store.subscriber_events(sub.id)]
