"""What a command that runs flows says while it waits: that a temporary Prefect server is
starting (only when one does), and progress bars on stderr only when stderr is a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.cli.common import STARTING_SERVER
from tests.conftest import base_config, write_toml

pytestmark = pytest.mark.flows


class _HarnessServer:
    """Stands in for the temporary server: the test harness's API, already running."""

    url = ""
    started = 0

    def __init__(self, env: dict[str, str], timeout: float) -> None:
        type(self).started += 1

    def stop(self) -> None:
        pass


def test_digest_gather_says_a_temporary_server_is_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.settings

    from flows import temporary_api

    cfg = write_toml(tmp_path / "pub.toml", base_config(tmp_path / "var"))
    runner = CliRunner()

    # With an API configured (the harness's), nothing starts and nothing is said.
    configured = runner.invoke(app, ["gather", "--config", str(cfg), "-s", "analysis"])
    assert configured.exit_code == 0, configured.output
    assert "temporary Prefect server" not in configured.output

    # Without one, a temporary server starts (here: the harness's API stands in for it).
    real = prefect.settings.get_current_settings()
    _HarnessServer.url = str(real.api.url)

    def without_api() -> Any:
        return real.model_copy(update={"api": real.api.model_copy(update={"url": None})})

    monkeypatch.setattr(prefect.settings, "get_current_settings", without_api)
    monkeypatch.setattr(temporary_api, "_Server", _HarnessServer)
    started = runner.invoke(app, ["gather", "--config", str(cfg), "-s", "analysis"])
    assert started.exit_code == 0, started.output
    assert _HarnessServer.started == 1
    assert STARTING_SERVER in started.output
    assert "set PREFECT_API_URL to use yours" in started.output
    assert "analysis: 10 articles" in started.output
    # No terminal here: no progress bars in the output.
    assert "━" not in started.output and "\r" not in started.output
