"""`digest subscribers list` of a long list: read and printed a page at a time, so its memory
does not grow with the list; the counts per status come from the database; `--limit` and
`--after` page through it."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from digest.cli import app
from digest.cli import subscribers as subscribers_cli
from digest.config import load_settings
from digest.models import SubscriberStatus
from digest.store import Store
from digest.store import schema as t
from tests.cli.test_subscribers_cli import GOOD_AND_BAD, make_config

runner = CliRunner()
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def add_many(cfg: Path, n: int) -> None:
    """``n`` subscribers written straight into the store, one in ten unsubscribed."""
    store = Store.open(load_settings(cfg, environ={}).database_url)
    try:
        for start in range(0, n, 10_000):
            rows = [
                {
                    "email": f"reader{i}@example.org",
                    "email_key": f"reader{i}@example.org",
                    "token_id": i + 1,
                    "name": f"Reader {i} of the list",
                    "status": (
                        SubscriberStatus.UNSUBSCRIBED if i % 10 == 9 else SubscriberStatus.ACTIVE
                    ).value,
                    "sections": ["qiosk"] if i % 2 else None,
                    "digests": None,
                    "source": "test",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(start, min(n, start + 10_000))
            ]
            with store.engine.begin() as c:
                c.execute(sa.insert(t.subscribers), rows)
    finally:
        store.close()


def list_peak(cfg: Path, *args: str) -> tuple[int, str]:
    """The peak of Python's allocations while ``list`` runs, less what the runner keeps of its
    output (the captured text grows with the list, and the runner copies it once at the end;
    the command's own memory must not grow), and the output."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = runner.invoke(
            app, ["subscribers", "list", "-c", str(cfg), *args], env={"COLUMNS": "160"}
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    return peak - 2 * len(result.stdout_bytes), result.output


def test_a_long_list_takes_memory_of_one_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages far smaller than either list (rendering a table row costs about a millisecond,
    # so the lists stay short): what is held at once is one page.
    monkeypatch.setattr(subscribers_cli, "LIST_PAGE", 100)
    warm = make_config(tmp_path / "warm")
    add_many(warm, 10)
    list_peak(warm)  # the modules the command imports are not counted
    peaks = {}
    for n in (1_000, 6_000):
        cfg = make_config(tmp_path / f"pub{n}")
        add_many(cfg, n)
        peaks[n], output = list_peak(cfg)
        lines = output.splitlines()
        assert lines[-1] == f"{n} subscriber(s): {n - n // 10} active, {n // 10} unsubscribed"
        assert sum("@example.org" in line for line in lines) == n
    # Six times the list, the same memory (give or take a page), and about 2 MB in all; the
    # whole list of 6,000 read and shown as one table took 32 MB.
    assert peaks[6_000] < peaks[1_000] + 250_000, peaks
    assert peaks[6_000] < 4_000_000, peaks


SMALL_LIST = """\
Subscribers
┏━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━┓
┃ id ┃ email           ┃ name       ┃ status       ┃ sections        ┃ digests ┃ source       ┃
┡━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━┩
│ 1  │ ana@example.org │ Ana Lima   │ active       │ all             │ all     │ import:l.csv │
│ 2  │ zoe@example.org │ Zoë Müller │ active       │ analysis, qiosk │ weekly  │ import:l.csv │
│ 3  │ lee@example.org │ Lee        │ unsubscribed │ all             │ daily   │ import:l.csv │
└────┴─────────────────┴────────────┴──────────────┴─────────────────┴─────────┴──────────────┘
3 subscriber(s): 2 active, 1 unsubscribed
"""


def small_list(tmp_path: Path) -> Path:
    cfg = make_config(tmp_path / "pub")
    (tmp_path / "l.csv").write_text(GOOD_AND_BAD, encoding="utf-8")
    assert runner.invoke(app, ["subscribers", "import", str(tmp_path / "l.csv"), "-c", str(cfg)])
    result = runner.invoke(app, ["subscribers", "remove", "lee@example.org", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    return cfg


def listed(cfg: Path, *args: str) -> str:
    result = runner.invoke(
        app, ["subscribers", "list", "-c", str(cfg), *args], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_short_list_prints_as_it_did_when_read_whole(tmp_path: Path) -> None:
    # The table as the command printed it when it read every subscriber at once (Rich pads
    # the title line to the table's width).
    lines = listed(small_list(tmp_path)).splitlines()
    assert len(lines[0]) == len(lines[1])
    assert [line.rstrip() for line in lines] == SMALL_LIST.splitlines()


def test_limit_and_after_page_through_the_list(tmp_path: Path) -> None:
    cfg = small_list(tmp_path)
    first = listed(cfg, "--limit", "2").splitlines()
    assert [i for i in ("ana@", "zoe@", "lee@") if any(i in line for line in first)] == [
        "ana@",
        "zoe@",
    ]
    # The counts stay those of the whole list; the line before says where to go on.
    assert first[-2:] == [
        "Shown: 2, up to id 2; the next ones: --after 2",
        "3 subscriber(s): 2 active, 1 unsubscribed",
    ]
    rest = listed(cfg, "--after", "2").splitlines()
    assert any("lee@example.org" in line for line in rest)
    assert not any("ana@" in line or "zoe@" in line for line in rest)
    assert not any(line.startswith("Shown:") for line in rest)
    # A limit that ends the list exactly has nothing more to point to.
    assert not any(line.startswith("Shown:") for line in listed(cfg, "--after", "2", "-n", "1"))
    # With a status, both the rows and the counts are of that status only.
    active = listed(cfg, "--status", "active", "--after", "1").splitlines()
    assert any("zoe@" in line for line in active) and not any("lee@" in line for line in active)
    assert active[-1] == "2 subscriber(s): 2 active"
    assert listed(cfg, "--after", "3").splitlines() == ["3 subscriber(s): 2 active, 1 unsubscribed"]


def test_counts_per_status_come_from_the_store(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "pub")
    add_many(cfg, 30)
    store = Store.open(load_settings(cfg, environ={}).database_url)
    try:
        assert store.subscriber_counts() == {
            SubscriberStatus.ACTIVE: 27,
            SubscriberStatus.UNSUBSCRIBED: 3,
        }
        assert store.subscriber_counts(
            [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.PAUSED]
        ) == {SubscriberStatus.UNSUBSCRIBED: 3}
    finally:
        store.close()
