"""The ledger written page by page (and the dry run read page by page) is what writing it from
the whole list wrote: the same rows, the same skips, on SQLite and PostgreSQL; re-runs add
nothing; a crash between pages is completed by the next run. And their memory does not grow
with the list."""

from __future__ import annotations

import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.delivery.memory import MemoryProvider
from digest.models import DeliveryStatus, Edition, NewSubscriber, SubscriberStatus
from digest.render.variants import variant_key
from digest.steps import ledger as ledger_steps
from digest.steps.compose import approve, compose
from digest.steps.deliver import deliver_dry
from digest.steps.ledger import delivery_lock, prepare_delivery
from digest.store import Store, ledger_pages
from digest.store import ledger as ledger_store
from digest.store import schema as t
from digest.store import subscribers as subscriber_store
from tests.conftest import article
from tests.steps.world import NOW

# Who chooses what, by number modulo 6: everything; sections with news (qiosk, analysis); the
# one section without news this time (no row, skipped); another digest only (not this one's).
CHOICES: list[dict[str, Any]] = [
    {},
    {"sections": frozenset({"qiosk"})},
    {"sections": frozenset({"diplomacy-watch"})},
    {"sections": frozenset({"analysis", "diplomacy-watch"})},
    {"digests": frozenset({"daily"})},
    {"digests": frozenset({"weekly", "daily"}), "sections": frozenset({"diplomacy-watch"})},
]


def _publication(make_settings, url: str, people: int) -> tuple[Any, Store, Edition]:  # type: ignore[no-untyped-def]
    settings = make_settings({"store": {"url": url}, "delivery": {"retry": {"wait": 0}}})
    store = Store.open(settings.database_url)
    store.save_articles(
        [article(1), article(2), article(3, source="analysis", categories=("Europe",))], now=NOW
    )
    store.import_subscribers(
        [
            NewSubscriber(email=f"p{i:03d}@example.org", **CHOICES[i % len(CHOICES)])
            for i in range(people)
        ],
        now=NOW,
    )
    outcome = compose(settings, store, "weekly", now=NOW)
    assert outcome.edition is not None
    return settings, store, approve(store, outcome.edition, now=NOW)


def _whole_list(store: Store, edition: Edition) -> tuple[set[int], int]:
    """What the ledger held when it was written from the whole list at once: the subscriber
    ids given a row, and how many were skipped."""
    people = store.active_subscribers(edition.digest)
    wanted = {s.id for s in people if variant_key(edition, s.sections) != frozenset()}
    return wanted, len(people) - len(wanted)


def _ledger(store: Store, edition_id: str) -> dict[int, str]:
    q = sa.select(t.deliveries.c.subscriber_id, t.deliveries.c.status).where(
        t.deliveries.c.edition_id == edition_id
    )
    with store.engine.connect() as c:
        return {int(sid): status for sid, status in c.execute(q)}


