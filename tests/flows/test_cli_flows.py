"""The commands that run flows: `digest run`, `digest gather`, `digest preview`, deployments."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.store import Store
from tests.conftest import SAMPLE

pytestmark = pytest.mark.flows
runner = CliRunner()
NOW = "2026-11-30T14:00:00Z"


@pytest.fixture
def example(example_config: Path) -> Path:
    """The bundled example publication with its sample subscribers imported."""
    cfg = example_config
    result = runner.invoke(
        app, ["subscribers", "import", str(SAMPLE / "subscribers.csv"), "--config", str(cfg)]
    )
    assert result.exit_code == 0, result.output
    return cfg


def test_demo_run_prints_the_summary_and_fills_the_outbox(example: Path) -> None:
    result = runner.invoke(app, ["run", "--config", str(example), "--now", NOW])
    assert result.exit_code == 0, result.output
    out = result.output
    for line in (
        "diplomacy-watch",
        "qiosk",
        "analysis",
        "Edition      weekly-2026-W49",
        "Items        15",
        "Recipients   12",
        "Submitted    12 in all, 12 this run",
        "Failed       0",
        "Preview",
    ):
        assert line in out, line
    outbox = load_settings(example).outbox_path / "weekly-2026-W49"
    assert len(list(outbox.glob("*.eml"))) == 12
    assert (outbox / "index.html").stat().st_size > 10_000
    # Again: nothing new is sent.
    again = runner.invoke(app, ["run", "--config", str(example), "--now", NOW])
    assert again.exit_code == 0 and "12 in all, 0 this run" in again.output


def test_dry_run_and_preview_record_nothing(example: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--config", str(example), "--now", NOW, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "12 this run" in result.output
    settings = load_settings(example)
    store = Store.open(settings.database_url)
    assert store.count_articles() == 0
    nothing = runner.invoke(
        app, ["preview", "--out", str(tmp_path / "p"), "--config", str(example), "--now", NOW]
    )
    assert nothing.exit_code == 0 and "digest gather" in nothing.output

    gathered = runner.invoke(app, ["gather", "--config", str(example), "--now", NOW])
    assert gathered.exit_code == 0, gathered.output
    assert "qiosk: 12 articles, 12 new" in gathered.output
    out = tmp_path / "preview"
    result = runner.invoke(
        app, ["preview", "--out", str(out), "--config", str(example), "--now", NOW]
    )
    assert result.exit_code == 0, result.output
    assert "weekly-2026-W49" in result.output
    assert {p.name for p in out.iterdir()} == {"index.html", "digest.txt", "sample.eml"}
    msg = email.message_from_bytes((out / "sample.eml").read_bytes(), policy=email.policy.default)
    assert msg["Subject"].startswith("The Weekly Dispatch: ")
    assert store.edition("weekly-2026-W49") is None
    assert store.delivery_counts("weekly-2026-W49")["pending"] == 0
    store.close()


def test_deployments_follow_the_config(example: Path) -> None:
    from flows.deployments import build_deployments

    deployments = {d.name: d for d in build_deployments(load_settings(example), str(example))}
    assert set(deployments) == {
        "gather-diplomacy-watch",
        "gather-qiosk",
        "gather-analysis",
        "edition-weekly",
        "deliver-shard",
    }
    (schedule,) = deployments["edition-weekly"].schedules
    assert schedule.schedule.cron == "0 7 * * MON"
    assert schedule.schedule.timezone == "America/New_York"
    assert deployments["edition-weekly"].parameters == {
        "config": str(example.resolve()),
        "digest": "weekly",
    }
    (hourly,) = deployments["gather-qiosk"].schedules
    assert hourly.schedule.cron == "0 * * * *"


def test_after_a_crash_the_rerun_says_what_it_sent(example: Path) -> None:
    from digest.steps.compose import approve, compose
    from tests.steps.world import crash_mid_send

    gathered = runner.invoke(app, ["gather", "--config", str(example), "--now", NOW])
    assert gathered.exit_code == 0, gathered.output
    settings = load_settings(example)
    store = Store.open(settings.database_url)
    composed = compose(settings, store, "weekly", now=datetime.fromisoformat(NOW))
    assert composed.edition is not None
    edition = approve(store, composed.edition, now=datetime.fromisoformat(NOW))
    crash_mid_send(settings, store, edition, sent=5)
    store.close()
    outbox = settings.outbox_path / edition.id
    assert len(list(outbox.glob("*.eml"))) == 5

    result = runner.invoke(app, ["run", "--config", str(example), "--now", NOW])
    assert result.exit_code == 0, result.output
    assert len(list(outbox.glob("*.eml"))) == 12  # the rerun wrote 7
    line = "Submitted    12 in all, 7 this run, 5 by an interrupted run (from its journals)"
    assert line in result.output, result.output
