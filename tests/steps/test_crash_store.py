"""The crash record in the store (PostgreSQL): a delivery run killed with SIGKILL mid-send
leaves its answers in ``send_journal`` (no journal file anywhere), and the next owner settles
them from there: nobody lost, duplicates at most the sessions in flight."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.config import load_settings
from digest.store import Store
from digest.store import schema as t
from tests.delivery.test_smtp import Running, smtp_server
from tests.postgres import create_database
from tests.steps.test_crash import MARK, _env, _setup, _start

SESSIONS = 3


@pytest.fixture
def server() -> Iterator[Running]:
    with smtp_server() as running:
        yield running


def test_a_killed_runs_answers_survive_in_the_store(
    tmp_path: Path, server: Running, pg_base: str
) -> None:
    total = 1500
    url = create_database(pg_base, f"t_{uuid.uuid4().hex[:12]}")
    config, edition_id = _setup(tmp_path, server, total, SESSIONS, url)
    settings = load_settings(str(config), environ=_env())
    proc = _start(config, edition_id)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    deadline = time.monotonic() + 60
    while len(server.handler.received) < total // 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # what was on the wire lands; the sending processes are gone

    store = Store.open(settings.database_url)
    with store.engine.connect() as c:
        journaled = c.execute(sa.select(sa.func.count()).select_from(t.send_journal)).scalar()
    assert journaled, "the killed run's last answers are in the store"
    assert not list((settings.data_path / "journal").rglob("*.jsonl")), "no journal file"
    assert store.delivery_counts(edition_id)["sending"] > 0

    before = len(server.handler.received)
    final = _start(config, edition_id)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["recovered"] > 0, report
    assert report["submitted"] == len(server.handler.received) - before
    MARK.assert_gone()

    counts = Counter(r.rcpt_tos[0] for r in server.handler.received)
    assert len(counts) == total, "somebody was skipped"
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= SESSIONS, duplicates
    ledger = store.delivery_counts(edition_id)
    assert ledger["submitted"] == total and ledger["sending"] == ledger["pending"] == 0
    with store.engine.connect() as c:
        left = c.execute(sa.select(sa.func.count()).select_from(t.send_journal)).scalar()
    assert left == 0, "the crash record is emptied once recorded"
    store.close()
