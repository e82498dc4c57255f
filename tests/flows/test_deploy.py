"""`digest deploy`: the config's deployments on a work pool, read back from the server; a
second deploy after the config changed updates and removes; deployments it did not make are
left alone; a dry run changes nothing; and a real `prefect worker` on another working
directory runs a deployed gather from the installed package."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from tests.conftest import ROOT, base_config, write_toml

pytestmark = pytest.mark.flows
runner = CliRunner()
MANAGED = "digest-managed"


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _deployments(tag: str | None = None) -> dict[str, Any]:
    """Every deployment on the server (those with ``tag``), by ``<flow>/<deployment>``."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    only = DeploymentFilter(tags=DeploymentFilterTags(all_=[tag])) if tag else None
    with _client() as client:
        found = client.read_deployments(deployment_filter=only)
        return {f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in found}


def _cron(d: Any) -> list[tuple[str, str | None, bool]]:
    return [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules]


@pytest.fixture(autouse=True)
def clean_server() -> Iterator[None]:
    """No deployment left from another test (the server is the session's)."""

    def clean() -> None:
        with _client() as client:
            for d in client.read_deployments():
                client.delete_deployment(d.id)

    clean()
    yield
    clean()


def _deploy(*args: str) -> Any:
    return runner.invoke(app, ["deploy", *args])


def _config(tmp_path: Path, name: str = "pub.toml", **changes: Any) -> Path:
    """The small test publication (three sections, one weekly digest) as a file."""
    data = base_config(tmp_path / "var")
    for section, cron in changes.get("crons", {}).items():
        data["sections"][section]["gather_cron"] = cron
    for section in changes.get("drop", ()):
        del data["sections"][section]
        data["digests"]["weekly"]["sections"].remove(section)
    return write_toml(tmp_path / name, data)


