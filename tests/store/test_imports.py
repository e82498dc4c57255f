"""Subscriber lists imported in chunks (``digest.steps.imports`` over ``Store.subscriber_import``)
and exported page by page, on SQLite and PostgreSQL: the same answers as the list read whole,
whatever the chunk size, and idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.audience.csv_import import read_subscribers_csv
from digest.models import NewSubscriber, SubscriberStatus
from digest.steps.imports import KEEP, ImportReport, import_subscribers_file
from digest.steps.progress import Progress
from digest.store import Store
from tests.postgres import database, table_stat

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SECTIONS = {"diplomacy-watch", "qiosk", "analysis"}
DIGESTS = {"weekly", "daily"}

# Every kind of line, some on both sides of any chunk edge.
MIXED = (
    "email,name,sections,digests,status\n"
    "a@example.org,Ana,,,\n"  # 2
    "b@example.org,Bo,qiosk,weekly,\n"  # 3
    "A@EXAMPLE.org,Ana again,,,\n"  # 4: twice (2)
    'c@example.org,"Cat,,,\n'  # 5: a stray quote
    "\n"  # 6: blank
    "d@example.org,Dee,sport,,\n"  # 7: unknown section
    "e@example.org,Eve,,,unsubscribed\n"  # 8: skipped
    "not-an-address,X,,,\n"  # 9
    "d@example.org,Dee,qiosk,,\n"  # 10: twice (7, whose row was rejected)
    "e@example.org,Eve,,,\n"  # 11: twice (8, skipped)
    "f@example.org,Fay,,daily,\n"  # 12
    "ｂ@example.org,Bo again,,,\n"  # 13: twice (3), as NFKC sees it
    "g@example.org,Gil,,,gone\n"  # 14: unknown status
    "h@example.org,Hal,analysis;qiosk,,\n"  # 15
    "f@example.org,Fay,,,\n"  # 16: twice (12)
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


def run(store: Store, path: Path, chunk: int = 10_000, **kwargs: object) -> ImportReport:
    return import_subscribers_file(
        store,
        path,
        known_sections=SECTIONS,
        known_digests=DIGESTS,
        now=NOW,
        source=f"import:{path.name}",
        chunk=chunk,
        **kwargs,  # type: ignore[arg-type]
    )


def snapshot(store: Store) -> list[tuple[object, ...]]:
    return [
        (p.email, p.name, p.status, p.sections, p.digests, p.source, created, updated)
        for p, created, updated in store.export_subscribers()
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 100])
def test_any_chunk_size_reads_the_list_as_a_whole_reading_does(
    store: Store, tmp_path: Path, chunk: int
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(MIXED, encoding="utf-8")
    whole = read_subscribers_csv(MIXED, known_sections=SECTIONS, known_digests=DIGESTS)
    report = run(store, path, chunk)
    assert [(p.line, p.message) for p in report.problems] == [
        (p.line, p.message) for p in whole.problems
    ]
    assert [(s.line, s.message) for s in report.skipped_rows] == [
        (s.line, s.message) for s in whole.skipped
    ]
    assert [p.line for p in report.problems] == [4, 5, 7, 9, 10, 11, 13, 14, 16]
    assert "(first on line 7)" in report.problems[4].message  # its first row was rejected
    assert "(first on line 8)" in report.problems[5].message  # its first row was skipped
    assert "(first on line 3)" in report.problems[6].message
    assert (report.lines, report.added, report.updated, report.unchanged) == (14, 4, 0, 0)
    assert report.skipped + report.rejected + report.added == report.lines
    stored = {p.email: p for p in store.subscribers()}
    assert [p.email for p in store.subscribers()] == [p.email for p in whole.people]
    assert stored["b@example.org"].sections == {"qiosk"}
    assert stored["b@example.org"].digests == {"weekly"}
    assert stored["h@example.org"].sections == {"analysis", "qiosk"}
    assert stored["a@example.org"].name == "Ana"  # the first row, not the second
    for person in stored.values():
        [event] = store.subscriber_events(person.id)
        assert (event["old_status"], event["new_status"]) == (None, "active")
        assert event["cause"] == "added by import:list.csv" and event["at"] == NOW


def test_a_bad_line_at_a_chunk_edge_costs_that_line_only(store: Store, tmp_path: Path) -> None:
    lines = ["email,name"] + [f"r{i}@example.org,R {i}" for i in range(1, 13)]
    for bad in (4, 5, 9):  # the last of the first chunk, the first of the second, a lone one
        lines[bad] = f'r{bad}@example.org,"R {bad}'
    path = tmp_path / "edge.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run(store, path, chunk=4)
    assert [p.line for p in report.problems] == [5, 6, 10]
    assert (report.lines, report.added, report.rejected) == (12, 9, 3)
    assert {p.name for p in store.subscribers()} == {
        f"R {i}" for i in range(1, 13) if i not in (4, 5, 9)
    }


def test_an_address_listed_again_chunks_later_is_one_subscriber(
    store: Store, tmp_path: Path
) -> None:
    rows = [f"p{i}@example.org,P {i}" for i in range(1, 31)]
    rows[24] = "P3@Example.org,Someone else"  # line 26, three chunks after line 4
    path = tmp_path / "again.csv"
    path.write_text("email,name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    report = run(store, path, chunk=5)
    assert [(p.line, p.message) for p in report.problems] == [
        (26, "P3@example.org: listed twice (first on line 4); only that row is read")
    ]
    assert report.added == 29
    assert store.subscriber_by_email("p3@example.org").name == "P 3"  # type: ignore[union-attr]


def test_existing_subscribers_are_updated_kept_or_left_as_today(
    store: Store, tmp_path: Path
) -> None:
    store.import_subscribers(
        [
            NewSubscriber(email="same@example.org", name="Same"),
            NewSubscriber(email="moved@example.org", name="Old", sections=frozenset({"qiosk"})),
            NewSubscriber(email="left@example.org", name="Left"),
            NewSubscriber(email="bounced@example.org"),
        ],
        now=NOW,
    )
    later = NOW + timedelta(days=1)
    for email, status in (
        ("left@example.org", SubscriberStatus.UNSUBSCRIBED),
        ("bounced@example.org", SubscriberStatus.BOUNCED),
    ):
        person = store.subscriber_by_email(email)
        assert person is not None
        store.set_subscriber_status(person.id, status, now=later, cause="test")
    path = tmp_path / "update.csv"
    path.write_text(
        "email,name,sections\n"
        "same@example.org,Same,\n"
        "moved@example.org,New,analysis\n"
        "left@example.org,Left again,\n"
        "BOUNCED@example.org,,\n"
        "new@example.org,New,\n",
        encoding="utf-8",
    )
    report = import_subscribers_file(
        store,
        path,
        known_sections=SECTIONS,
        known_digests=None,
        now=later,
        source="import:update.csv",
        chunk=2,
    )
    assert (report.added, report.updated, report.unchanged, report.kept) == (1, 1, 1, 2)
    people = {p.email: p for p in store.subscribers()}
    assert (people["moved@example.org"].name, people["moved@example.org"].sections) == (
        "New",
        {"analysis"},
    )
    assert people["left@example.org"].status is SubscriberStatus.UNSUBSCRIBED
    assert people["left@example.org"].name == "Left"
    assert people["bounced@example.org"].status is SubscriberStatus.BOUNCED
    assert people["new@example.org"].source == "import:update.csv"
    times = {p.email: (c, u) for p, c, u in store.export_subscribers()}
    assert times["moved@example.org"] == (NOW, later)
    assert times["same@example.org"] == (NOW, NOW)  # unchanged: not touched


def test_25000_rows_twice_change_nothing_the_second_time(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,sections,digests\n")
        for i in range(25_000):
            sections = "qiosk;analysis" if i % 3 == 0 else ""
            f.write(f"reader{i}@example.org,Reader {i},{sections},{'weekly' * (i % 2)}\n")
    first = run(store, path)
    assert (first.lines, first.added, first.rejected) == (25_000, 25_000, 0)
    before = snapshot(store)
    again = run(store, path)
    assert (again.added, again.updated, again.kept, again.unchanged) == (0, 0, 0, 25_000)
    assert snapshot(store) == before
    assert len(before) == 25_000 and before[3][3] == {"qiosk", "analysis"}


def test_problems_are_kept_in_full_up_to_a_limit_and_counted_beyond(
    store: Store, tmp_path: Path
) -> None:
    lines = ["email"] + [f"bad-{i}" if i % 2 else f"ok{i}@example.org" for i in range(400)]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run(store, path, chunk=50)
    assert report.rejected == 200 and len(report.problems) == KEEP
    assert [p.line for p in report.problems] == [i + 2 for i in range(1, 2 * KEEP, 2)]
    assert report.added == 200


def test_the_progress_hook_hears_lines_read_of_the_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email\n" + "".join(f"p{i}@example.org\n" for i in range(25)), "utf-8")
    heard: list[Progress] = []
    run(store, path, chunk=10, hook=heard.append)
    assert {e.task for e in heard} == {"import list.csv"}
    assert {e.total for e in heard} == {26}
    done = [e.done for e in heard]
    assert done[0] == 0 and done[-1] == 26 and done == sorted(done) and len(set(done)) >= 4
    assert heard[-1].note == "25 added"


def test_export_reads_every_subscriber_page_by_page(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.store import imports

    monkeypatch.setattr(imports, "EXPORT_PAGE", 3)
    store.import_subscribers([NewSubscriber(email=f"x{i}@example.org") for i in range(10)], now=NOW)
    first = store.subscriber_by_email("x0@example.org")
    assert first is not None
    store.set_subscriber_status(first.id, SubscriberStatus.PAUSED, now=NOW)
    assert [p.email for p, _, _ in store.export_subscribers()] == [
        f"x{i}@example.org" for i in range(10)
    ]
    active = [p.email for p, _, _ in store.export_subscribers([SubscriberStatus.ACTIVE])]
    assert active == [f"x{i}@example.org" for i in range(1, 10)]


def test_a_chunk_of_new_addresses_next_to_chunks_listing_earlier_ones(
    store: Store, tmp_path: Path
) -> None:
    """Chunks of 3: new addresses, then a chunk relisting the first chunk's (one changed, one
    twice within the chunk itself), then new ones again; imported twice."""
    path = tmp_path / "mixed.csv"
    path.write_text(
        "email,name\n"
        "a@example.org,A\nb@example.org,B\nc@example.org,C\n"  # lines 2-4: new
        "A@example.org,A changed\nd@example.org,D\nd@example.org,D twice\n"  # 5-7
        "e@example.org,E\nf@example.org,F\nB@example.org,B\n",  # 8-10
        encoding="utf-8",
    )
    report = run(store, path, chunk=3)
    assert [(p.line, p.message) for p in report.problems] == [
        (5, "A@example.org: listed twice (first on line 2); only that row is read"),
        (7, "d@example.org: listed twice (first on line 6); only that row is read"),
        (10, "B@example.org: listed twice (first on line 3); only that row is read"),
    ]
    assert (report.added, report.updated, report.unchanged, report.rejected) == (6, 0, 0, 3)
    people = {p.email: p.name for p in store.subscribers()}
    assert people == {
        "a@example.org": "A",
        "b@example.org": "B",
        "c@example.org": "C",
        "d@example.org": "D",
        "e@example.org": "E",
        "f@example.org": "F",
    }
    again = run(store, path, chunk=3)
    assert [p.line for p in again.problems] == [5, 7, 10]
    assert (again.added, again.updated, again.unchanged, again.kept) == (0, 0, 6, 0)


def test_an_import_updates_and_keeps_across_chunks_as_one_pass_would(
    store: Store, tmp_path: Path
) -> None:
    """Existing subscribers met in several chunks: the changed active ones updated once (by the
    first row listing them), the ones not active kept, whichever chunk lists them."""
    store.import_subscribers(
        [NewSubscriber(email=f"old{i}@example.org", name=f"Old {i}") for i in range(6)], now=NOW
    )
    gone = store.subscriber_by_email("old4@example.org")
    assert gone is not None
    store.set_subscriber_status(gone.id, SubscriberStatus.UNSUBSCRIBED, now=NOW, cause="test")
    later = NOW + timedelta(hours=1)
    path = tmp_path / "later.csv"
    path.write_text(
        "email,name\n"
        "old0@example.org,Old 0\nnew1@example.org,New 1\n"  # 2-3: unchanged, new
        "old1@example.org,Renamed\nold4@example.org,Old 4\n"  # 4-5: updated, kept
        "OLD1@example.org,Renamed again\nnew2@example.org,New 2\n"  # 6-7: twice (4), new
        "old4@example.org,Back\nold5@example.org,Old 5\n",  # 8-9: twice (5), unchanged
        encoding="utf-8",
    )
    report = import_subscribers_file(
        store,
        path,
        known_sections=SECTIONS,
        known_digests=None,
        now=later,
        source="import:later.csv",
        chunk=2,
    )
    assert [p.line for p in report.problems] == [6, 8]
    assert (report.added, report.updated, report.unchanged, report.kept) == (2, 1, 2, 1)
    people = {p.email: p for p in store.subscribers()}
    assert people["old1@example.org"].name == "Renamed"
    assert people["old4@example.org"].status is SubscriberStatus.UNSUBSCRIBED
    assert people["old4@example.org"].name == "Old 4"
    times = {p.email: (c, u) for p, c, u in store.export_subscribers()}
    assert times["old1@example.org"] == (NOW, later)
    assert times["old0@example.org"] == (NOW, NOW)
    assert times["new2@example.org"] == (later, later)
    added = store.subscriber_by_email("new2@example.org")
    assert added is not None and len(store.subscriber_events(added.id)) == 1


def _seq_scans(store: Store) -> int:
    """Sequential scans of ``subscribers`` so far."""
    return table_stat(store.engine, "subscribers", "seq_scan")


@pytest.fixture
def pg_store(pg_base: str, pg_template: str) -> Iterator[Store]:
    """A PostgreSQL store alone, for what only PostgreSQL's statistics can show."""
    with database(pg_base, template=pg_template) as url:
        s = Store.open(url)
        yield s
        s.close()


def test_postgresql_import_never_scans_the_whole_subscribers_table(
    pg_store: Store, tmp_path: Path
) -> None:
    """Each chunk finds its addresses by index: its work does not grow with the list."""
    store = pg_store
    path = tmp_path / "many.csv"
    path.write_text(
        "email,name\n" + "".join(f"m{i}@example.org,M {i}\n" for i in range(5_000)), "utf-8"
    )
    run(store, path, chunk=1_000)
    with store.engine.begin() as c:
        c.exec_driver_sql("ANALYZE subscribers")
    before = _seq_scans(store)
    relist = tmp_path / "relist.csv"
    relist.write_text(
        "email,name\n"
        + "".join(f"m{i}@example.org,M {i}{'!' * (i // 10 % 2)}\n" for i in range(0, 5_000, 10))
        + "".join(f"n{i}@example.org,N {i}\n" for i in range(500)),
        "utf-8",
    )
    report = run(store, relist, chunk=100)
    assert (report.added, report.updated, report.unchanged) == (500, 250, 250)
    assert _seq_scans(store) == before
