"""Per-subscriber clicks in the store, on SQLite and PostgreSQL: one record per (edition,
article, subscriber), unique clickers per article exact under concurrent writers, nothing kept
for a subscriber who left, and a subscriber's records deleted when they leave (the counts
stay)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from digest.audience.service import unsubscribe
from digest.config import Settings
from digest.models import NewSubscriber, SubscriberStatus
from digest.store import ClickRow, Store
from tests.store.test_clicks import DAY, NOW, _sent


def people(store: Store, n: int, prefix: str = "p") -> list[int]:
    ids = []
    for i in range(n):
        sub, _ = store.add_subscriber(
            NewSubscriber(email=f"{prefix}{i}@example.org"),
            status=SubscriberStatus.ACTIVE,
            source="test",
            now=NOW,
            cause="test",
        )
        ids.append(sub.id)
    return ids


def click(edition: str, article: str, visitor: str, sid: int, *, counted: bool = True) -> ClickRow:
    return ClickRow(edition, article, "qiosk", counted, visitor, DAY, sid, NOW)


def counts(store: Store, edition: str) -> dict[str, tuple[int, int, int]]:
    return {c.article_id: (c.clicks, c.filtered, c.clickers) for c in store.click_counts(edition)}


def test_one_record_per_subscriber_and_link(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)
    ann, bob = people(store, 2)
    # Ann on two devices (two visitors), twice on one; Bob once; a scanner naming Bob.
    store.record_clicks(
        [
            click(e, "a", "ann-phone", ann),
            click(e, "a", "ann-phone", ann),
            click(e, "a", "ann-laptop", ann),
            click(e, "a", "bob", bob),
            click(e, "b", "scanner", bob, counted=False),
            click(e, "b", "nobody", 0),
        ]
    )
    store.record_clicks([click(e, "a", "ann-tablet", ann)])
    assert counts(store, e) == {"a": (4, 0, 2), "b": (1, 1, 0)}
    assert [(ed, a) for ed, a, _ in store.subscriber_clicks(ann)] == [(e, "a")]
    assert [(ed, a) for ed, a, _ in store.subscriber_clicks(bob)] == [(e, "a")]


def test_unique_clickers_exact_under_concurrent_writers(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)
    ids = people(store, 6)

    def writer(n: int) -> None:
        # Each writer sends every subscriber's click on both links: all but one are repeats.
        for sid in ids:
            store.record_clicks(
                [click(e, "a", f"w{n}-{sid}", sid), click(e, "b", f"w{n}-b{sid}", sid)]
            )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(writer, range(4)))
    got = counts(store, e)
    assert {a: clickers for a, (_, _, clickers) in got.items()} == {"a": 6, "b": 6}
    assert got["a"][0] == 24  # clicks count visitors: each writer's was another device


def test_leaving_deletes_the_records_and_keeps_the_counts(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)
    ann, bob = people(store, 2)
    store.record_clicks([click(e, "a", "ann", ann), click(e, "a", "bob", bob)])
    assert unsubscribe(store, ann, now=NOW, cause="test")
    assert store.subscriber_clicks(ann) == []
    assert len(store.subscriber_clicks(bob)) == 1
    assert counts(store, e) == {"a": (2, 0, 2)}
    # A click that comes after leaving counts as a click, but names no one any more.
    store.record_clicks([click(e, "b", "ann-again", ann)])
    assert store.subscriber_clicks(ann) == []
    assert counts(store, e)["b"] == (1, 0, 0)
    # Suppressed (a complaint) or bounced: the same.
    store.set_subscriber_status(bob, SubscriberStatus.COMPLAINED, now=NOW, cause="complaint")
    assert store.subscriber_clicks(bob) == []
    # Pausing is not leaving.
    (cat,) = people(store, 1, "cat")
    store.record_clicks([click(e, "a", "cat", cat)])
    store.set_subscriber_status(cat, SubscriberStatus.PAUSED, now=NOW)
    assert len(store.subscriber_clicks(cat)) == 1