def test_deploy_makes_the_configs_deployments_on_a_new_process_pool(tmp_path: Path) -> None:
    from flows.deployments import build_deployments

    cfg = _config(tmp_path)
    result = _deploy("--pool", "digest-a", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert "Work pool digest-a: created (type process)." in result.output
    assert "create  gather-section/gather-qiosk" in result.output
    assert "5 created, 0 updated, 0 removed, 0 unchanged" in result.output
    assert f"config file at {cfg.resolve()}" in result.output

    with _client() as client:
        assert client.read_work_pool("digest-a").type == "process"
    deployed = _deployments()
    settings = load_settings(cfg)
    # Whatever build_deployments holds is deployed, and nothing else.
    assert set(deployed) == {
        f"{d.flow_name}/{d.name}" for d in build_deployments(settings, str(cfg))
    }
    for key, section in settings.sections.items():
        d = deployed[f"gather-section/gather-{key}"]
        assert d.entrypoint == "flows.gather.gather_section_flow"  # a module: no source pull
        assert d.pull_steps == [] and d.path is None
        assert d.parameters == {"config": str(cfg.resolve()), "section": key}
        assert _cron(d) == [(section.gather_cron, "UTC", True)]
        assert d.work_pool_name == "digest-a"
        assert set(d.tags) == {"gather", key, MANAGED}
    weekly = deployed["edition/edition-weekly"]
    assert weekly.entrypoint == "flows.pipeline.edition_flow"
    assert weekly.parameters == {"config": str(cfg.resolve()), "digest": "weekly"}
    assert _cron(weekly) == [("0 7 * * MON", "America/New_York", True)]
    assert weekly.work_pool_name == "digest-a"
    assert set(weekly.tags) == {"edition", "weekly", MANAGED}

    # Deploying the same config again changes nothing.
    again = _deploy("--pool", "digest-a", "--config", str(cfg))
    assert again.exit_code == 0, again.output
    assert "Work pool digest-a (type process)." in again.output
    assert "0 created, 0 updated, 0 removed, 5 unchanged" in again.output
    assert {n: d.updated for n, d in _deployments().items()} == {
        n: d.updated for n, d in deployed.items()
    }


def test_every_deployment_the_config_builds_imports_from_its_module(example_config: Path) -> None:
    """Whatever the list holds (a new flow's entry included) gets a module-path entrypoint
    that imports the flow it was built from: what a worker without the source does."""
    from prefect import Flow
    from prefect.utilities.importtools import import_object

    from flows.deployments import BY_MODULE, build_deployments, for_work_pool

    settings = load_settings(example_config)
    built = build_deployments(settings, str(example_config), entrypoint_type=BY_MODULE)
    flows = {d.name: d.flow_name for d in built}
    for d in for_work_pool(built, "pool"):
        assert ":" not in (d.entrypoint or "") and d.entrypoint.startswith("flows."), d.entrypoint
        flow = import_object(d.entrypoint)
        assert isinstance(flow, Flow) and flow.name == flows[d.name]
        assert d.work_pool_name == "pool" and MANAGED in d.tags


def test_a_changed_config_updates_and_removes_and_leaves_others_alone(tmp_path: Path) -> None:
    from flows.gather import gather_section_flow

    cfg = _config(tmp_path)
    assert _deploy("--pool", "digest-b", "--config", str(cfg)).exit_code == 0
    # A deployment made by hand, on the same pool and flow: not ours.
    by_hand = gather_section_flow.to_deployment(
        name="by-hand", parameters={"config": "/elsewhere.toml", "section": "analysis"}
    )
    by_hand.apply(work_pool_name="digest-b")
    before = _deployments()
    with _client() as client:  # paused by an operator: it stays paused
        client.pause_deployment(before["gather-section/gather-qiosk"].id)
    before = _deployments()

    changed = _config(tmp_path, "changed.toml", drop=["analysis"], crons={"qiosk": "*/30 * * * *"})
    dry = _deploy("--pool", "digest-b", "--config", str(changed), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would update  gather-section/gather-qiosk" in dry.output
    assert "schedules: 0 * * * * (UTC) -> */30 * * * * (UTC)" in dry.output
    assert "would remove  gather-section/gather-analysis" in dry.output
    assert "by-hand" not in dry.output
    assert "Dry run, nothing changed on the server: 0 to create, 4 to update, 1 to remove" in (
        dry.output
    )  # the config path changed too: every deployment of the new file is an update
    after_dry = _deployments()
    assert {n: (d.updated, d.parameters) for n, d in after_dry.items()} == {
        n: (d.updated, d.parameters) for n, d in before.items()
    }

    result = _deploy("--pool", "digest-b", "--config", str(changed))
    assert result.exit_code == 0, result.output
    assert "0 created, 4 updated, 1 removed, 0 unchanged" in result.output
    after = _deployments()
    assert set(after) == {
        "gather-section/gather-diplomacy-watch",
        "gather-section/gather-qiosk",
        "edition/edition-weekly",
        "deliver-shard/deliver-shard",
        "gather-section/by-hand",
    }
    assert _cron(after["gather-section/gather-qiosk"]) == [("*/30 * * * *", "UTC", True)]
    assert after["gather-section/gather-qiosk"].paused
    assert not after["gather-section/gather-diplomacy-watch"].paused
    assert after["gather-section/gather-qiosk"].parameters["config"] == str(changed.resolve())
    untouched = after["gather-section/by-hand"]
    assert untouched.updated == before["gather-section/by-hand"].updated
    assert untouched.parameters == {"config": "/elsewhere.toml", "section": "analysis"}


def test_a_deployment_of_the_same_name_not_made_by_deploy_is_refused(tmp_path: Path) -> None:
    from flows.gather import gather_section_flow

    gather_section_flow.to_deployment(
        name="gather-qiosk", parameters={"config": "/mine.toml", "section": "qiosk"}
    ).apply()
    cfg = _config(tmp_path)
    result = _deploy("--pool", "digest-c", "--config", str(cfg))
    assert result.exit_code == 2, result.output
    assert "deployment gather-section/gather-qiosk exists and was not made by `digest deploy`" in (
        result.output
    )
    assert "Traceback" not in result.output
    (only,) = _deployments().values()  # nothing else was made
    assert only.parameters["config"] == "/mine.toml" and MANAGED not in only.tags


def test_deploy_sets_up_the_alerts_as_serve_does(tmp_path: Path) -> None:
    from flows.alerts import DEFAULT_NAME

    cfg = _config(tmp_path)
    with cfg.open("a", encoding="utf-8") as f:
        f.write('\n[alerts]\nwebhook_url = "http://127.0.0.1:9/hooks/digest"\nformat = "discord"\n')
    dry = _deploy("--pool", "digest-g", "--config", str(cfg), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Alerts: would create or update the automation" in dry.output
    with _client() as client:
        assert client.read_automations_by_name(name=DEFAULT_NAME) == []
    try:
        result = _deploy("--pool", "digest-g", "--config", str(cfg))
        assert result.exit_code == 0, result.output
        assert "Alerts: failed or crashed runs call the webhook" in result.output
        assert "(discord format;" in result.output
        with _client() as client:
            (automation,) = client.read_automations_by_name(name=DEFAULT_NAME)
        assert '"content":' in automation.actions[0].payload  # type: ignore[union-attr]
    finally:
        with _client() as client:
            for a in client.read_automations_by_name(name=DEFAULT_NAME):
                client.delete_automation(automation_id=a.id)


def test_a_dry_run_on_a_new_pool_makes_nothing(tmp_path: Path) -> None:
    from prefect.exceptions import ObjectNotFound

    cfg = _config(tmp_path)
    result = _deploy("--pool", "digest-dry", "--config", str(cfg), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Work pool digest-dry: would create it (type process)." in result.output
    assert "would create  edition/edition-weekly" in result.output
    assert "5 to create" in result.output
    assert _deployments() == {}
    with _client() as client, pytest.raises(ObjectNotFound):
        client.read_work_pool("digest-dry")


def test_the_config_path_on_workers_is_the_runs_parameter(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    result = _deploy(
        "--pool",
        "digest-d",
        "--config",
        str(cfg),
        "--config-path-on-workers",
        "/etc/digest/pub.toml",
    )
    assert result.exit_code == 0, result.output
    assert "config file at /etc/digest/pub.toml" in result.output
    assert {d.parameters["config"] for d in _deployments().values()} == {"/etc/digest/pub.toml"}


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    cfg = _config(tmp_path)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        result = _deploy("--pool", "digest-e", "--config", str(cfg))
    assert result.exit_code == 1, result.output
    assert f"error: cannot reach the Prefect server at {url}" in result.output
    assert "a retry may help" in result.output
    assert "Traceback" not in result.output


def test_without_a_prefect_server_deploy_says_what_to_set(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    cfg = _config(tmp_path)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = _deploy("--pool", "digest-f", "--config", str(cfg))
    assert result.exit_code == 2, result.output
    assert "digest deploy needs a Prefect server: set PREFECT_API_URL" in result.output


def test_a_worker_elsewhere_runs_a_deployed_gather_from_the_installed_package(
    tmp_path: Path,
) -> None:
    """A real `prefect worker` (another process, its own empty working directory, as another
    host would have) picks up a run of a deployed gather and completes it."""
    from prefect.settings import get_current_settings

    from digest.store import Store

    cfg = _config(tmp_path)
    assert _deploy("--pool", "digest-w", "--config", str(cfg)).exit_code == 0
    with _client() as client:
        deployment = client.read_deployment_by_name("gather-section/gather-qiosk")
        run = client.create_flow_run_from_deployment(deployment.id)
    host = tmp_path / "worker-host"
    host.mkdir()
    env = {
        **os.environ,
        "PREFECT_API_URL": str(get_current_settings().api.url),
        # The package as installed: importable, not copied to the worker's directory.
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "digest-w", "--run-once"],
        cwd=host,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    deadline = time.monotonic() + 30
    with _client() as client:
        while True:
            state = client.read_flow_run(run.id).state
            if (state is not None and state.is_final()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert state is not None and state.is_completed(), (state, worker.stdout, worker.stderr)
    assert list(host.iterdir()) == []  # nothing pulled or written where the worker runs
    store = Store.open(load_settings(cfg).database_url)
    try:
        assert store.count_articles() == 12  # the qiosk sample feed's items
    finally:
        store.close()
