"""Crash safety of the deliver stage, against a real SMTP server (aiosmtpd) on loopback.

A delivery run in its own process (four sending sessions, each a worker process) is killed
with SIGKILL at a dozen different points of a 2,000-recipient send, then run again until done.
The server counts what it received: every recipient at least once, and duplicates at most the
sessions in flight per kill (the message each session had handed over but not yet journaled).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.config import load_settings
from digest.models import NewSubscriber
from digest.steps.compose import approve, compose
from digest.store import Store
from tests.conftest import ROOT, article, base_config, write_toml
from tests.delivery.test_smtp import Running, smtp_server
from tests.processes import Mark

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
SESSIONS = 4


@pytest.fixture
def server() -> Iterator[Running]:
    with smtp_server() as running:
        yield running


def _setup(
    tmp_path: Path, server: Running, recipients: int, sessions: int, store_url: str = ""
) -> tuple[Path, str]:
    """A publication sending over SMTP to ``server``; its store SQLite unless ``store_url``."""
    data: dict[str, Any] = base_config(tmp_path / "var")
    if store_url:
        data["store"] = {"url": store_url}
    data["delivery"] = {
        "provider": "smtp",
        "sessions": sessions,
        "batch_size": 40,
        "retry": {"wait": 0},
        "smtp": {"host": "127.0.0.1", "port": server.controller.port, "security": "none"},
    }
    config = write_toml(tmp_path / "pub.toml", data)
    settings = load_settings(str(config), environ=_env())
    store = Store.open(settings.database_url)
    store.save_articles([article(n) for n in range(1, 4)], now=NOW)
    people = [NewSubscriber(email=f"r{i:05d}@example.org") for i in range(recipients)]
    store.import_subscribers(people, now=NOW)
    outcome = compose(settings, store, "weekly", now=NOW)
    assert outcome.edition is not None
    approve(store, outcome.edition, now=NOW)
    store.close()
    return config, outcome.edition.id


# Marks every process these tests start, and what those start in turn (fork server, workers).
MARK = Mark("DIGEST_CRASH_TEST")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST__")}
    env["DIGEST__SECRET_KEY"] = "crash-test-key"
    env["PYTHONPATH"] = str(ROOT)
    return MARK.env(env)


def _start(config: Path, edition_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.steps.sender_process", str(config), edition_id],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _received(server: Running) -> int:
    return len(server.handler.received)


def test_kill_9_at_a_dozen_points_loses_nobody_and_repeats_little(
    tmp_path: Path, server: Running
) -> None:
    total = 2000
    config, edition_id = _setup(tmp_path, server, total, SESSIONS)
    # Kill points by messages the server has received; 0 is "as soon as the run holds the
    # lock" (while it writes the ledger or starts its workers).
    points = [0, 1, 45, 160, 330, 520, 700, 910, 1100, 1330, 1520, 1760, 1900]
    kills = 0
    for point in points:
        proc = _start(config, edition_id)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        deadline = time.monotonic() + 60
        while _received(server) < point and proc.poll() is None:
            assert time.monotonic() < deadline, f"no progress towards {point}"
            time.sleep(0.001)
        if proc.poll() is not None:
            # The run finished before this point: it must have finished well.
            _, err = proc.communicate()
            assert proc.returncode == 0, err
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        # The workers die with their run: what was already on the wire still lands, and then
        # nothing more (no orphan goes on sending the batches it had queued).
        time.sleep(0.3)
        settled = _received(server)
        time.sleep(0.5)
        assert _received(server) == settled, "a sending process outlived its run"
    assert kills >= 10, f"only {kills} kills landed before the send finished"

    before = _received(server)
    final = _start(config, edition_id)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    # "This run" is what the last run sent itself; what it settled from the journals of the
    # run killed before it is counted apart.
    report = json.loads(out.splitlines()[-1])
    assert report["submitted"] == _received(server) - before, report
    # No worker, fork server or tracker of any of the killed runs is still around.
    MARK.assert_gone()

    counts = Counter(r.rcpt_tos[0] for r in server.handler.received)
    assert len(counts) == total, "somebody was skipped"
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= kills * SESSIONS, (duplicates, kills)

    settings = load_settings(str(config), environ=_env())
    store = Store.open(settings.database_url)
    ledger = store.delivery_counts(edition_id)
    assert ledger["submitted"] == total and ledger["sending"] == ledger["pending"] == 0
    assert not any((settings.data_path / "journal").rglob("*.jsonl")), "journals left behind"
    print(
        f"{kills} kills, {duplicates} duplicate(s) among {total} recipients; the last run sent "
        f"{report['submitted']} and recorded {report['recovered']} from a killed run's journals"
    )


def test_two_runs_of_one_edition_at_once_send_each_copy_once(
    tmp_path: Path, server: Running
) -> None:
    total = 300
    config, edition_id = _setup(tmp_path, server, total, 2)
    first, second = _start(config, edition_id), _start(config, edition_id)
    results = [p.communicate(timeout=120) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 3], results
    refused = results[[first.returncode, second.returncode].index(3)][1]
    assert edition_id in refused and "another run" in refused
    counts = Counter(r.rcpt_tos[0] for r in server.handler.received)
    assert len(counts) == total and max(counts.values()) == 1
    MARK.assert_gone()
    # The run that sent did so over two sessions, each one reused connection.
    assert len(server.handler.peers) == 2
