"""`digest status`: the last editions with their delivery counts, the sources' health, and
the flow runs when a Prefect API is configured."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.factory import make_fetcher, open_store
from digest.models import EditionAction, EditionStatus, SendResult, SendStatus
from digest.steps.compose import approve, compose
from digest.steps.gather import gather_source
from tests.conftest import SAMPLE

runner = CliRunner()
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


@pytest.fixture
def delivered(example_config: Path) -> Path:
    """The example publication with the week's edition half delivered: 12 subscribers in the
    ledger, 9 submitted, 1 failed for good, 2 pending. No Prefect involved."""
    cfg = example_config
    imported = runner.invoke(
        app, ["subscribers", "import", str(SAMPLE / "subscribers.csv"), "--config", str(cfg)]
    )
    assert imported.exit_code == 0, imported.output
    settings = load_settings(cfg)
    store = open_store(settings)
    try:
        with make_fetcher(settings) as fetcher:
            for key in settings.sources:
                gather_source(settings, store, fetcher, key, now=NOW)
        edition = compose(settings, store, "weekly", now=NOW).edition
        assert edition is not None
        edition = approve(store, edition, now=NOW)
        people = store.active_subscribers("weekly")
        assert len(people) == 12
        store.create_deliveries(edition.id, [p.id for p in people], now=NOW)
        store.change_edition_status(edition.id, EditionAction.START_SENDING, now=NOW)
        claimed = store.claim_batch(edition.id, 10, now=NOW)
        results = {
            c.delivery_id: SendResult(key=str(c.delivery_id), status=SendStatus.SUBMITTED)
            for c in claimed[:9]
        }
        results[claimed[9].delivery_id] = SendResult(
            key="x", status=SendStatus.PERMANENT, reason="550 rejected by policy"
        )
        store.mark_results(results, now=NOW)
    finally:
        store.close()
    return cfg


def test_status_shows_editions_counts_and_sources(
    delivered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, ["status", "--config", str(delivered)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "weekly-2026-W49  [sending]  2026-11-30 14:00:00 UTC: 12 recipients, 9 submitted, "
        "1 failed, 2 pending"
    ) in " ".join(out.split("\n"))
    for key in ("diplomacy-watch", "qiosk", "analysis"):
        assert f"  {key}: ok, last success 2026-11-30 14:00:00 UTC" in out
    assert "Flow runs: not shown (PREFECT_API_URL is not set)." in out


def test_status_on_an_empty_store_and_a_failing_source(
    example_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    settings = load_settings(example_config)
    store = open_store(settings)
    store.record_fetch_failure("qiosk", "sample/qiosk.xml", error="HTTP 500", now=NOW)
    store.close()
    result = runner.invoke(app, ["status", "--config", str(example_config)])
    assert result.exit_code == 0, result.output
    assert "Editions: none yet." in result.output
    assert "  diplomacy-watch: never fetched" in result.output
    assert "  qiosk: FAILING (1 in a row) since 2026-11-30 14:00:00 UTC: HTTP 500" in result.output


def test_status_limit_keeps_the_newest(delivered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    later = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    settings = load_settings(delivered)
    store = open_store(settings)
    week = store.edition("weekly-2026-W49")
    assert week is not None
    draft = week.model_copy(
        update={
            "id": "weekly-2026-W50",
            "period": "2026-W50",
            "created_at": later,
            "status": EditionStatus.DRAFT,
        }
    )
    store.save_edition(draft, now=later)
    store.close()
    both = runner.invoke(app, ["status", "--config", str(delivered)])
    assert both.exit_code == 0, both.output
    newest_first = [line.split()[0] for line in both.output.splitlines() if "[" in line]
    assert newest_first == ["weekly-2026-W50", "weekly-2026-W49"]
    assert "weekly-2026-W50  [draft]" in both.output and "0 recipients" in both.output
    one = runner.invoke(app, ["status", "--config", str(delivered), "--limit", "1"])
    assert one.exit_code == 0, one.output
    assert "weekly-2026-W50" in one.output and "weekly-2026-W49" not in one.output


def test_status_notes_an_unreachable_prefect_api(
    delivered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port on loopback that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    result = runner.invoke(app, ["status", "--config", str(delivered)])
    assert result.exit_code == 0, result.output
    assert "weekly-2026-W49" in result.output
    assert f"Flow runs: the Prefect API at {url} did not answer" in result.output
