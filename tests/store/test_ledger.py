"""The delivery ledger: rows unique, claims exclusive (also between threads), answers recorded,
re-runs and retries by the rules, rows of people who left skipped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from digest.models import NewSubscriber, SendResult, SendStatus, SubscriberStatus
from digest.store import Store
from tests.conftest import article

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _edition_with_subscribers(make_settings, store: Store, n: int) -> str:  # type: ignore[no-untyped-def]
    from digest.compose.editions import compose_edition

    items = [article(1)]
    store.save_articles(items, now=NOW)
    ed = compose_edition(
        {"qiosk": items}, history=set(), settings=make_settings(), digest_key="weekly", now=NOW
    )
    store.save_edition(ed, now=NOW)
    store.import_subscribers([NewSubscriber(email=f"s{i}@example.org") for i in range(n)], now=NOW)
    return ed.id


def test_ledger_rows_are_unique_and_claims_exclusive(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 5)
    ids = [s.id for s in store.active_subscribers()]
    assert store.create_deliveries(eid, ids, now=NOW) == 5
    assert store.create_deliveries(eid, ids + ids, now=NOW) == 0
    first = store.claim_batch(eid, 3, now=NOW)
    second = store.claim_batch(eid, 3, now=NOW)
    assert len(first) == 3 and len(second) == 2
    assert not {c.delivery_id for c in first} & {c.delivery_id for c in second}
    assert store.claim_batch(eid, 3, now=NOW) == []
    assert store.delivery_counts(eid)["sending"] == 5


def test_results_and_rerun_rules(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 4)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    rows = store.claim_batch(eid, 10, now=NOW)
    later = NOW + timedelta(minutes=1)
    retry_at = later + timedelta(minutes=5)
    suppressed = store.mark_results(
        {
            rows[0].delivery_id: SendResult("k0", SendStatus.SUBMITTED, provider_id="p0"),
            rows[1].delivery_id: SendResult("k1", SendStatus.TRANSIENT, reason="451 later"),
            rows[2].delivery_id: SendResult(
                "k2", SendStatus.PERMANENT, reason="550 5.1.1 no user", bounce=True
            ),
        },
        now=later,
        retry_at={rows[1].delivery_id: retry_at},
    )
    # rows[3] stays in `sending`, as after a crash.
    counts = store.delivery_counts(eid)
    assert counts == {
        "pending": 0,
        "sending": 1,
        "submitted": 1,
        "failed": 2,
        "skipped": 0,
        "transient": 1,
        "permanent": 1,
        "exhausted": 0,
    }
    # The hard bounce suppressed its subscriber, with the reason in the audit trail.
    bounced = rows[2].subscriber.id
    assert suppressed == [bounced]
    assert bounced not in {s.id for s in store.active_subscribers()}
    added, event = store.subscriber_events(bounced)
    assert (added["old_status"], added["new_status"]) == (None, "active")  # the import
    assert (event["old_status"], event["new_status"]) == ("active", "bounced")
    assert "550 5.1.1 no user" in event["cause"]
    # A late answer for a row no longer `sending` changes nothing.
    store.mark_results({rows[0].delivery_id: SendResult("k0", SendStatus.TRANSIENT)}, now=later)
    assert store.delivery_counts(eid)["submitted"] == 1

    # The crashed claim given back unsent: its attempt is undone.
    store.release([rows[3].delivery_id], now=later)
    assert store.next_retry_at(eid) == retry_at
    assert store.requeue_due(eid, now=later) == 0  # not due yet
    assert store.requeue_due(eid, now=retry_at) == 1  # the transient one, not the permanent one
    again = store.claim_batch(eid, 10, now=retry_at)
    assert {c.delivery_id: c.attempts for c in again} == {
        rows[1].delivery_id: 2,
        rows[3].delivery_id: 1,
    }


def test_concurrent_claimers_never_share_a_row(make_settings, db_url: str) -> None:  # type: ignore[no-untyped-def]
    import threading

    url = db_url
    setup = Store.open(url)
    eid = _edition_with_subscribers(make_settings, setup, 120)
    setup.create_deliveries(eid, [s.id for s in setup.active_subscribers()], now=NOW)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def worker(i: int) -> None:
        store = Store.open(url, migrate=False)
        while rows := store.claim_batch(eid, 3, now=NOW):
            claimed[i].extend(r.delivery_id for r in rows)
        store.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    every = [d for part in claimed for d in part]
    assert len(every) == len(set(every)) == 120
    setup.close()


def test_unsent_rows_of_people_who_left_are_skipped(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 3)
    a, b, c = store.active_subscribers()
    store.create_deliveries(eid, [a.id, b.id, c.id], now=NOW)
    store.set_subscriber_status(b.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    # Even before the ledger is tidied, a claim never picks an inactive subscriber.
    assert {r.subscriber.id for r in store.claim_batch(eid, 10, now=NOW)} == {a.id, c.id}
    assert store.skip_inactive(eid, now=NOW) == 1
    assert store.delivery_counts(eid)["skipped"] == 1


def test_submitted_answers_keep_each_provider_id_once(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from digest.store import schema as t

    eid = _edition_with_subscribers(make_settings, store, 3)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    rows = store.claim_batch(eid, 2, now=NOW)  # the third stays pending
    later = NOW + timedelta(minutes=1)
    answers = {
        r.delivery_id: SendResult(f"k{n}", SendStatus.SUBMITTED, provider_id=f"<id-{n}'@x>")
        for n, r in enumerate(rows)
    }
    store.mark_results(answers, now=later)
    # A replayed answer (a journal) for a row no longer `sending` changes nothing.
    first = rows[0].delivery_id
    store.mark_results(
        {first: SendResult("k0", SendStatus.SUBMITTED, provider_id="other")}, now=later
    )
    q = sa.select(
        t.deliveries.c.id,
        t.deliveries.c.status,
        t.deliveries.c.provider_id,
        t.deliveries.c.submitted_at,
        t.deliveries.c.updated_at,
    ).where(t.deliveries.c.edition_id == eid)
    with store.engine.connect() as c:
        got = {r.id: r for r in c.execute(q)}
    for n, r in enumerate(rows):
        row = got.pop(r.delivery_id)
        assert (row.status, row.provider_id) == ("submitted", f"<id-{n}'@x>")
        assert row.submitted_at == row.updated_at == later
    (pending,) = got.values()
    assert (pending.status, pending.provider_id, pending.submitted_at) == ("pending", None, None)


def test_an_owner_records_nothing_for_rows_taken_over(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    """Once another owner took a row over, the first owner's late answers change nothing:
    submitted ones no more than failures."""
    eid = _edition_with_subscribers(make_settings, store, 2)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    a, b = (c.delivery_id for c in store.claim_batch(eid, 2, now=NOW, owner="first"))
    assert sorted(store.take_over(eid, "first", "second", now=NOW)) == sorted([a, b])
    later = NOW + timedelta(minutes=1)
    store.mark_results(
        {
            a: SendResult("ka", SendStatus.SUBMITTED, provider_id="late"),
            b: SendResult("kb", SendStatus.PERMANENT, reason="550 late"),
        },
        now=later,
        owner="first",
    )
    assert store.delivery_counts(eid)["sending"] == 2
    store.mark_results(
        {a: SendResult("ka", SendStatus.SUBMITTED, provider_id="mine")}, now=later, owner="second"
    )
    counts = store.delivery_counts(eid)
    assert (counts["submitted"], counts["sending"]) == (1, 1)


def _journal(store: Store, owner: str, delivery_ids: list[int]) -> None:
    import sqlalchemy as sa

    from digest.store import schema as t

    rows = [
        {"owner": owner, "delivery_id": i, "key": f"k{i}", "status": "submitted"}
        for i in delivery_ids
    ]
    with store.engine.begin() as c:
        c.execute(sa.insert(t.send_journal), rows)


def _journal_left(store: Store) -> list[tuple[str, int]]:
    import sqlalchemy as sa

    from digest.store import schema as t

    j = t.send_journal.c
    with store.engine.connect() as c:
        return sorted((r[0], r[1]) for r in c.execute(sa.select(j.owner, j.delivery_id)))


def test_forget_journal_waits_for_the_rows_in_hand_then_takes_only_its_edition(
    make_settings, store: Store
) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 3)
    ids = [s.id for s in store.active_subscribers()]
    store.create_deliveries(eid, ids, now=NOW)
    claimed = store.claim_batch(eid, 3, now=NOW, owner="dead:1")
    mine = [c.delivery_id for c in claimed]
    _journal(store, "dead:1", mine)
    _journal(store, "other:2", [10_000 + mine[-1]])  # a row of no delivery of this edition
    # Rows still `sending`: their answers may yet be needed.
    assert store.forget_journal(eid) == 0
    assert len(_journal_left(store)) == 4
    store.mark_results(
        {
            c.delivery_id: SendResult(f"k{c.delivery_id}", SendStatus.SUBMITTED, "id")
            for c in claimed
        },
        now=NOW,
    )
    assert store.forget_journal(eid) == 3
    assert _journal_left(store) == [("other:2", 10_000 + mine[-1])]


def test_each_claim_carries_its_subscriber_as_stored(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    """A claim's subscriber is the one its row is for, every field as stored, whatever the
    ledger's ids: here the rows are written in the reverse order of the subscribers, some
    left out, so no delivery id matches its subscriber's id."""
    eid = _edition_with_subscribers(make_settings, store, 0)
    store.import_subscribers(
        [
            NewSubscriber(
                email=f"r{i}@example.org",
                name=f"Reader {i}",
                sections=None if i % 3 else frozenset({f"s{i}", "x"}),
                digests=None if i % 5 else frozenset({"weekly"}),
            )
            for i in range(8)
        ],
        now=NOW,
    )
    people = list(store.active_subscribers())
    chosen = people[::-2]  # the last first, one in two
    store.create_deliveries(eid, [p.id for p in chosen], now=NOW)
    got = store.claim_batch(eid, 2, now=NOW) + store.claim_batch(eid, 10, now=NOW)
    assert [c.delivery_id for c in got] == sorted(c.delivery_id for c in got)
    assert all(c.delivery_id != p.id for c, p in zip(got, chosen, strict=True))
    assert [c.subscriber for c in got] == chosen
    assert len({p.token_id for p in chosen}) == len(chosen)


