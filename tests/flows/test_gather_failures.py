"""A section whose every source fails makes its gather flow fail (so the alert automation,
which matches failed runs, fires) and `digest run` exit non-zero; a section with at least one
working source is a success with a warning."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from digest.cli import app
from tests.conftest import base_config, write_toml
from tests.servers import FeedServer

pytestmark = pytest.mark.flows

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def write_config(tmp_path: Path, server: FeedServer, qiosk: list[str]) -> Path:
    data = base_config(tmp_path / "var")
    data["sources"] = {
        "diplomacy-watch": {"url": f"{server.base}/diplomacy-watch.xml", "local": True},
        "qiosk": {"url": f"{server.base}/qiosk.xml", "local": True},
        "analysis": {"url": f"{server.base}/analysis.atom", "local": True},
        "broken": {"url": f"{server.base}/broken.xml", "local": True},
        "gone": {"url": f"{server.base}/gone.xml", "local": True},
    }
    data["sections"]["qiosk"]["sources"] = qiosk
    data["http"] = {"retries": 0}
    return write_toml(tmp_path / "pub.toml", data)


def run_logs(flow_run_id: UUID | None, level: int) -> list[str]:
    """The messages a flow run logged at ``level`` (sent to the API in the background)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

    wanted = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[flow_run_id] if flow_run_id else []),
        level=LogFilterLevel(ge_=level, le_=level),
    )
    deadline = time.monotonic() + 10
    with get_client(sync_client=True) as client:
        while True:
            found = [log.message for log in client.read_logs(log_filter=wanted)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def gather_qiosk(tmp_path: Path, server: FeedServer, sources: list[str]) -> Any:
    """The final state of a gather run of the qiosk section fed by ``sources``."""
    from flows.gather import gather_section_flow

    cfg = write_config(tmp_path, server, sources)
    return gather_section_flow(str(cfg), "qiosk", NOW, return_state=True)


def test_a_section_without_a_working_source_fails_its_gather_flow(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    state = gather_qiosk(tmp_path, feed_server, ["broken", "gone"])
    assert state.is_failed(), state
    message = state.message or ""
    assert "section 'qiosk'" in message and "no working source" in message
    assert "broken" in message and "HTTP 500" in message and "/broken.xml" in message
    assert "gone" in message and "HTTP 404" in message
    # What it gathered is still the flow's result (the run flow's summary table uses it).
    result = state.result(raise_on_failure=False)
    assert result["section"] == "qiosk" and result["no_working_source"]
    assert len(result["failed"]) == 2


def test_a_section_with_one_working_source_completes_with_a_warning(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    state = gather_qiosk(tmp_path, feed_server, ["qiosk", "broken"])
    assert state.is_completed(), state
    result = state.result()
    assert result["articles"] == 12 and not result["no_working_source"]
    assert [f.split(":")[0] for f in result["failed"]] == ["broken"]
    # The run's log carries the warning.
    warnings = run_logs(state.state_details.flow_run_id, logging.WARNING)
    assert any("section 'qiosk': 1 of 2 source(s) failed" in m for m in warnings), warnings


def test_digest_run_exits_non_zero_when_a_section_had_no_working_source(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    cfg = write_config(tmp_path, feed_server, ["broken"])
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--now", "2026-11-30T14:00:00Z"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    # The other sections still made the edition; the summary says which section had nothing.
    assert "Edition weekly-2026-W49" in text
    assert "no working source: broken" in text and "broken.xml" in text
    assert "Section 'qiosk' had no working source" in text
