"""What operators watch: ``sources`` (each source's health), ``status`` (the last editions,
the sources, the last flow runs) and ``stats`` (what readers clicked in an edition)."""

from __future__ import annotations

import os
import textwrap
from typing import Annotated

import typer

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    app,
    fail,
    out,
    quiet_prefect,
    settings_from,
    store_for,
    when_text,
)
from digest.models import edition_state


@app.command()
def sources(
    config: ConfigOpt = DEFAULT_CONFIG,
    details: Annotated[
        bool,
        typer.Option(
            "--details", help="Every line of each last error or warning (each page not read)."
        ),
    ] = False,
) -> None:
    """Each source's health: state, last success, failures in a row, last error or what the
    last gather left out (article pages not read, feed warnings). Exits 1 while one fails."""
    settings = settings_from(config)
    with store_for(settings) as store:
        states = {s.key: s for s in store.source_states()}
    out.print("Sources")
    unhealthy = False
    for key in settings.sources:
        state = states.get(key)
        if state is None:
            _line(f"  {key}: never fetched")
            continue
        failures = state.consecutive_failures
        unhealthy |= failures > 0
        when = f"{state.last_success_at:%Y-%m-%d %H:%M} UTC" if state.last_success_at else "never"
        head = f"FAILING ({failures} in a row)" if failures else "ok"
        if state.note:
            head += " (warnings)"
        _line(f"  {key}: {head}, last success {when}")
        if details:
            sections = [k for k, sec in settings.sections.items() if key in sec.sources]
            out.print(f"    sections: {', '.join(sections) or '-'}; url: {state.url}")
        text = state.last_error or ""
        if not text:
            continue
        lines = text.splitlines()
        stamp = f"{state.last_error_at:%Y-%m-%d %H:%M} UTC: " if state.last_error_at else ""
        label = "last error" if failures else "last warning"
        # The source's own URL is known (--details shows it): the reason comes first.
        _line(f"    {label} {stamp}{lines[0].removeprefix(f'{state.url}: ')}")
        if details:
            for more in lines[1:]:
                out.print(f"      {more}")
        elif len(lines) > 1:
            _line(f"    … {len(lines) - 1} more line(s): digest sources --details")
    if unhealthy:
        raise typer.Exit(1)


def _line(text: str) -> None:
    """One line, cut with an ellipsis to the terminal's width (80 columns when not a
    terminal) rather than wrapped."""
    out.print(text, no_wrap=True, overflow="ellipsis", crop=True)


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes} min {secs:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def _print_flow_runs(limit: int) -> None:
    """The last runs of this project's flows on the Prefect server at PREFECT_API_URL."""
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        out.print("Flow runs: not shown (PREFECT_API_URL is not set).")
        return
    quiet_prefect()
    from flows.monitoring import recent_runs

    try:
        runs = recent_runs(url, limit)
    except Exception as e:  # an unreachable server is a note, not a failure of the command
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        out.print(f"Flow runs: the Prefect API at {url} did not answer ({reason}).", soft_wrap=True)
        return
    if not runs:
        out.print(f"Flow runs: none yet on {url}.", soft_wrap=True)
        return
    out.print(f"Flow runs ({url})", soft_wrap=True)
    for r in runs:
        out.print(
            f"  {when_text(r.started)}  {r.name}  [{r.state}]  {_duration_text(r.seconds)}"
            f"  ({r.flow})",
            soft_wrap=True,
        )
        if r.failure:
            for line in _failure_lines(r.failure):
                out.print(line, soft_wrap=True)


def _failure_lines(message: str, width: int = 80) -> list[str]:
    """A failed run's message under its line: indented, wrapped within ``width`` columns (a
    long URL or word is broken rather than overflowing), at most a few lines."""
    return textwrap.wrap(
        " ".join(message.split()),
        width=width,
        initial_indent="    ",
        subsequent_indent="    ",
        break_on_hyphens=False,
        max_lines=6,
        placeholder=" …",
    )


@app.command()
def status(
    config: ConfigOpt = DEFAULT_CONFIG,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="How many editions and flow runs.")
    ] = 5,
) -> None:
    """What operators watch: the last editions with their delivery counts, each source's
    health, and (with PREFECT_API_URL set) the last flow runs with state and duration."""
    settings = settings_from(config)
    with store_for(settings) as store:
        editions = store.last_editions(limit)
        counts = {e["id"]: store.delivery_counts(e["id"]) for e in editions}
        states = {s.key: s for s in store.source_states()}
    out.print("Editions" if editions else "Editions: none yet.")
    for e in editions:
        c = counts[e["id"]]
        # Recipients: every ledger row meant to be sent (all but the skipped ones).
        meant = c["pending"] + c["sending"] + c["submitted"] + c["failed"]
        out.print(
            f"  {e['id']}  [{edition_state(e['status'])}]  {when_text(e['created_at'])}: "
            f"{meant} recipients, "
            f"{c['submitted']} submitted, {c['failed']} failed, "
            f"{c['pending'] + c['sending']} pending",
            soft_wrap=True,
        )
    out.print("Sources")
    for key in settings.sources:
        state = states.get(key)
        if state is None:
            line = "never fetched"
        elif state.consecutive_failures:
            line = (
                f"FAILING ({state.consecutive_failures} in a row) since "
                f"{when_text(state.last_error_at)}: {state.last_error}"
            )
        else:
            line = f"ok, last success {when_text(state.last_success_at)}"
        out.print(f"  {key}: {line}", soft_wrap=True)
    _print_flow_runs(limit)


@app.command()
def stats(
    edition: Annotated[str, typer.Argument(help="The edition's id, e.g. weekly-2026-W49.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """What readers clicked in an edition: its articles ranked by clicks, and the clicks per
    recipient of each section (counted without recording who clicked)."""
    from digest.steps.stats import clicks_lines, edition_clicks

    settings = settings_from(config)
    with store_for(settings) as store:
        found = edition_clicks(settings, store, edition)
    if found is None:
        raise fail(f"stats: no edition {edition!r}; `digest status` lists the last ones", 2)
    for line in clicks_lines(found):
        out.print(line)
