"""The artifacts an operator reads in Prefect's UI: each section's gather, the draft awaiting
approval, each edition run's summary and delivery counts, and an edition's clicks a day after
it was sent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from digest.models import edition_state

if TYPE_CHECKING:  # types only: the gather flow imports this module, not the edition's steps
    from digest.config import Settings
    from digest.models import Edition
    from digest.steps.edition import RunSummary
    from digest.steps.gather import SectionGathered
    from digest.steps.stats import EditionClicks


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) made of ``parts``."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key[:100].rstrip("-") or "digest"


def teaser_lines(edition: Edition) -> list[str]:
    """Markdown: each section's heading and its teasers as links."""
    lines: list[str] = []
    for section in edition.sections:
        lines.append(f"## {section.title}")
        lines.extend(f"- [{t.title}]({t.url})" for t in section.teasers)
        lines.append("")
    return lines


def gather_artifact(gathered: SectionGathered, *, dry_run: bool) -> None:
    """One row per source: its entries, the new ones, how many of those belong to the section
    (its filters may leave some out), whether it worked; the description sums the same
    columns in the same words."""
    rows = [
        {
            "source": s["source"],
            "entries": s["entries"],
            "new_in_feed": s["new"],
            "new_in_section": s["new_in_section"],
            "status": "failed" if s["status"] == "failed" else "ok",
            "fetch": s["status"],
            "error": s["error"] or "",
        }
        for s in gathered.sources
    ]
    failed = sum(r["status"] == "failed" for r in rows)
    in_feeds = sum(r["new_in_feed"] for r in rows)
    create_table_artifact(
        table=rows,
        key=artifact_key("gather", gathered.section),
        description=f"Section {gathered.section}: {len(rows)} source(s), {failed} failed; "
        f"new: {in_feeds} in the feeds, {gathered.new} in the section"
        + (" (dry run: nothing recorded)" if dry_run else ""),
    )


def approval_artifact(settings: Settings, edition: Edition, html_bytes: int) -> None:
    """The draft an editor decides on: subject, preheader, teasers, size and a link to its
    page on the web app (``Settings.editions_url``), where it is previewed and decided."""
    link = settings.editions_url(edition.id)
    lines = [
        f"# Awaiting approval: {edition.subject}",
        "",
        f"Preheader: {edition.preheader}",
        "",
        f"Edition `{edition.id}` · {len(edition.teasers)} items · HTML {html_bytes / 1000:.1f} "
        f"KB ({html_bytes} bytes, all sections)",
        "",
        f"Review: [{link}]({link})",
        "",
    ]
    lines += teaser_lines(edition)
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key("approval", edition.id),
        description=f"Edition {edition.id}: awaiting approval",
    )


def edition_artifact(
    settings: Settings, edition: Edition, summary: RunSummary, html_bytes: int
) -> None:
    """The edition summary: what went out and to how many, and its page with the preview."""
    link = settings.editions_url(edition.id)
    lines = [
        f"# {edition.subject}",
        "",
        f"Edition `{edition.id}` · {summary.items} items · HTML {html_bytes / 1000:.1f} KB "
        f"({html_bytes} bytes, all sections)",
        "",
        f"Preview: [{link}]({link})",
        "",
        f"Recipients {summary.recipients} · submitted {summary.submitted} "
        f"(this run {summary.submitted_now}, {summary.messages_per_s:.0f}/s) · failed "
        f"{summary.transient + summary.permanent + summary.exhausted} (transient "
        f"{summary.transient}, permanent {summary.permanent}, out of attempts "
        f"{summary.exhausted}) · suppressed {summary.suppressed}",
        "",
    ]
    lines += teaser_lines(edition)
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key("edition", edition.id),
        description=f"Edition {edition.id}",
    )


def delivery_artifact(edition: Edition, summary: RunSummary) -> None:
    """One row: the ledger's counts for the edition and what this run sent, how fast (and what
    a run interrupted before it had sent, recorded from its journals)."""
    row = {
        "edition": edition.id,
        "status": edition_state(summary.edition_status),
        "recipients": summary.recipients,
        "submitted": summary.submitted,
        "submitted_this_run": summary.submitted_now,
        "submitted_by_interrupted_run": summary.recovered,
        "failed_transient": summary.transient,
        "failed_permanent": summary.permanent,
        "failed_exhausted": summary.exhausted,
        "skipped": summary.skipped,
        "suppressed": summary.suppressed,
        "elapsed_s": round(summary.elapsed, 2),
        "messages_per_s": summary.messages_per_s,
    }
    create_table_artifact(
        table=[row],
        key=artifact_key("delivery", edition.id),
        description=f"Delivery of edition {edition.id}",
    )


def note_artifact(summary: RunSummary) -> None:
    """A short summary for a run that delivered nothing (no edition, rejected, awaiting
    approval, dry run), so that every edition run leaves one."""
    title = summary.edition_id or f"digest {summary.digest}: no edition"
    lines = [f"# {title}", "", f"Status: {edition_state(summary.edition_status) or '-'}"]
    if summary.message:
        lines += ["", summary.message]
    if summary.dry_run:
        lines += ["", f"Would send to {summary.recipients} recipient(s); nothing recorded."]
    create_markdown_artifact(
        markdown="\n".join(lines),
        # A dry run keeps its own key: the edition's summary stays what was really sent.
        key=artifact_key(
            "edition", summary.edition_id or summary.digest, "dry-run" if summary.dry_run else ""
        ),
        description=f"Edition run of {summary.digest}: "
        f"{edition_state(summary.edition_status) or 'no edition'}",
    )


def clicks_artifact(settings: Settings, stats: EditionClicks) -> None:
    """An edition's clicks a day after sending: articles ranked by clicks, clicks per recipient
    of each section (``digest stats`` prints the same)."""
    from digest.steps.stats import percent

    link = settings.editions_url(stats.edition_id)
    lines = [
        f"# Clicks: {stats.subject}",
        "",
        f"Edition `{stats.edition_id}` · {stats.recipients} recipients · {stats.clicks} clicks by "
        f"readers · {stats.filtered} not counted (link scanners and prefetchers)",
        "",
    ]
    if link:
        lines += [f"Edition page: [{link}]({link})", ""]
    lines += ["| Clicks | Article | Section |", "|---:|---|---|"]
    lines += [f"| {a.clicks} | {_cell(a.title)} | {a.section} |" for a in stats.articles]
    lines += ["", "| Section | Clicks | Per recipient |", "|---|---:|---:|"]
    lines += [f"| {_cell(s.title)} | {s.clicks} | {percent(s.rate)} |" for s in stats.sections]
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key("clicks", stats.edition_id),
        description=f"Clicks on edition {stats.edition_id}, a day after sending",
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
