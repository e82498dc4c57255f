"""Subscribers in the store: adding, choices, statuses with their audit trail, soft bounces,
webhook events seen once; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from digest.models import NewSubscriber, SubscriberStatus
from digest.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_add_is_idempotent_and_audited(store: Store) -> None:
    person = NewSubscriber(email="Zoe@Example.org", name="Zoë", sections=frozenset({"qiosk"}))
    added, new = store.add_subscriber(
        person, status=SubscriberStatus.PENDING, source="signup", now=NOW, cause="signed up"
    )
    assert new and added.status is SubscriberStatus.PENDING and added.source == "signup"
    again, new = store.add_subscriber(
        NewSubscriber(email="zoe@example.org"),
        status=SubscriberStatus.ACTIVE,
        source="operator",
        now=NOW,
        cause="x",
    )
    # Known address (compared without case): returned as it is, nothing changed.
    assert not new and again == added
    assert store.subscriber_by_email("ZOE@example.org") == added
    assert store.subscriber(added.id) == added
    [event] = store.subscriber_events(added.id)
    assert (event["old_status"], event["new_status"], event["cause"]) == (
        None,
        "pending",
        "signed up",
    )


def test_status_changes_are_recorded_with_their_cause(store: Store) -> None:
    store.import_subscribers([NewSubscriber(email="a@example.org")], now=NOW, source="import:x")
    (a,) = store.subscribers()
    assert a.source == "import:x"
    later = NOW + timedelta(days=1)
    assert store.set_subscriber_status(a.id, SubscriberStatus.PAUSED, now=later, cause="paused")
    # Unchanged: no new row. Guarded: only from the given status.
    assert not store.set_subscriber_status(a.id, SubscriberStatus.PAUSED, now=later)
    assert not store.set_subscriber_status(
        a.id, SubscriberStatus.UNSUBSCRIBED, now=later, only_from=SubscriberStatus.ACTIVE
    )
    events = store.subscriber_events(a.id)
    assert [(e["old_status"], e["new_status"]) for e in events] == [
        (None, "active"),
        ("active", "paused"),
    ]
    assert events[1]["at"] == later and events[1]["cause"] == "paused"
    assert [s.id for s in store.subscribers([SubscriberStatus.PAUSED])] == [a.id]
    assert store.active_subscribers() == []


def test_digest_and_section_choices(store: Store) -> None:
    store.import_subscribers(
        [
            NewSubscriber(email="all@example.org"),
            NewSubscriber(email="weekly@example.org", digests=frozenset({"weekly"})),
            NewSubscriber(
                email="daily@example.org",
                digests=frozenset({"daily"}),
                sections=frozenset({"qiosk"}),
            ),
        ],
        now=NOW,
    )
    weekly = {s.email for s in store.active_subscribers("weekly")}
    assert weekly == {"all@example.org", "weekly@example.org"}
    assert {s.email for s in store.active_subscribers()} == weekly | {"daily@example.org"}
    assert store.section_choices("weekly") == {None}
    assert store.section_choices("daily") == {None, frozenset({"qiosk"})}
    daily = store.subscriber_by_email("daily@example.org")
    assert daily is not None
    store.set_preferences(daily.id, sections=None, digests=frozenset({"weekly"}), now=NOW)
    assert {s.email for s in store.active_subscribers("weekly")} == weekly | {"daily@example.org"}
    # An import with the same row again changes nothing; a changed row updates.
    counts = store.import_subscribers(
        [NewSubscriber(email="weekly@example.org", digests=frozenset({"weekly"}))], now=NOW
    )
    assert (counts.added, counts.updated) == (0, 0)


def test_soft_bounces_suppress_only_past_the_limit(store: Store) -> None:
    store.import_subscribers([NewSubscriber(email="soft@example.org")], now=NOW)
    (s,) = store.subscribers()
    assert not store.soft_bounce(s.id, limit=3, now=NOW, cause="mailbox full")
    assert not store.soft_bounce(s.id, limit=3, now=NOW, cause="mailbox full")
    assert store.soft_bounce(s.id, limit=3, now=NOW, cause="mailbox full")
    after = store.subscriber(s.id)
    assert after is not None and after.status is SubscriberStatus.BOUNCED
    assert "3 soft bounces" in store.subscriber_events(s.id)[-1]["cause"]
    # A bounced address is never revived by an import.
    counts = store.import_subscribers([NewSubscriber(email="soft@example.org")], now=NOW)
    assert counts.kept_unsubscribed == 1
    assert store.subscriber(s.id).status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]


def test_webhook_events_are_seen_once(store: Store) -> None:
    assert store.record_webhook_event("sendgrid", "ev-1", now=NOW)
    assert not store.record_webhook_event("sendgrid", "ev-1", now=NOW)
    assert store.record_webhook_event("mailgun", "ev-1", now=NOW)  # per provider


def test_import_never_resubscribes(store: Store) -> None:
    people = [NewSubscriber(email="a@example.org", name="A"), NewSubscriber(email="b@example.org")]
    counts = store.import_subscribers(people, now=NOW)
    assert (counts.added, counts.updated) == (2, 0)
    a = store.active_subscribers()[0]
    store.set_subscriber_status(a.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    counts = store.import_subscribers(
        [
            NewSubscriber(email="A@example.org", name="A"),
            NewSubscriber(email="b@example.org", name="Bee", sections=frozenset({"qiosk"})),
        ],
        now=NOW,
    )
    assert (counts.added, counts.updated, counts.kept_unsubscribed) == (0, 1, 1)
    (b,) = store.active_subscribers()
    assert b.email == "b@example.org" and b.name == "Bee" and b.sections == {"qiosk"}


def test_addresses_differing_in_case_are_one_even_beyond_ascii(store: Store) -> None:
    added, new = store.add_subscriber(
        NewSubscriber(email="ÄB@example.com"),
        status=SubscriberStatus.ACTIVE,
        source="operator",
        now=NOW,
        cause="added",
    )
    assert new
    assert store.subscriber_by_email("äb@example.com") == added
    # An import listing it again finds it (no second row, no crash), whatever the case.
    counts = store.import_subscribers([NewSubscriber(email="äB@EXAMPLE.com")], now=NOW)
    assert (counts.added, len(store.subscribers())) == (0, 1)


def test_soft_bounces_far_apart_start_the_count_again(store: Store) -> None:
    store.import_subscribers([NewSubscriber(email="far@example.org")], now=NOW)
    (s,) = store.subscribers()
    month = timedelta(days=30)
    for n in range(5):  # five soft bounces, each two months after the one before
        assert not store.soft_bounce(
            s.id, limit=3, now=NOW + n * 2 * month, cause="full", window=month
        )
    assert store.subscriber(s.id).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_a_webhook_event_that_fails_is_not_marked_seen(store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from digest.errors import TransientError

    store.import_subscribers([NewSubscriber(email="hb@example.org")], now=NOW)
    real = store._set_statuses

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "_set_statuses", broken)
    with pytest.raises(TransientError):
        store.apply_subscriber_event(
            provider="sendgrid",
            event_ids=["ev-9"],
            email="hb@example.org",
            kind="hard_bounce",
            cause="hard bounce",
            now=NOW,
        )
    monkeypatch.setattr(store, "_set_statuses", real)
    # The provider's redelivery applies it: the failed attempt left nothing behind.
    outcome = store.apply_subscriber_event(
        provider="sendgrid",
        event_ids=["ev-9"],
        email="hb@example.org",
        kind="hard_bounce",
        cause="hard bounce",
        now=NOW,
    )
    assert outcome == "applied"
    assert store.subscriber_by_email("hb@example.org").status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    again = store.apply_subscriber_event(
        provider="sendgrid",
        event_ids=["ev-9"],
        email="hb@example.org",
        kind="hard_bounce",
        cause="hard bounce",
        now=NOW,
    )
    assert again == "duplicate"


def test_a_status_change_applies_only_from_the_status_read(store: Store) -> None:
    store.import_subscribers([NewSubscriber(email="race@example.org")], now=NOW)
    (s,) = store.subscribers()
    # A complaint lands first; a "resume" that read the subscriber as paused changes nothing.
    assert store.set_subscriber_status(s.id, SubscriberStatus.COMPLAINED, now=NOW, cause="spam")
    assert not store.set_subscriber_status(
        s.id, SubscriberStatus.ACTIVE, now=NOW, cause="resume", only_from=SubscriberStatus.PAUSED
    )
    assert store.subscriber(s.id).status is SubscriberStatus.COMPLAINED  # type: ignore[union-attr]
    assert [e["new_status"] for e in store.subscriber_events(s.id)] == ["active", "complained"]


def test_links_carry_a_random_id_not_the_row_id(store: Store) -> None:
    """A link must tell nothing of the list: its id is random, not the subscriber's number."""
    import base64

    from digest.audience.tokens import make_token

    store.import_subscribers([NewSubscriber(email=f"n{i}@example.org") for i in range(20)], now=NOW)
    people = store.subscribers()
    ids = [p.token_id for p in people]
    assert None not in ids and len(set(ids)) == 20
    assert all(p.link_id == p.token_id != p.id for p in people)
    # Far apart and out of order, unlike row ids.
    assert sorted(ids) != ids or max(ids) - min(ids) > 10**9  # type: ignore[operator]
    first = people[0]
    assert store.subscriber_by_token(first.link_id) == first
    payload = make_token("k", first.link_id, "unsubscribe").split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert decoded == str(first.token_id) and decoded != str(first.id)


def test_an_import_tells_its_progress_hook_how_many_are_done(store: Store) -> None:
    from digest.store.subscribers import IMPORT_STEP

    people = [NewSubscriber(email=f"p{i}@example.org") for i in range(2 * IMPORT_STEP + 5)]
    done: list[int] = []
    store.import_subscribers(people, now=NOW, progress=done.append)
    assert done == [IMPORT_STEP, 2 * IMPORT_STEP, 2 * IMPORT_STEP + 5]
