"""A store that cannot be opened (a corrupt database file, a data_dir that cannot be made) is one
clear line and exit code 2 from every command, never a traceback, and the file is left as it
was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from tests.conftest import SAMPLE, base_config, write_toml

runner = CliRunner()
NOW = "2026-11-30T12:00:00Z"


def commands(cfg: Path) -> dict[str, list[str]]:
    c = ["--config", str(cfg)]
    return {
        "status": ["status", *c],
        "import": ["subscribers", "import", str(SAMPLE / "subscribers.csv"), *c],
        "list": ["subscribers", "list", *c],
        "edition show": ["edition", "show", *c, "--now", NOW],
        "run": ["run", *c, "--now", NOW],
        "gather": ["gather", *c, "--now", NOW],
    }


def config_with(tmp_path: Path, data_dir: str) -> Path:
    return write_toml(tmp_path / "pub.toml", base_config(Path(data_dir)))


def one_clear_line(args: list[str], *expected: str) -> str:
    result = runner.invoke(app, args)
    output = result.output
    assert result.exit_code == 2, (args, output, result.exception)
    assert "Traceback" not in output and isinstance(result.exception, SystemExit)
    message = " ".join(output.split())
    for text in expected:
        assert text in message, (args, message)
    assert "a retry will not help" in message
    return message


@pytest.mark.parametrize("command", ["status", "import", "list", "edition show", "run", "gather"])
def test_a_corrupt_database_file_is_named_and_left_untouched(tmp_path: Path, command: str) -> None:
    var = tmp_path / "var"
    var.mkdir()
    db = var / "digest.db"
    garbage = os.urandom(64 * 1024)
    db.write_bytes(garbage)
    cfg = config_with(tmp_path, str(var))
    message = one_clear_line(commands(cfg)[command], str(db), "not a SQLite database")
    assert "backup" in message and "move it away" in message
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in var.iterdir()) == ["digest.db"]


@pytest.mark.parametrize("command", ["status", "import", "run"])
def test_a_data_dir_below_a_regular_file(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder\n")
    cfg = config_with(tmp_path, str(blocker / "var"))
    one_clear_line(commands(cfg)[command], str(blocker / "var"), f"{blocker} is a file", "data_dir")
    assert blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", ["status", "import", "run"])
def test_a_data_dir_that_cannot_be_created(tmp_path: Path, command: str) -> None:
    cfg = config_with(tmp_path, "/proc/digest-test/var")
    one_clear_line(commands(cfg)[command], "/proc/digest-test/var", "data_dir")


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("")
    cfg = config_with(tmp_path, str(blocker))
    one_clear_line(commands(cfg)["status"], str(blocker), "is a file", "data_dir")


def test_a_database_path_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "var" / "digest.db").mkdir(parents=True)
    cfg = config_with(tmp_path, str(tmp_path / "var"))
    one_clear_line(commands(cfg)["status"], str(tmp_path / "var" / "digest.db"), "cannot open")
