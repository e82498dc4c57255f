"""Progress bars on stderr while steps run in the command's process, on a terminal only."""

from __future__ import annotations


def test_progress_bars_show_on_a_terminal_only(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    from digest.cli import common
    from digest.steps.progress import Progress, report_progress

    shown: dict[bool, str] = {}
    for terminal in (True, False):
        screen = io.StringIO()
        monkeypatch.setattr(common, "err", Console(file=screen, force_terminal=terminal))
        with common.progress_bars():
            report_progress(None, Progress("deliver weekly-2026-W49", 250, 1000, failed=2))
        shown[terminal] = screen.getvalue()
    assert "deliver weekly-2026-W49" in shown[True] and "250/1000" in shown[True]
    assert "2 failed" in shown[True] and "/s" in shown[True]
    assert shown[False] == ""
