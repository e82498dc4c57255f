"""`digest subscribers import` and `export` of long lists: memory that does not grow with the
list, a progress bar on a terminal only, problems kept to a readable number, a file that is not
text refused before anything is written."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from tests.cli.test_subscribers_cli import make_config

runner = CliRunner()


def write_list(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,sections\n")
        for i in range(rows):
            f.write(f"reader{i}@example.org,Reader {i} of the list,{'qiosk' * (i % 2)}\n")
    return path


def peak_bytes(cfg: Path, list_path: Path, export_path: Path) -> int:
    """The peak of Python's allocations while the list is imported, then exported."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = runner.invoke(app, ["subscribers", "import", str(list_path), "-c", str(cfg)])
        assert result.exit_code == 0, result.output
        result = runner.invoke(
            app, ["subscribers", "export", "--out", str(export_path), "-c", str(cfg)]
        )
        assert result.exit_code == 0, result.output
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.steps import imports
    from digest.store import imports as store_imports

    # Chunks and pages smaller than either list: what is held at once is one of them.
    monkeypatch.setattr(imports, "CHUNK", 500)
    monkeypatch.setattr(store_imports, "EXPORT_PAGE", 500)
    # Once first, so that the modules the commands import are not counted.
    peak_bytes(
        make_config(tmp_path / "warm"), write_list(tmp_path / "warm.csv", 10), tmp_path / "w"
    )
    peaks = {}
    for rows in (1_000, 10_000):
        cfg = make_config(tmp_path / f"pub{rows}")
        list_path = write_list(tmp_path / f"list{rows}.csv", rows)
        export_path = tmp_path / f"export{rows}.csv"
        peaks[rows] = peak_bytes(cfg, list_path, export_path)
        assert export_path.read_text(encoding="utf-8").count("\n") == rows + 1
    # Ten times the rows: about the same peak (one chunk at a time), not ten times it.
    assert peaks[10_000] < 2 * peaks[1_000], peaks


def test_a_progress_bar_shows_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from digest.cli import common
    from digest.steps import imports

    monkeypatch.setattr(imports, "CHUNK", 500)
    list_path = write_list(tmp_path / "list.csv", 2_000)
    shown: dict[bool, str] = {}
    for terminal in (True, False):
        screen = io.StringIO()
        monkeypatch.setattr(common, "err", Console(file=screen, force_terminal=terminal))
        cfg = make_config(tmp_path / f"pub-{terminal}")
        result = runner.invoke(app, ["subscribers", "import", str(list_path), "-c", str(cfg)])
        assert result.exit_code == 0, result.output
        assert "2000 data line(s): 2000 added" in result.output
        shown[terminal] = screen.getvalue()
    assert "import list.csv" in shown[True] and "/2001" in shown[True] and "/s" in shown[True]
    assert shown[False] == ""


def test_past_a_hundred_problems_the_rest_are_counted(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "pub")
    path = tmp_path / "bad.csv"
    path.write_text("email\n" + "".join(f"bad-{i}\nok{i}@example.org\n" for i in range(150)))
    result = runner.invoke(app, ["subscribers", "import", str(path), "-c", str(cfg)])
    assert result.exit_code == 1
    assert result.output.count("bad.csv:") == 101  # 100 problems and one line for the rest
    assert "bad.csv:100: 'bad-49'" in result.output  # a line number, not an emoji
    assert "bad.csv:2: 'bad-0'" in result.output and "bad.csv:200: 'bad-99'" in result.output
    assert "bad.csv: 50 more rejected line(s) not shown" in result.output
    assert "300 data line(s): 150 added" in result.output and "150 rejected" in result.output


def test_a_file_that_is_not_utf8_is_refused_before_any_row(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "pub")
    path = tmp_path / "latin1.csv"
    good = "".join(f"r{i}@example.org\n" for i in range(20_000)).encode()
    path.write_bytes(b"email\n" + good + "Zo\xeb@example.org\n".encode("latin-1"))
    result = runner.invoke(app, ["subscribers", "import", str(path), "-c", str(cfg)])
    assert result.exit_code == 2
    assert "latin1.csv: cannot read: line 20002 is not UTF-8 text" in " ".join(
        result.output.split()
    )
    listed = runner.invoke(app, ["subscribers", "list", "-c", str(cfg)])
    assert listed.output.strip().endswith("0 subscriber(s)")
