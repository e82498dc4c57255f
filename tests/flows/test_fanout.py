"""One edition sent by three Prefect workers together, one of them killed mid-send.

Real parts throughout: a Prefect API server on loopback (the project's own, ``flows/
temporary_api.py``, with a fresh database), PostgreSQL (tests/postgres.py), a ``process`` work
pool, three ``prefect worker`` processes, each with a working directory and PREFECT_HOME of its
own (as separate machines would have; nothing on disk is shared but the code and the config
file), and a counting SMTP sink (tests/flows/counting_sink.py). The edition run (its own
process, as a scheduled run would be) writes the ledger of 50,000 subscribers and starts three
``deliver-shard`` runs on the pool; once a tenth of the edition is out, one worker is killed
with SIGKILL, its process group with it (its shard runs and their sending processes). The
edition still goes out, and is marked sent: nobody lost, duplicates at most the killed
worker's sessions in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.config import load_settings
from digest.models import EditionStatus
from digest.steps.compose import approve, compose
from digest.store import Store
from digest.store import schema as t
from tests.conftest import ROOT, article, base_config, write_toml
from tests.postgres import create_database
from tests.processes import Mark, descendants

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
SUBSCRIBERS = 50_000
SHARDS = 3
SESSIONS = 2
POOL = "fanout"
LIMIT = ("--limit", "1")
MARK = Mark("DIGEST_FANOUT_TEST")
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _env(home: Path, api: str | None = None) -> dict[str, str]:
    """What every process of the test runs with: its own PREFECT_HOME, no telemetry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DIGEST__", "PREFECT_")) and k != "DIGEST_CONFIG"
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
            "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
            "PREFECT_HOME": str(home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "DIGEST__SECRET_KEY": "fanout-test-key",
        }
    )
    if api:
        env["PREFECT_API_URL"] = api
    return MARK.env(env)


