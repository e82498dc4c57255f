"""What operators watch: each flow run's artifacts and name, `digest status` against the
Prefect API, and prefect.yaml for running the deployments on a work pool."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.models import DeliveryStatus
from digest.store import Store
from tests.conftest import ROOT, SAMPLE

pytestmark = pytest.mark.flows
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # Monday, ISO week 49 in New York
BASE = "https://news.example.org/digest"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of the digest-run flow on the example publication: its result, its flow runs
    (the run and its subflows) and their artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    from flows.pipeline import run_flow

    folder = tmp_path_factory.mktemp("monitoring") / "config"
    folder.mkdir()
    # The example as it is, with the web app's address set (for the preview link).
    text = (ROOT / "config" / "example.toml").read_text(encoding="utf-8")
    (folder / "example.toml").write_text(text + f'\n[web]\nbase_url = "{BASE}"\n', encoding="utf-8")
    (folder / "sample").symlink_to(SAMPLE)
    cfg = folder / "example.toml"
    imported = CliRunner().invoke(
        app, ["subscribers", "import", str(SAMPLE / "subscribers.csv"), "--config", str(cfg)]
    )
    assert imported.exit_code == 0, imported.output

    state = run_flow(str(cfg), "weekly", NOW, return_state=True)
    result = state.result()
    parent = state.state_details.flow_run_id
    assert parent is not None
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])
            )
        )
        runs = [client.read_flow_run(parent), *children]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs])
            )
        )
    yield {"config": cfg, "result": result, "runs": runs, "artifacts": artifacts}


def _by_key(artifacts: list[Any]) -> dict[str, Any]:
    keys = [a.key for a in artifacts]
    assert len(keys) == len(set(keys)), keys  # one of each per run
    return {a.key: a for a in artifacts}


def test_flow_runs_are_named_after_the_digest_and_the_edition(finished: dict[str, Any]) -> None:
    result = finished["result"]
    assert result["edition_id"] == "weekly-2026-W49"
    names = sorted(r.name for r in finished["runs"])
    assert names == [
        "digest-run-weekly-2026-W49",
        "edition-weekly-2026-W49",
        "gather-analysis-20261130T140000Z",
        "gather-diplomacy-watch-20261130T140000Z",
        "gather-qiosk-20261130T140000Z",
    ]


def test_gather_tables_have_one_row_per_source(finished: dict[str, Any]) -> None:
    artifacts = _by_key(finished["artifacts"])
    settings = load_settings(finished["config"])
    for a in artifacts.values():
        assert a.key and re.fullmatch(r"[a-z0-9-]+", a.key), a.key
    sections = {s["section"]: s for s in finished["result"]["sections"]}
    for key, section in settings.sections.items():
        table = artifacts[f"gather-{key}"]
        assert table.type == "table"
        rows = json.loads(table.data)
        assert [r["source"] for r in rows] == section.sources
        for row in rows:
            assert row["status"] == "ok" and row["error"] == ""
            assert row["new_in_feed"] == row["entries"] > 0  # a fresh store: every entry is new
        in_feeds = sum(r["new_in_feed"] for r in rows)
        in_section = sum(r["new_in_section"] for r in rows)
        assert in_section == sections[key]["new"] <= in_feeds
        # The description gives the table's counts in the table's words.
        assert table.description == (
            f"Section {key}: {len(rows)} source(s), 0 failed; new: {in_feeds} in the feeds, "
            f"{in_section} in the section"
        )
    # The example's Diplomacy Watch keeps only the roundups: 12 new entries, 10 for the section.
    rows = json.loads(artifacts["gather-diplomacy-watch"].data)
    assert [(r["new_in_feed"], r["new_in_section"]) for r in rows] == [(12, 10)]


def test_the_delivery_table_matches_the_ledger(finished: dict[str, Any]) -> None:
    result = finished["result"]
    artifacts = _by_key(finished["artifacts"])
    table = artifacts[f"delivery-{result['edition_id'].lower()}"]
    assert table.type == "table"
    (row,) = json.loads(table.data)
    store = Store.open(load_settings(finished["config"]).database_url)
    counts = store.delivery_counts(result["edition_id"])
    store.close()
    assert row["edition"] == result["edition_id"] and row["status"] == "sent"
    assert row["submitted"] == counts[DeliveryStatus.SUBMITTED.value] == 12
    assert row["submitted_this_run"] == 12 and row["recipients"] == 12
    assert row["failed_transient"] == counts["transient"] == 0
    assert row["failed_permanent"] == counts["permanent"] == 0
    assert row["failed_exhausted"] == counts["exhausted"] == 0
    assert row["skipped"] == counts[DeliveryStatus.SKIPPED.value]
    assert row["suppressed"] == 0
    assert row["elapsed_s"] >= 0 and row["messages_per_s"] >= 0


def test_the_edition_summary_gives_the_size_and_the_preview_link(
    finished: dict[str, Any],
) -> None:
    result = finished["result"]
    summary = _by_key(finished["artifacts"])[f"edition-{result['edition_id'].lower()}"]
    assert summary.type == "markdown"
    assert f"Edition `{result['edition_id']}`" in summary.data
    assert "HTML " in summary.data and " bytes" in summary.data
    assert f"{BASE}/editions/{result['edition_id']}" in summary.data


def test_a_dry_run_leaves_its_own_summary(finished: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.pipeline import edition_flow

    state = edition_flow(str(finished["config"]), "weekly", NOW, True, return_state=True)
    assert state.result()["dry_run"]
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).name == "edition-weekly-2026-W49"
        notes = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["edition-weekly-2026-w49-dry-run"])
            )
        )
    (note,) = [a for a in notes if a.flow_run_id == run_id]
    # Everyone already has the edition: a dry run now would send nobody anything.
    assert "nothing recorded" in note.data and "Would send to 0 recipient(s)" in note.data


def test_status_lists_the_runs_from_the_prefect_api(
    finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    out = CliRunner().invoke(app, ["status", "--config", str(finished["config"]), "-n", "50"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "weekly-2026-W49  [sent]" in text and "12 recipients, 12 submitted" in text
    assert "Flow runs" in text and "not shown" not in text
    for name in ("digest-run-weekly-2026-W49", "edition-weekly-2026-W49"):
        assert f"  {name}  [Completed]  " in text, name
    assert "gather-qiosk-20261130T140000Z  [Completed]" in text


# prefect.yaml ---------------------------------------------------------------------------------


def _flow_functions(path: Path) -> set[str]:
    """Functions of a module decorated with Prefect's ``@flow(...)``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                if isinstance(target, ast.Name) and target.id == "flow":
                    found.add(node.name)
    return found


