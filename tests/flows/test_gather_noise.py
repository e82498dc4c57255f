"""A gather whose article pages fail in many ways logs one line for the source, with counts;
each page is a debug line, and `digest sources` shows the counts and the pages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Prefect sets up its logging when first imported, dropping the handlers it finds: import it
# before a test's log capture starts.
import flows.gather  # noqa: F401
from digest.cli import app
from tests.conftest import base_config, write_toml
from tests.servers import FeedServer, noisy_feed, stub_resolver

pytestmark = pytest.mark.flows


def test_digest_gather_logs_one_line_per_source_with_counts(
    tmp_path: Path,
    feed_server: FeedServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from digest.gather.http import Fetcher
    from digest.steps import gather

    noisy_feed(feed_server)
    data = base_config(tmp_path / "var")
    data["sources"]["noisy"] = {"url": f"{feed_server.base}/noisy.xml", "local": True}
    data["sections"]["qiosk"]["sources"] = ["noisy"]
    data["http"] = {"retries": 0}
    cfg = write_toml(tmp_path / "pub.toml", data)
    # No DNS: the host the feed links to does not resolve, loopback resolves to itself.
    monkeypatch.setattr(gather, "make_fetcher", lambda s: Fetcher(s.http, resolver=stub_resolver))
    caplog.set_level(logging.DEBUG, logger="prefect.flow_runs")

    result = CliRunner().invoke(app, ["gather", "--config", str(cfg), "-s", "qiosk"])
    assert result.exit_code == 0, result.output
    assert "qiosk: 8 articles, 8 new" in result.output

    mine = [r for r in caplog.records if "noisy" in r.getMessage()]
    warnings = [r.getMessage() for r in mine if r.levelno >= logging.WARNING]
    assert warnings == [
        "source 'noisy': 8 articles, 8 new; 7 article pages not read (cannot resolve host: 3, "
        "HTTP 404: 2, HTTP 500: 1, no article text: 1)"
    ]
    # Each page not read is a debug line that follows the source's line.
    details = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG and r.getMessage().startswith("article page")
    ]
    assert len(details) == 7, details
    for line in (r.getMessage() for r in caplog.records):
        assert "source 'noisy': source 'noisy'" not in line
        url = next((w.rstrip(":") for w in line.split() if w.startswith("http")), None)
        assert url is None or line.count(url + ":") <= 1, line

    shown = CliRunner().invoke(
        app, ["sources", "--details", "--config", str(cfg)], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "noisy: ok (warnings)" in shown.output
    assert warnings[0].split("; ", 1)[1] in shown.output
    assert f"article page {feed_server.base}/pages/gone-1.html: HTTP 404" in shown.output