def test_a_postgres_claim_skips_rows_another_claimer_holds(make_settings, pg_base: str) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a claim does not wait for rows another claimer has locked and not yet
    committed: it takes the next ones, and neither gets a row of the other."""
    import threading

    import sqlalchemy as sa

    from digest.store import schema as t
    from digest.store.ledger import Claimed, _claim_statement
    from tests.postgres import create_database

    url = create_database(pg_base, f"t_{uuid.uuid4().hex[:12]}")
    store = Store.open(url)
    eid = _edition_with_subscribers(make_settings, store, 6)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    other = Store.open(url, migrate=False)
    with other.engine.connect() as c:
        with c.begin():  # the other claimer, mid-transaction: its rows locked, uncommitted
            held = [r.delivery_id for r in c.execute(_claim_statement(eid, 2, NOW, "other"))]
            mine: list[Claimed] = []
            claimer = threading.Thread(
                target=lambda: mine.extend(store.claim_batch(eid, 10, now=NOW, owner="mine"))
            )
            claimer.start()
            claimer.join(20)
            assert not claimer.is_alive(), "the claim waited for the other claimer's rows"
            assert len(held) == 2 and len(mine) == 4
            assert not {r.delivery_id for r in mine} & set(held)
        # Once committed, the other claimer's rows are its own: nothing is left to claim.
        assert store.claim_batch(eid, 10, now=NOW, owner="mine") == []
    q = sa.select(t.deliveries.c.id, t.deliveries.c.claimed_by, t.deliveries.c.attempts)
    with store.engine.connect() as c:
        got = {i: (o, n) for i, o, n in c.execute(q)}
    assert got == {i: ("other", 1) for i in held} | {r.delivery_id: ("mine", 1) for r in mine}
    other.close()
    store.close()


def test_a_claim_reads_on_after_the_last_id_it_took_then_from_the_start(
    make_settings, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """A claimer passes the last id it claimed: the next claim takes the rows after it, and
    once there are none, rows given back before it (nothing pending is ever passed over)."""
    eid = _edition_with_subscribers(make_settings, store, 10)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    first = [c.delivery_id for c in store.claim_batch(eid, 4, now=NOW, owner="o")]
    second = [c.delivery_id for c in store.claim_batch(eid, 4, now=NOW, owner="o", after=first[-1])]
    assert second == sorted(second) and min(second) > max(first)
    store.release(first[1:3], now=NOW, owner="o")  # given back: before the claimer's place
    third = [c.delivery_id for c in store.claim_batch(eid, 4, now=NOW, owner="o", after=second[-1])]
    assert len(third) == 2 and min(third) > max(second)  # the rest after it first
    fourth = [c.delivery_id for c in store.claim_batch(eid, 4, now=NOW, owner="o", after=third[-1])]
    assert fourth == first[1:3]  # then, nothing after it: from the start
    assert store.claim_batch(eid, 4, now=NOW, owner="o", after=fourth[-1]) == []
    assert store.delivery_counts(eid)["sending"] == 10


def _rows_read(store: Store) -> int:
    """Rows of ``deliveries`` read so far, by sequential and index scans."""
    from tests.postgres import table_stat

    return table_stat(
        store.engine, "deliveries", "coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
    )


def test_postgresql_claims_and_records_read_only_their_batch(make_settings, pg_base: str) -> None:  # type: ignore[no-untyped-def]
    """A claim and the recording of its answers read about the batch's rows, however many were
    sent before or are in flight: their cost does not grow with the list. Under statistics
    taken while every row was pending (as they are early in a send), the planner would
    otherwise walk every sent row by primary key to find the pending ones, and match each
    answer against every row in flight."""
    import sqlalchemy as sa

    from tests.postgres import create_database

    store = Store.open(create_database(pg_base, f"t_{uuid.uuid4().hex[:12]}"))
    eid = _edition_with_subscribers(make_settings, store, 6_000)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    with store.engine.begin() as c:
        c.exec_driver_sql("ANALYZE")  # every row pending
    batch, after = 250, 0
    sent = []
    for _ in range(12):  # 3,000 behind: sent
        claimed = store.claim_batch(eid, batch, now=NOW, owner="o", after=after)
        after = claimed[-1].delivery_id
        store.mark_results(
            {c.delivery_id: SendResult(f"k{c.delivery_id}", SendStatus.SUBMITTED) for c in claimed},
            now=NOW,
            owner="o",
        )
        sent += claimed
    in_flight = []
    for _ in range(8):  # 2,000 in flight
        in_flight.append(store.claim_batch(eid, batch, now=NOW, owner="o", after=after))
        after = in_flight[-1][-1].delivery_id
    before = _rows_read(store)
    claimed = store.claim_batch(eid, batch, now=NOW, owner="o", after=after)
    claim_read = _rows_read(store) - before
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE deliveries"):
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    before = _rows_read(store)
    store.mark_results(
        {c.delivery_id: SendResult(f"k{c.delivery_id}", SendStatus.SUBMITTED) for c in claimed},
        now=NOW,
        owner="o",
    )
    mark_read = _rows_read(store) - before
    sa.event.remove(store.engine, "before_cursor_execute", record)
    # The recording's plan takes each row by primary key and joins nothing, whatever the
    # statistics say (a join's order is theirs to get wrong: matching every answer against
    # every row in flight, or scanning the table).
    [(statement, parameters)] = seen
    with store.engine.begin() as c:
        plan = "\n".join(r[0] for r in c.exec_driver_sql("EXPLAIN " + statement, parameters))
        c.rollback()
    assert "pk_deliveries" in plan and "Join" not in plan and "Seq Scan" not in plan, plan
    assert len(claimed) == batch and store.delivery_counts(eid)["submitted"] == 3_000 + batch
    assert claim_read <= 3 * batch, claim_read
    assert mark_read <= 2 * batch, mark_read
    store.close()
