"""The commands that run the pipeline: ``run`` (gather, compose, render, deliver), ``gather`` and
``preview``. Prefect is imported only inside the commands that run flows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    DigestOpt,
    NowOpt,
    app,
    check_store,
    digest_key,
    fail,
    flows_api,
    out,
    parse_now,
    settings_from,
    store_for,
)
from digest.errors import DigestError
from digest.models import edition_state
from digest.steps import heap


def _print_summary(s: dict[str, Any]) -> None:
    if s.get("sections"):
        table = Table(title="Gathered", title_justify="left")
        for col in ("section", "articles", "new", "failed sources"):
            table.add_column(col)
        for sec in s["sections"]:
            failed = "; ".join(sec["failed"]) or "-"
            if sec.get("no_working_source"):
                failed = f"no working source: {failed}"
            table.add_row(sec["section"], str(sec["articles"]), str(sec["new"]), failed)
        out.print(table)
    if s.get("edition_id") is None:
        out.print(f"No edition: {s.get('message', '')}")
        return
    dry = " (dry run: nothing recorded, nothing sent)" if s.get("dry_run") else ""
    out.print(
        f"Edition      {s['edition_id']}  [{edition_state(s.get('edition_status', ''))}]{dry}"
    )
    out.print(f"Items        {s['items']}")
    out.print(
        f"Recipients   {s['recipients']}  (skipped, no news in their sections: {s['skipped']})"
    )
    recovered = s.get("recovered", 0)
    out.print(
        f"Submitted    {s['submitted']} in all, {s['submitted_now']} this run"
        + (f", {recovered} by an interrupted run (from its journals)" if recovered else "")
    )
    exhausted = s.get("exhausted", 0)
    out.print(
        f"Failed       {s['transient'] + s['permanent'] + exhausted} "
        f"(transient {s['transient']}, permanent {s['permanent']}, out of attempts {exhausted})"
    )
    if s.get("suppressed"):
        out.print(f"Suppressed   {s['suppressed']} address(es) after a hard bounce")
    if s.get("elapsed"):
        rate = s["submitted_now"] / s["elapsed"] if s["elapsed"] else 0
        out.print(f"Elapsed      {s['elapsed']:.2f} s sending ({rate:.0f} messages/s)")
    for f in s.get("failures", [])[:10]:
        out.print(f"  failed: {f}")
    if s.get("preview"):
        out.print(f"Preview      {s['preview']}")


@app.command()
def run(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Gather and compose; record and send nothing.")
    ] = False,
) -> None:
    """The main job: gather, compose, render and deliver the current edition."""
    settings = settings_from(config)
    key = digest_key(settings, digest, config)
    when = parse_now(now)
    check_store(settings)
    try:
        with flows_api():
            from flows.pipeline import run_flow

            summary = run_flow(str(config), key, when, dry_run)
    except DigestError as e:
        raise fail(str(e), 1) from None
    _print_summary(summary)
    code = 0
    for sec in summary.get("sections", ()):
        if sec.get("no_working_source"):
            out.print(
                f"Section {sec['section']!r} had no working source: its news is missing. "
                "`digest sources` shows each source's last error."
            )
            code = 1
    # Transient failures need another run; permanent ones (bounces) are reported, not retried.
    if summary.get("transient"):
        out.print("Transient failures remain: run again to retry them once they are due.")
        code = 1
    if summary.get("exhausted"):
        out.print("Some messages ran out of attempts: `digest edition retry` queues them again.")
        code = 1
    if code:
        raise typer.Exit(code)


@app.command()
def gather(
    config: ConfigOpt = DEFAULT_CONFIG,
    section: Annotated[
        list[str] | None, typer.Option("--section", "-s", help="Only these sections.")
    ] = None,
    now: NowOpt = None,
) -> None:
    """Fetch the sources of every (or the named) section and store new articles."""
    settings = settings_from(config)
    keys = section or list(settings.sections)
    unknown = [k for k in keys if k not in settings.sections]
    if unknown:
        raise fail(f"{config}: no section {', '.join(map(repr, unknown))}", 2)
    check_store(settings)
    when = parse_now(now)
    failed = False
    heap.tune()  # before Prefect's threads and the gathering threads start
    with flows_api():
        from flows.gather import gather_section_flow, gathered_result

        for key in keys:
            state = gather_section_flow(str(config), key, when, return_state=True)
            result = gathered_result(state)
            none = " (no working source)" if result.get("no_working_source") else ""
            out.print(f"{key}: {result['articles']} articles, {result['new']} new{none}")
            for f in result["failed"]:
                failed = True
                out.print(f"  failed: {f}")
    if failed:
        raise typer.Exit(1)


@app.command()
def preview(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the files.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
) -> None:
    """Render the next edition from stored articles to index.html, digest.txt and sample.eml.
    Records nothing."""
    from digest.steps.preview import preview_next

    settings = settings_from(config)
    key = digest_key(settings, digest, config)
    when = parse_now(now) or datetime.now(UTC)
    with store_for(settings) as store:
        done = preview_next(settings, store, key, out_dir, now=when)
    outcome, edition = done.outcome, done.outcome.edition
    if edition is None:
        out.print(f"Nothing to preview: {outcome.message}")
        if done.store_empty:
            out.print("The store has no articles yet: run `digest gather` first.")
        return
    out.print(
        f"Edition {edition.id} ({outcome.status}): {len(edition.teasers)} items, "
        f"HTML {len(done.html.encode()) / 1000:.1f} KB"
    )
    out.print(f"Subject: {edition.subject}")
    out.print(f"Wrote {out_dir / 'index.html'}, digest.txt and sample.eml")
