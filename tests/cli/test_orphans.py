"""Nothing `digest run` starts outlives it: killed with SIGKILL in Prefect's ephemeral mode (no
PREFECT_API_URL), its temporary Prefect API server goes with it within seconds.

The command runs in a process of its own, with feeds served on 127.0.0.1 and the outbox; every
process it starts carries a mark in its environment (tests/processes.py), so an orphan
re-parented to init is found as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, base_config, write_toml
from tests.processes import Mark, descendants, environ
from tests.servers import FeedServer

NOW = "2026-11-30T14:00:00Z"


def _config(tmp_path: Path, feeds: FeedServer) -> Path:
    data = base_config(tmp_path / "var")
    data["sources"] = {
        "diplomacy-watch": {"url": f"{feeds.base}/diplomacy-watch.xml", "local": True},
        "qiosk": {"url": f"{feeds.base}/qiosk.xml", "local": True},
        "analysis": {"url": f"{feeds.base}/analysis.atom", "local": True},
        # Answers after 3 s: the run is still gathering when it is killed.
        "slow": {"url": f"{feeds.base}/slow.xml", "local": True},
    }
    data["sections"]["qiosk"]["sources"].append("slow")
    data["delivery"] = {"provider": "outbox"}
    return write_toml(tmp_path / "pub.toml", data)


def _ephemeral_env(tmp_path: Path, mark: Mark) -> dict[str, str]:
    """This environment without a Prefect API (ephemeral mode), a Prefect home of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DIGEST__", "PREFECT_API_", "PREFECT__"))
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "DIGEST__SECRET_KEY": "orphans-test-key",
            # A first start creates Prefect's database: slow on a busy machine.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "150",
        }
    )
    return mark.env(env)


def _api_server(run: int) -> int | None:
    """The temporary API server under the run (Prefect marks it as an ephemeral server)."""
    for pid in descendants(run):
        if b"PREFECT__SERVER_EPHEMERAL=1" in environ(pid):
            return pid
    return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("when", ["server starting", "gathering"])
def test_kill_9_of_digest_run_leaves_no_prefect_server(
    tmp_path: Path, feed_server: FeedServer, when: str
) -> None:
    mark = Mark()
    config = _config(tmp_path, feed_server)
    run = subprocess.Popen(
        [sys.executable, "-m", "digest.cli", "run", "--config", str(config), "--now", NOW],
        cwd=tmp_path,
        env=_ephemeral_env(tmp_path, mark),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        server = None
        while server is None or (when == "gathering" and not feed_server.requests):
            assert run.poll() is None, run.stderr.read().decode() if run.stderr else ""
            assert time.monotonic() < deadline, f"no API server or no gathering (server {server})"
            server = server or _api_server(run.pid)
            time.sleep(0.02)
        assert run.poll() is None, "the run finished before it could be killed"
    except BaseException:
        run.kill()
        run.wait()
        mark.kill()
        raise
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    mark.assert_gone(within=5, what="processes of the killed `digest run`")


@pytest.mark.timeout(300)
def test_a_command_that_ends_stops_its_prefect_server(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    mark = Mark()
    config = _config(tmp_path, feed_server)
    done = subprocess.run(
        [sys.executable, "-m", "digest.cli", "gather", "--config", str(config), "-s", "analysis"],
        cwd=tmp_path,
        env=_ephemeral_env(tmp_path, mark),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "analysis: 10 articles, 10 new" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    # It said why it waits, and drew no progress bar (stderr is not a terminal).
    assert "Starting a temporary Prefect server" in done.stderr, done.stderr
    assert "━" not in done.stderr
    mark.assert_gone(within=0.5, what="processes of a finished `digest gather`")
