"""The command line: user errors exit 2 with the file and key, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from digest.cli import app
from tests.conftest import ROOT, SAMPLE

runner = CliRunner()


def test_config_check_ok() -> None:
    result = runner.invoke(app, ["config", "check", str(ROOT / "config" / "example.toml")])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "3 sections" in result.output


def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "pub.toml"
    bad.write_text(
        (ROOT / "config" / "example.toml")
        .read_text()
        .replace('lang = "en"', 'lang = "en"\nlogo = 1')
    )
    proc = subprocess.run(
        [sys.executable, "-m", "digest.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "publication.logo" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unknown_digest_and_bad_now_exit_2() -> None:
    cfg = str(ROOT / "config" / "example.toml")
    result = runner.invoke(app, ["run", "--config", cfg, "--digest", "daily"])
    assert result.exit_code == 2 and "no digest 'daily'" in result.output
    result = runner.invoke(app, ["run", "--config", cfg, "--now", "next tuesday"])
    assert result.exit_code == 2 and "--now" in result.output


def test_schema_is_json() -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert "digests" in json.loads(result.output)["properties"]


def test_subscribers_import_reports_bad_rows(example_config: Path, tmp_path: Path) -> None:
    cfg = example_config
    result = runner.invoke(
        app, ["subscribers", "import", str(SAMPLE / "subscribers.csv"), "--config", str(cfg)]
    )
    assert result.exit_code == 0, result.output
    assert "12 added" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,sections\nnope,X,\nnew@example.org,New,\n")
    result = runner.invoke(app, ["subscribers", "import", str(bad), "--config", str(cfg)])
    # The good rows are imported; the bad one is reported with its line, and the exit code
    # says something needs looking at.
    assert result.exit_code == 1
    assert "bad.csv:2" in result.output and "1 added" in result.output


def test_help_does_not_import_prefect() -> None:
    code = "import sys; from digest.cli import app; print('prefect' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.stdout.strip() == "False"


def _command_paths() -> list[list[str]]:
    """Every command and group of the app, as the words typed before ``--help``."""
    import typer.main

    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_help_shows_no_type_beside_flags() -> None:
    paths = _command_paths()
    assert ["run"] in paths and ["edition", "show"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        assert "--help" in result.output
        assert "<bool>" not in result.output, (path, result.output)
    run_help = runner.invoke(app, ["run", "--help"], terminal_width=100).output
    assert "<file>" in run_help  # options that take a value still say what it is