def test_prefect_yaml_declares_the_example_deployments() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    data = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    PrefectYamlModel.model_validate(data)  # what `prefect deploy` reads it with
    deployments = {d["name"]: d for d in data["deployments"]}
    example = tomllib.loads((ROOT / "config" / "example.toml").read_text(encoding="utf-8"))
    settings = load_settings(ROOT / "config" / "example.toml")

    expected = {f"gather-{k}" for k in settings.sections} | {
        f"edition-{k}" for k in settings.digests
    }
    expected.add("deliver-shard")  # unscheduled: the shards of a fan-out (delivery.shards)
    assert set(deployments) == expected
    for d in deployments.values():
        path, func = d["entrypoint"].split(":")
        assert func in _flow_functions(ROOT / path), d["entrypoint"]
        assert d["work_pool"]["name"]
        assert (ROOT / d["parameters"]["config"]).resolve() == (
            ROOT / "config" / "example.toml"
        ).resolve()
    for key, section in settings.sections.items():
        d = deployments[f"gather-{key}"]
        assert d["entrypoint"] == "flows/pipeline.py:gather_section_flow"
        assert d["parameters"]["section"] == key
        assert d["schedules"] == [{"cron": section.gather_cron, "timezone": "UTC"}]
    for key in settings.digests:
        d = deployments[f"edition-{key}"]
        assert d["entrypoint"] == "flows/pipeline.py:edition_flow"
        assert d["parameters"]["digest"] == key
        schedule = example["digests"][key]["schedule"]
        assert d["schedules"] == [{"cron": schedule["cron"], "timezone": schedule["timezone"]}]


def test_prefect_yaml_matches_what_serve_builds() -> None:
    from flows.deployments import build_deployments

    data = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    declared = {
        d["name"]: (d["schedules"][0]["cron"], d["schedules"][0]["timezone"])
        if d.get("schedules")
        else None
        for d in data["deployments"]
    }
    cfg = ROOT / "config" / "example.toml"
    built = {
        d.name: (d.schedules[0].schedule.cron, d.schedules[0].schedule.timezone)
        if d.schedules
        else None
        for d in build_deployments(load_settings(cfg), str(cfg))
    }
    assert declared == built


def test_run_names_fall_back_to_the_date_without_a_readable_config() -> None:
    from flows.artifacts import artifact_key
    from flows.pipeline import run_edition_id

    assert run_edition_id("/nonexistent/pub.toml", "weekly", NOW) == "weekly-2026-11-30"
    assert artifact_key("gather", "Foreign_Affairs") == "gather-foreign-affairs"
    assert artifact_key("edition", "weekly-2026-W49") == "edition-weekly-2026-w49"


def test_status_gives_a_failed_runs_message_within_80_columns(
    finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow
    from prefect.settings import PREFECT_API_URL

    error = (
        "section 'diplomacy-watch': no working source, all 1 failed: diplomacy-watch: "
        "https://feeds.example.org/a-very-long-path/that-goes-on-and-on/without-any-break/"
        "feed.xml answered HTTP 503 (a retry may help)"
    )

    @flow(name="gather-section", flow_run_name="gather-diplomacy-watch-failing", retries=0)
    def failing() -> None:
        raise RuntimeError(error)

    assert failing(return_state=True).is_failed()
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    out = CliRunner().invoke(app, ["status", "--config", str(finished["config"]), "-n", "50"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "gather-diplomacy-watch-failing" in line]
    assert "[Failed]" in lines[at]
    below = []
    for line in lines[at + 1 :]:
        if not line.startswith("    "):
            break
        below.append(line)
    assert below and all(len(line) <= 80 for line in below), below
    said = " ".join(line.strip() for line in below)
    assert "RuntimeError: section 'diplomacy-watch': no working source" in said
    assert said.endswith("answered HTTP 503 (a retry may help)")  # all of it, nothing cut
    url = "https://feeds.example.org/a-very-long-path/that-goes-on-and-on/without-any-break/"
    assert url in "".join(line.strip() for line in below)  # a long URL is broken, not lost
    # Runs that did not fail carry no message.
    done = [i for i, line in enumerate(lines) if "  [Completed]  " in line]
    assert done and not any(lines[i + 1 : i + 2] and lines[i + 1].startswith("    ") for i in done)
