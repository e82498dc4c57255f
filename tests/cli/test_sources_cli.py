"""`digest sources` fits an 80-column terminal: two lines per source at most (the state, then
the last error or warning, cut with an ellipsis); `--details` shows every line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.factory import open_store
from tests.conftest import base_config, write_toml

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
LONG_URL = "https://feeds.example-publication.org/sections/diplomacy-watch/latest/rss.xml"


def test_sources_fit_80_columns_with_the_key_facts(tmp_path: Path) -> None:
    data = base_config(tmp_path / "var")
    data["sources"]["diplomacy-watch"] = {"url": LONG_URL}
    data["sources"]["qiosk-and-the-world-brief"] = data["sources"].pop("qiosk")
    data["sections"]["qiosk"]["sources"] = ["qiosk-and-the-world-brief"]
    cfg = write_toml(tmp_path / "pub.toml", data)
    settings = load_settings(cfg)
    store = open_store(settings)
    try:
        store.record_fetch_success(
            "diplomacy-watch", LONG_URL, etag=None, last_modified=None, now=NOW - timedelta(1)
        )
        for _ in range(3):
            store.record_fetch_failure(
                "diplomacy-watch",
                LONG_URL,
                error=f"{LONG_URL}: cannot resolve 'feeds.example-publication.org' "
                "([Errno -2] Name or service not known) (a retry may help)",
                now=NOW,
            )
        pages = [f"article page https://example.org/{n}: HTTP 404" for n in range(12)]
        store.record_fetch_success(
            "qiosk-and-the-world-brief",
            "file:///qiosk.xml",
            etag=None,
            last_modified=None,
            now=NOW,
            note="\n".join(["12 article pages not read (HTTP 404: 12)", *pages]),
        )
    finally:
        store.close()

    result = CliRunner().invoke(app, ["sources", "--config", str(cfg)], env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output  # one source is failing
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    text = result.output
    assert "diplomacy-watch: FAILING (3 in a row), last success 2026-11-29 14:00 UTC" in text
    assert "last error 2026-11-30 14:00 UTC: cannot resolve 'feeds.example-publication" in text
    assert "…" in text  # the long error is cut, not wrapped
    assert "qiosk-and-the-world-brief: ok (warnings), last success 2026-11-30 14:00 UTC" in text
    assert "last warning 2026-11-30 14:00 UTC: 12 article pages not read (HTTP 404: 12)" in text
    assert "12 more line(s): digest sources --details" in text
    assert "analysis: never fetched" in text
    assert len(lines) == 1 + 2 + 3 + 1

    detailed = CliRunner().invoke(
        app, ["sources", "--details", "--config", str(cfg)], env={"COLUMNS": "80"}
    )
    assert all(p in detailed.output for p in pages), detailed.output
    assert "sections: qiosk; url: file:///qiosk.xml" in detailed.output
    assert max(len(line) for line in detailed.output.splitlines()) <= 80