def _publication(tmp_path: Path, url: str, smtp_port: int) -> tuple[Path, str]:
    """The config file every host reads, and an approved edition to 50,000 subscribers."""
    data: dict[str, Any] = base_config(tmp_path / "var")
    data["store"] = {"url": url}
    data["delivery"] = {
        "provider": "smtp",
        "shards": SHARDS,
        "sessions": SESSIONS,
        "batch_size": 200,
        "claim_ttl": 5,
        "retry": {"wait": 0},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none"},
    }
    config = write_toml(tmp_path / "publication.toml", data)
    settings = load_settings(str(config), environ={"DIGEST__SECRET_KEY": "fanout-test-key"})
    store = Store.open(settings.database_url)
    store.save_articles([article(n) for n in range(1, 4)], now=NOW)
    with store.engine.begin() as c:
        for start in range(0, SUBSCRIBERS, 10_000):
            rows = [
                {
                    "email": f"r{i:06d}@example.org",
                    "email_key": f"r{i:06d}@example.org",
                    "token_id": i + 1,
                    "name": "",
                    "status": "active",
                    "source": "test",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(start, min(start + 10_000, SUBSCRIBERS))
            ]
            c.execute(sa.insert(t.subscribers), rows)
    outcome = compose(settings, store, "weekly", now=NOW)
    assert outcome.edition is not None
    approve(store, outcome.edition, now=NOW)
    store.close()
    return config, outcome.edition.id


def _deploy(api: str, config: Path) -> None:
    """The work pool and the ``deliver-shard`` deployment on it (as `digest deploy` would)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    from flows.shards import SHARD_DEPLOYMENT

    flow_name, name = SHARD_DEPLOYMENT.split("/")
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        template = ProcessWorker.get_default_base_job_template()
        c.create_work_pool(WorkPoolCreate(name=POOL, type="process", base_job_template=template))
        c.create_deployment(
            c.create_flow_from_name(flow_name),
            name,
            entrypoint="flows.shards.deliver_shard_flow",  # the package, installed on each host
            work_pool_name=POOL,
            parameters={"config": str(config)},
            pull_steps=[],
        )


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process the test starts; each ended by its pid (and its group) whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        MARK.kill()


def _count(store: Store, edition_id: str, status: str) -> int:
    q = sa.select(sa.func.count()).where(
        t.deliveries.c.edition_id == edition_id, t.deliveries.c.status == status
    )
    with store.engine.connect() as c:
        return int(c.execute(q.select_from(t.deliveries)).scalar_one())


# Its own waits (120 s for the shards to get going, 150 s for the edition run) exceed the
# suite's default of 120 s: on a busy machine that default ended it before they could answer.
@pytest.mark.timeout(300)
def test_three_workers_send_one_edition_and_survive_losing_one(
    tmp_path: Path, pg_base: str
) -> None:
    from flows.temporary_api import _Server

    started = time.monotonic()
    url = create_database(pg_base, f"t_{uuid.uuid4().hex[:12]}")
    server_home = tmp_path / "prefect-server"
    server_home.mkdir()
    api = _Server(_env(server_home), 120)
    try:
        with _processes() as procs:
            sink = subprocess.Popen(
                [sys.executable, "-m", "tests.flows.counting_sink"],
                cwd=ROOT,
                env=_env(tmp_path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            procs.append(sink)
            assert sink.stdout is not None
            port = int(sink.stdout.readline())
            config, edition_id = _publication(tmp_path, url, port)
            _deploy(api.url, config)

            workers = []
            for n in range(3):
                host = tmp_path / f"host{n}"  # a machine of its own: cwd, PREFECT_HOME
                (host / "prefect").mkdir(parents=True)
                log = (host / "worker.log").open("wb")
                workers.append(
                    subprocess.Popen(
                        # One shard run at a time (--limit 1): each worker gets one.
                        [PREFECT, "worker", "start", "--pool", POOL, "--name", f"host{n}", *LIMIT],
                        cwd=host,
                        env=_env(host / "prefect", api.url),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                procs.append(workers[-1])

            # The edition run, as its deployment's scheduled run would be: the ledger, then the
            # shards on the pool, then waiting for the ledger to be done.
            coordinator_home = tmp_path / "edition-run"
            coordinator_home.mkdir()
            script = (
                "import json, sys\n"
                "from datetime import datetime\n"
                "from flows.pipeline import edition_flow\n"
                "r = edition_flow(sys.argv[1], 'weekly', datetime.fromisoformat(sys.argv[2]))\n"
                "print(json.dumps(r, default=str))\n"
            )
            edition_run = subprocess.Popen(
                [sys.executable, "-c", script, str(config), NOW.isoformat()],
                cwd=coordinator_home,
                env=_env(coordinator_home, api.url),
                stdout=subprocess.PIPE,
                stderr=(coordinator_home / "run.log").open("wb"),
                start_new_session=True,
            )
            procs.append(edition_run)

            store = Store.open(url)
            # Mid-send: a tenth of the edition out, every shard at work somewhere.
            deadline = time.monotonic() + 120
            busy: list[subprocess.Popen[bytes]] = []
            while True:
                assert edition_run.poll() is None, "the edition run ended before the kill"
                assert time.monotonic() < deadline, "the shards did not get going"
                owners = store.sending_owners(edition_id)
                shard_owners = [o for o in owners if o and ":shard-" in o]
                busy = [w for w in workers if descendants(w.pid)]
                submitted = _count(store, edition_id, "submitted")
                if len(shard_owners) == SHARDS and busy and submitted >= SUBSCRIBERS // 10:
                    break
                time.sleep(0.2)
            spread = time.monotonic() - started
            victim = busy[0]
            # Its shard runs: the flow-run processes the worker started (each with SESSIONS
            # sending processes under it).
            runs = [p for p in descendants(victim.pid) if _parent(p) == victim.pid]
            doomed = descendants(victim.pid)
            os.killpg(victim.pid, signal.SIGKILL)
            for pid in doomed:  # whatever left the worker's group goes too
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            victim.wait()
            killed_at = _count(store, edition_id, "submitted")

            out, _ = edition_run.communicate(timeout=150)
            log = (coordinator_home / "run.log").read_text(errors="replace")
            assert edition_run.returncode == 0, log[-3000:]
            summary = json.loads(out.decode().splitlines()[-1])
            assert summary["edition_status"] == "sent", summary
            edition = store.edition(edition_id)
            assert edition is not None and edition.status is EditionStatus.SENT
            counts = store.delivery_counts(edition_id)
            assert counts["submitted"] == SUBSCRIBERS, counts
            with store.engine.connect() as c:
                left = c.execute(sa.select(sa.func.count()).select_from(t.send_journal)).scalar()
            store.close()

            assert sink.stdin is not None
            sink.stdin.close()
            received: dict[str, int] = json.loads(sink.stdout.read().decode().splitlines()[-1])
            sink.wait(timeout=30)
    finally:
        api.stop()

    lost = SUBSCRIBERS - len(received)
    duplicates = sum(n - 1 for n in received.values())
    in_flight = SESSIONS * max(1, len(runs))
    print(
        f"{SUBSCRIBERS} subscribers, {SHARDS} shards on 3 workers; killed a worker with "
        f"{len(runs)} shard run(s) at {killed_at} submitted; {lost} lost, {duplicates} "
        f"duplicate(s) (bound {in_flight}); all shards busy after {spread:.0f} s, "
        f"{time.monotonic() - started:.0f} s in all"
    )
    assert len(runs) == 1, "each worker runs one shard (--limit 1)"
    assert lost == 0, "somebody was skipped"
    assert duplicates <= in_flight, (duplicates, in_flight)
    assert left == 0, "the crash record is emptied once recorded"


def _parent(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(text[text.rindex(")") + 2 :].split()[1])


@pytest.fixture(autouse=True)
def _no_orphans() -> Iterator[None]:
    yield
    MARK.assert_gone(within=10, what="processes of the fan-out test")
