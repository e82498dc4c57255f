"""The send journal in the store (PostgreSQL): every answer read back exactly as written, each
write refused loudly rather than lost quietly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.models import SendResult, SendStatus
from digest.store import Store
from digest.store.journal import StoreJournal, StoreRecord
from tests.postgres import create_database

ANSWERS = {
    1: SendResult(key="k/1", status=SendStatus.TRANSIENT, reason="x", retry_after=0.0),
    2: SendResult(key="k/2", status=SendStatus.TRANSIENT, reason="timeout"),
    3: SendResult(key="k/3", status=SendStatus.PERMANENT, reason="spam policy 5.7.1"),
    4: SendResult(key="k/4", status=SendStatus.SUBMITTED, provider_id="<a.b'c@example.com>"),
    5: SendResult(key="k/5", status=SendStatus.TRANSIENT, reason="later", retry_after=2.5),
    6: SendResult(
        key="k/6",
        status=SendStatus.PERMANENT,
        reason="Adresse inconnue: « jörg@exämple.org » 🚫\nsecond line; DROP TABLE x; --",
        bounce=True,
    ),
    2_000_000_000: SendResult(key="k/big", status=SendStatus.TRANSIENT, retry_after=1e-7),
}


@pytest.fixture
def store(pg_base: str) -> Iterator[Store]:
    s = Store.open(create_database(pg_base, f"t_{uuid.uuid4().hex[:12]}"))
    yield s
    s.close()


def test_every_field_reads_back_exactly(store: Store, tmp_path: Path) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    journal = StoreJournal(url, "run-1")
    for delivery_id, result in ANSWERS.items():
        journal.write(delivery_id, result)
    journal.close()
    record = StoreRecord(tmp_path, "ed", store.engine)
    back = record.replay("run-1")
    assert back == ANSWERS
    assert back[1].retry_after == 0.0  # zero is a hint, not "no hint"
    assert back[2].retry_after is None
    assert back[3].bounce is False and back[6].bounce is True
    assert record.replay("run-2") == {}


def test_each_answer_is_in_the_store_when_wait_returns(store: Store, tmp_path: Path) -> None:
    """Read back from another connection while the journal stays open: nothing waits for a
    later write or for close."""
    url = store.engine.url.render_as_string(hide_password=False)
    journal = StoreJournal(url, "run-1")
    record = StoreRecord(tmp_path, "ed", store.engine)
    for n, (delivery_id, result) in enumerate(ANSWERS.items(), 1):
        journal.write(delivery_id, result)
        journal.wait()
        back = record.replay("run-1")
        assert len(back) == n and back[delivery_id] == result
    journal.close()


def test_a_write_travels_while_the_sender_goes_on_and_the_next_waits_for_it(
    store: Store, tmp_path: Path
) -> None:
    """``write`` only sends the row: it returns while the server cannot take it yet (the table
    locked by another session), and ``wait``, or the next write, is what waits for it."""
    import threading
    import time

    url = store.engine.url.render_as_string(hide_password=False)
    journal = StoreJournal(url, "run-1")
    record = StoreRecord(tmp_path, "ed", store.engine)
    other = store.engine.connect()
    other.begin()
    other.exec_driver_sql("LOCK TABLE send_journal IN ACCESS EXCLUSIVE MODE")
    started = time.monotonic()
    journal.write(1, ANSWERS[1])
    assert time.monotonic() - started < 1  # sent, not waited for
    waited = threading.Event()

    def wait() -> None:
        journal.wait()
        waited.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not waited.wait(0.5)  # the row is not written while the table is locked
    other.rollback()
    other.close()
    waiter.join(10)
    assert waited.is_set()
    assert record.replay("run-1") == {1: ANSWERS[1]}
    journal.close()


def test_a_write_the_server_refuses_raises(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    journal = StoreJournal(url, "x" * 201)  # longer than the owner column takes
    journal.write(1, ANSWERS[1])  # sent: the server's refusal comes back with its answer
    with pytest.raises(Exception, match="too long"):
        journal.wait()
    with pytest.raises(Exception, match="too long"):
        journal.write(2, ANSWERS[2])  # and the next write waits for the last one's answer
        journal.write(3, ANSWERS[3])
    journal.close()
    journal = StoreJournal(url, "run-1")
    with pytest.raises(ValueError, match="NUL"):
        journal.write(1, SendResult(key="k", status=SendStatus.PERMANENT, reason="a\x00b"))
    journal.write(2, ANSWERS[2])  # the connection is still good
    journal.close()
    with pytest.raises(ValueError, match="closed"):
        journal.write(3, ANSWERS[3])