@pytest.mark.parametrize("choices", [200, 1], ids=["each-choice-once", "each-row"])
def test_the_ledger_written_page_by_page_is_the_whole_lists(
    make_settings, db_url: str, monkeypatch: pytest.MonkeyPatch, choices: int
) -> None:  # type: ignore[no-untyped-def]
    """Both ways of deciding who gets a row: each distinct choice once, in the database, and
    (past MAX_CHOICES distinct choices) each row as it is read."""
    monkeypatch.setattr(subscriber_store, "PAGE", 7)  # 60 people: 9 pages of 7 ids
    monkeypatch.setattr(ledger_pages, "MAX_CHOICES", choices)
    settings, store, edition = _publication(make_settings, db_url, 60)
    left = [s.id for s in store.active_subscribers()][5:9]
    for sid in left:  # who left before the run gets no row
        store.set_subscriber_status(sid, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    wanted, skipped = _whole_list(store, edition)
    assert 0 < len(wanted) < 60 and skipped > 0 and not wanted & set(left)
    with delivery_lock(store, edition):
        report = prepare_delivery(settings, store, edition, now=NOW)
    assert _ledger(store, edition.id) == dict.fromkeys(wanted, DeliveryStatus.PENDING.value)
    assert (report.recipients, report.skipped) == (len(wanted), skipped)
    # Again: nothing added, nothing changed; someone who left since is closed as skipped.
    gone = min(wanted)
    store.set_subscriber_status(gone, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    with delivery_lock(store, edition):
        again = prepare_delivery(settings, store, edition, now=NOW + timedelta(minutes=1))
    expected = dict.fromkeys(wanted, DeliveryStatus.PENDING.value)
    expected[gone] = DeliveryStatus.SKIPPED.value
    assert _ledger(store, edition.id) == expected
    assert again.recipients == len(wanted) - 1
    store.close()


def test_a_crash_between_pages_is_completed_by_the_next_run(
    make_settings, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(subscriber_store, "PAGE", 5)
    settings, store, edition = _publication(make_settings, db_url, 40)
    wanted, skipped = _whole_list(store, edition)
    pages: list[int] = []
    pending = ledger_store.LedgerStore._pending

    def crash_in_the_third_page(*args: Any) -> Any:
        pages.append(1)
        if len(pages) == 3:
            raise OSError("the run was killed here")
        return pending(*args)

    monkeypatch.setattr(ledger_store.LedgerStore, "_pending", staticmethod(crash_in_the_third_page))
    with pytest.raises(OSError), delivery_lock(store, edition):
        prepare_delivery(settings, store, edition, now=NOW)
    written = _ledger(store, edition.id)
    assert written and set(written) < wanted, "pages before the crash are written"
    # Whole pages (5 ids each): a page's wanted subscribers are all written or none.
    for low in range(0, max(wanted), 5):
        page = {i for i in wanted if low < i <= low + 5}
        assert page <= set(written) or not page & set(written), f"page ({low}, {low + 5}]"
    monkeypatch.setattr(ledger_store.LedgerStore, "_pending", staticmethod(pending))
    with delivery_lock(store, edition):
        report = prepare_delivery(settings, store, edition, now=NOW + timedelta(minutes=1))
    assert _ledger(store, edition.id) == dict.fromkeys(wanted, DeliveryStatus.PENDING.value)
    assert (report.recipients, report.skipped) == (len(wanted), skipped)
    store.close()


def test_each_distinct_choice_is_decided_once_and_a_new_one_row_by_row(
    make_settings, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """60 people hold 6 choices (5 of them not everything): the rows are copied and counted in
    the database, the choices decided once each, not once a row. A choice first seen after
    they were decided (someone changed theirs while the ledger was written) is decided as its
    rows are read: the ledger is still right."""
    monkeypatch.setattr(subscriber_store, "PAGE", 7)
    settings, store, edition = _publication(make_settings, db_url, 60)
    decided: list[frozenset[str] | None] = []

    def counted(edition: Edition, chosen: frozenset[str] | None) -> Any:
        decided.append(chosen)
        return variant_key(edition, chosen)

    monkeypatch.setattr(ledger_steps, "variant_key", counted)
    decide = ledger_store.LedgerStore._decided_choices
    changed = max(s.id for s in store.active_subscribers())

    def then_someone_changes(self: Any, *args: Any) -> Any:
        known = decide(self, *args)
        with store.engine.begin() as c:
            c.execute(
                sa.update(t.subscribers)
                .where(t.subscribers.c.id == changed)
                .values(sections=["qiosk", "analysis"], digests=None)
            )
        return known

    monkeypatch.setattr(ledger_store.LedgerStore, "_decided_choices", then_someone_changes)
    with delivery_lock(store, edition):
        report = prepare_delivery(settings, store, edition, now=NOW)
    # The four choices naming this digest's sections once each (the one of another digest
    # only is not asked), then the new one once.
    assert len(decided) == 5, decided
    assert decided[-1] == frozenset({"qiosk", "analysis"})
    wanted, skipped = _whole_list(store, edition)
    assert changed in wanted
    assert _ledger(store, edition.id) == dict.fromkeys(wanted, DeliveryStatus.PENDING.value)
    assert (report.recipients, report.skipped) == (len(wanted), skipped)
    store.close()


def test_the_dry_run_builds_for_those_a_real_run_sends(
    make_settings, db_url: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(subscriber_store, "PAGE", 4)
    settings, store, edition = _publication(make_settings, db_url, 30)
    wanted, skipped = _whole_list(store, edition)
    provider = MemoryProvider()
    dry = deliver_dry(settings, provider, edition, store, now=NOW)
    assert (dry.recipients, dry.submitted, dry.skipped) == (len(wanted), len(wanted), skipped)
    emails = {s.id: s.email for s in store.active_subscribers()}
    assert sorted(m.recipient for m in provider.sent) == sorted(emails[i] for i in wanted)
    # Those the ledger has as sent are not built again.
    first = min(wanted)
    with delivery_lock(store, edition):
        prepare_delivery(settings, store, edition, now=NOW)
    with store.engine.begin() as c:
        c.execute(
            sa.update(t.deliveries)
            .where(t.deliveries.c.subscriber_id == first)
            .values(status=DeliveryStatus.SUBMITTED.value)
        )
    again = deliver_dry(settings, MemoryProvider(keep=False), edition, store, now=NOW)
    assert again.submitted == len(wanted) - 1
    store.close()


# Memory ---------------------------------------------------------------------------------------


def _many(store: Store, n: int) -> None:
    """``n`` active subscribers written straight to the table (an import is slower than the
    test needs), one in ten choosing a section without news."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {
            "email": f"m{i}@example.org",
            "email_key": f"m{i}@example.org",
            "token_id": i + 1,
            "name": f"Reader {i}",
            "status": SubscriberStatus.ACTIVE.value,
            "sections": ["diplomacy-watch"] if i % 10 == 9 else None,
            "digests": None,
            "source": "test",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with store.engine.begin() as c:
        c.execute(sa.insert(t.subscribers), rows)


def _peak(call: Any) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _prepare_and_dry_run_peak(make_settings, folder: Path, n: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    settings, store, edition = _publication(make_settings, f"sqlite:///{folder}/{n}.db", 0)
    _many(store, n)

    def prepare() -> None:
        with delivery_lock(store, edition):
            assert prepare_delivery(settings, store, edition, now=NOW).recipients == n - n // 10

    def dry() -> None:
        report = deliver_dry(settings, MemoryProvider(keep=False), edition, store, now=NOW)
        assert report.submitted == n - n // 10

    peaks = _peak(prepare), _peak(dry)
    store.close()
    return peaks


def test_prepare_and_the_dry_run_do_not_hold_every_subscriber(
    make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(subscriber_store, "PAGE", 500)
    small = _prepare_and_dry_run_peak(make_settings, tmp_path, 2_000)
    big = _prepare_and_dry_run_peak(make_settings, tmp_path, 20_000)
    # Ten times the list, about the same memory: pages of 500 in both (holding the list made
    # it some ten times as much).
    for what, s, b in zip(("prepare", "dry run"), small, big, strict=True):
        assert b < 2 * s, f"{what}: peak {b / 1e6:.1f} MB at 20,000, {s / 1e6:.1f} MB at 2,000"


# Pages written side by side ---------------------------------------------------------------


def test_pages_cover_every_id_once_with_those_who_joined_meanwhile() -> None:
    """Two writers take pages of 10 ids up to the highest id, each page once; the highest id
    is asked again at the end, so someone who joined while the ledger was written (id 57 here)
    is written too."""
    asked: list[int] = []

    def highest() -> int:
        asked.append(1)
        return 40 if len(asked) == 1 else 57

    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def write(low: int, high: int) -> int:
        with lock:
            seen.append((low, high))
        return 1

    assert ledger_pages._pages(highest, 10, write, writers=2) == 6
    assert sorted(seen) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60)]


def test_a_failing_page_stops_every_writer_and_is_raised() -> None:
    """The writer of page (20, 30] fails: the other stops after the page it holds, and the
    error is raised whole: of a hundred thousand pages, only a few are ever begun."""
    begun: list[int] = []

    def write(low: int, high: int) -> int:
        begun.append(low)
        if low == 20:
            raise OSError("the server went away")
        return 0

    with pytest.raises(OSError, match="went away"):
        ledger_pages._pages(lambda: 1_000_000, 10, write, writers=2)
    assert 20 in begun and len(begun) < 1_000, len(begun)
