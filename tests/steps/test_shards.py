"""The fan-out without Prefect: shards started as threads beside the edition run, one of them
dead from the start (its run never ends, as a killed worker's stays "running"); the edition run
waits for the ledger, takes the dead one's rows over, and the edition is sent once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.config import parse_settings
from digest.delivery.memory import MemoryProvider
from digest.errors import ConfigError
from digest.models import EditionStatus
from digest.render.variants import render_variants
from digest.steps import shards
from digest.steps.ledger import delivery_lock, finish_delivery, prepare_delivery
from digest.store import schema as t
from digest.store.locks import claim_lock
from tests.conftest import base_config
from tests.steps.world import NOW, World


def test_shards_need_postgresql(tmp_path: Path) -> None:
    data = base_config(tmp_path / "var") | {"delivery": {"shards": 3}}
    with pytest.raises(ConfigError, match=r"delivery\.shards: 3 shards need a shared PostgreSQL"):
        parse_settings(data, source="t.toml", base_dir=tmp_path, environ={})


@pytest.fixture
def db_url(pg_base: str, pg_template: str) -> Iterator[str]:
    """Shards run on PostgreSQL only: this module's stores are all PostgreSQL."""
    from tests.postgres import database

    with database(pg_base, template=pg_template) as url:
        yield url


@pytest.fixture
def pg_world(world):  # type: ignore[no-untyped-def]
    return world


def _fan_out(w: World, start: Any, running: Any) -> Any:
    edition = w.store.edition(w.edition.id)
    assert edition is not None
    variants = render_variants(w.settings, edition, w.store.section_choices())
    with delivery_lock(w.store, edition) as owner:
        prepare_delivery(w.settings, w.store, edition, now=NOW)
        report = shards.fan_out(
            w.settings,
            w.store,
            edition,
            variants,
            now=NOW,
            owner=owner,
            start=start,
            running=running,
            poll=0.05,
        )
        counts = finish_delivery(w.store, edition, now=NOW)
    return report, counts


def test_a_dead_shard_does_not_stall_the_edition(pg_world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = pg_world(recipients=40, delivery={"batch_size": 4, "shards": 3, "claim_ttl": 60})
    provider = MemoryProvider()
    lock = threading.Lock()
    # Every owner in this process sends through the one in-memory provider.
    real = shards.deliver

    def deliver(*args: Any, **kw: Any) -> Any:
        with lock:
            kw["provider"] = provider
        return real(*args, **kw)

    monkeypatch.setattr(shards, "deliver", deliver)
    threads: list[threading.Thread] = []
    ghost_rows: list[int] = []

    def start(n: int) -> None:
        if n == 0:
            # Its machine died after claiming a batch: the claim lease lapses, the run's state
            # never changes.
            owner = f"elsewhere:1:dead:shard-{n}"
            w.store.acquire_lock(claim_lock(owner), owner, ttl=timedelta(seconds=60))
            claimed = w.store.claim_batch(w.edition.id, 4, now=NOW, owner=owner)
            ghost_rows.extend(c.delivery_id for c in claimed)
            with w.store.engine.begin() as c:
                c.execute(
                    sa.update(t.locks)
                    .where(t.locks.c.name == claim_lock(owner))
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
            return
        thread = threading.Thread(
            target=shards.deliver_shard,
            args=(w.settings, w.store, w.edition.id, n),
            kwargs={"now": NOW},
        )
        thread.start()
        threads.append(thread)

    report, counts = _fan_out(w, start, running=lambda: True)  # the dead run never ends
    for thread in threads:
        thread.join(30)
    assert len(ghost_rows) == 4
    assert counts["submitted"] == 40 and counts["sending"] == counts["pending"] == 0
    assert report.submitted == 40
    assert Counter(m.recipient for m in provider.sent) == Counter(w.emails)
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]


def test_without_shard_runs_the_edition_run_sends_alone(pg_world) -> None:  # type: ignore[no-untyped-def]
    w = pg_world(recipients=6, delivery={"provider": "outbox", "shards": 2})

    def start(n: int) -> None:
        raise RuntimeError("deployment 'deliver-shard/deliver-shard' not found")

    report, counts = _fan_out(w, start, running=lambda: False)
    assert counts["submitted"] == 6 and report.submitted == 6
    assert len(report.failures) == 2 and "not found" in report.failures[0]
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
