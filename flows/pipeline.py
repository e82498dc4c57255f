"""The gather and edition flows, and the run flow that chains them.

Tasks are thin: each calls one step of ``digest.steps`` and adds what
Prefect is good at (retries of transient errors only, logs, artifacts, a UI). Delivery is one
task per edition: the deliver stage claims, sends and records in batches of hundreds (in
worker processes when ``delivery.sessions`` > 1), never a task per recipient.
"""

from __future__ import annotations

import re
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from digest.compose.periods import edition_id, period_key
from digest.config import Settings, load_settings
from digest.errors import DeliveryLocked, DigestError
from digest.factory import make_provider, open_store
from digest.models import Article, Edition, EditionStatus
from digest.render.variants import Variants, render_variants
from digest.steps import compose as composing
from digest.steps import deliver as delivering
from digest.steps import gather, ledger
from digest.steps.preview import write_preview
from digest.store import Store
from flows.approval import wait_for_decision


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what can pass: errors that say a retry helps (a lost delivery lease is
    transient for the run as a whole, but retrying the task would only find it lost again)."""
    try:
        state.result()
    except DeliveryLocked:
        return False
    except DigestError as e:
        return e.retryable
    except Exception:
        return False
    return False


@dataclass
class RunSummary:
    """What the edition flow did; the run flow adds what each section's gather did."""

    digest: str
    edition_id: str | None = None
    edition_status: str = ""
    message: str = ""
    items: int = 0
    recipients: int = 0
    submitted: int = 0
    submitted_now: int = 0
    transient: int = 0
    permanent: int = 0
    exhausted: int = 0
    skipped: int = 0
    suppressed: int = 0
    elapsed: float = 0.0
    messages_per_s: float = 0.0
    preview: str | None = None
    dry_run: bool = False
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


# Names and keys an operator reads in the UI ---------------------------------------------------


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) made of ``parts``."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key[:100].rstrip("-") or "digest"


def _run_parameters() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters or {})


def _run_time(value: Any) -> datetime:
    """The run's clock from its ``now`` parameter: a datetime, an ISO string (from a
    deployment), or nothing (the current time)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = None
    return _now(value if isinstance(value, datetime) else None)


def run_edition_id(config: str, digest: str, now: datetime) -> str:
    """The id of the edition a run of ``digest`` at ``now`` works on; the date when the
    configuration cannot be read (the run itself then reports why)."""
    try:
        d = load_settings(config).digests[digest]
        return edition_id(digest, period_key(now, d.period, d.schedule.timezone, d.schedule.cron))
    except Exception:
        return f"{digest}-{now:%Y-%m-%d}"


def _gather_run_name() -> str:
    p = _run_parameters()
    return f"gather-{p.get('section', '')}-{_run_time(p.get('now')):%Y%m%dT%H%M%SZ}"


def _edition_label() -> str:
    p = _run_parameters()
    when = _run_time(p.get("now"))
    return run_edition_id(str(p.get("config", "")), str(p.get("digest", "")), when)


def _edition_run_name() -> str:
    return f"edition-{_edition_label()}"


def _digest_run_name() -> str:
    return f"digest-run-{_edition_label()}"


# Tasks --------------------------------------------------------------------------------------


@task(
    name="fetch-source",
    cache_policy=NO_CACHE,
    retry_delay_seconds=[1, 10, 60],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_transient,
)
def fetch_source(
    settings: Settings, store: Store | None, key: str, now: datetime
) -> gather.SourceReport:
    report = gather.fetch_source(settings, store, key, now=now)
    get_run_logger().info(
        "source %r: %s, %d entries, %d new", key, report.status, report.entries, report.new
    )
    for w in report.warnings:
        get_run_logger().warning("source %r: %s", key, w)
    return report


@task(name="compose-edition", cache_policy=NO_CACHE)
def compose_task(
    settings: Settings,
    store: Store,
    digest: str,
    now: datetime,
    record: bool,
    extra: list[Article],
) -> composing.ComposeOutcome:
    outcome = composing.compose(settings, store, digest, now=now, record=record, extra=extra)
    get_run_logger().info("compose %r: %s (%s)", digest, outcome.status, outcome.message)
    return outcome


@task(name="render-variants", cache_policy=NO_CACHE)
def render_task(settings: Settings, store: Store, edition: Edition) -> Variants:
    variants = render_variants(settings, edition, store.section_choices(edition.digest))
    get_run_logger().info(
        "edition %s: %d variant(s), HTML %d bytes (all sections)",
        edition.id,
        len(variants),
        len(variants[None].html.encode()),
    )
    return variants


@task(name="prepare-delivery", cache_policy=NO_CACHE)
def prepare_task(
    settings: Settings, store: Store, edition: Edition, now: datetime
) -> ledger.DeliveryReport:
    people = store.active_subscribers(edition.digest)
    report = ledger.prepare_delivery(settings, store, edition, people, now=now)
    get_run_logger().info(
        "edition %s: %d recipient(s) in the ledger", edition.id, report.recipients
    )
    return report


@task(
    name="deliver",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_transient,
)
def deliver_task(
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Variants,
    now: datetime,
    owner: str,
) -> ledger.DeliveryReport:
    log = get_run_logger().info
    return delivering.deliver(settings, store, edition, variants, now=now, owner=owner, log=log)


# Flows --------------------------------------------------------------------------------------


def _gather(
    settings: Settings, store: Store | None, section: str, now: datetime
) -> tuple[gather.SectionGathered, list[Article]]:
    fetch = fetch_source.with_options(retries=settings.http.retries)
    return gather.gather_section(
        settings,
        store,
        section,
        now=now,
        submit=lambda key: fetch.submit(settings, store, key, now),
        logger=get_run_logger(),
    )


def _gather_artifact(gathered: gather.SectionGathered, *, dry_run: bool) -> None:
    rows = [
        {
            "source": s["source"],
            "new": s["new"],
            "entries": s["entries"],
            "status": "failed" if s["status"] == "failed" else "ok",
            "fetch": s["status"],
            "error": s["error"] or "",
        }
        for s in gathered.sources
    ]
    failed = sum(r["status"] == "failed" for r in rows)
    create_table_artifact(
        table=rows,
        key=artifact_key("gather", gathered.section),
        description=f"Section {gathered.section}: {len(rows)} source(s), {failed} failed, "
        f"{gathered.new} new article(s)" + (" (dry run: nothing recorded)" if dry_run else ""),
    )


@flow(name="gather-section", log_prints=True, flow_run_name=_gather_run_name)
def gather_section_flow(
    config: str, section: str, now: datetime | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Fetch every source of one section, store new articles, report each source.

    A dry run records nothing and returns the parsed articles under ``found`` instead.
    """
    settings = load_settings(config)
    store = None if dry_run else open_store(settings)
    try:
        gathered, found = _gather(settings, store, section, _now(now))
    finally:
        if store:
            store.close()
    _gather_artifact(gathered, dry_run=dry_run)
    result = asdict(gathered)
    if dry_run:
        result["found"] = [a.model_dump(mode="json") for a in found]
    return result


def _edition(
    settings: Settings,
    store: Store,
    digest: str,
    now: datetime,
    *,
    dry_run: bool,
    extra: list[Article],
    summary: RunSummary,
) -> RunSummary:
    logger = get_run_logger()
    outcome = compose_task(settings, store, digest, now, not dry_run, extra)
    summary.message = outcome.message
    edition = outcome.edition
    if edition is None:
        logger.info("digest %r: %s", digest, outcome.message)
        _note_artifact(summary)
        return summary
    summary.edition_id = edition.id
    summary.items = len(edition.teasers)
    summary.edition_status = edition.status.value
    if edition.status is EditionStatus.REJECTED:
        logger.warning("edition %s was rejected; nothing is sent", edition.id)
        _note_artifact(summary)
        return summary
    if dry_run:
        with closing(make_provider(settings, dry_run=True)) as provider:
            dry = delivering.deliver_dry(
                settings,
                provider,
                edition,
                store.active_subscribers(edition.digest),
                store.submitted_subscriber_ids(edition.id),
                now=now,
            )
        summary.edition_status = "dry run: nothing recorded"
        summary.recipients = dry.recipients
        summary.submitted_now = dry.submitted
        summary.skipped = dry.skipped
        summary.elapsed = dry.elapsed
        _note_artifact(summary)
        return summary
    if edition.status is EditionStatus.DRAFT:
        if settings.digests[digest].approval == "required":
            decided = _await_approval(settings, store, digest, edition, now, summary)
            if decided is None:
                _note_artifact(summary)
                return summary
            edition = decided
        else:
            edition = composing.approve(store, edition, now=now)

    variants = render_task(settings, store, edition)
    preview = write_preview(settings, edition, variants[None])
    summary.preview = str(preview) if preview else None
    total = ledger.DeliveryReport(edition.id)
    failure: DigestError | None = None
    with ledger.delivery_lock(store, edition) as owner:
        total.add(prepare_task(settings, store, edition, now))
        try:
            total.add(deliver_task(settings, store, edition, variants, now, owner))
        except DigestError as e:
            # Still count and report what the ledger holds, then fail the run (below).
            failure = e
            total.failures.append(f"delivery stopped: {e}")
        counts = ledger.finish_delivery(store, edition, now=now)
    summary.edition_status = (store.edition(edition.id) or edition).status.value
    summary.recipients = ledger.recipients(counts)
    summary.submitted = counts["submitted"]
    summary.submitted_now = total.submitted
    summary.transient = counts["transient"]
    summary.permanent = counts["permanent"]
    summary.exhausted = counts["exhausted"]
    summary.skipped = total.skipped
    summary.suppressed = total.suppressed
    summary.elapsed = total.elapsed
    summary.messages_per_s = round(total.rate, 1)
    summary.failures = total.failures[:50]
    if summary.transient:
        logger.warning(
            "edition %s: %d transient failure(s) left; the next run retries them when due",
            edition.id,
            summary.transient,
        )
    if summary.exhausted:
        logger.warning(
            "edition %s: %d message(s) ran out of attempts; `digest edition retry` queues them "
            "again",
            edition.id,
            summary.exhausted,
        )
    logger.info(total.summary())
    _artifact(settings, edition, summary, len(variants[None].html.encode()))
    _delivery_artifact(edition, summary)
    if failure is not None:
        raise failure
    return summary


def _await_approval(
    settings: Settings,
    store: Store,
    digest: str,
    edition: Edition,
    now: datetime,
    summary: RunSummary,
) -> Edition | None:
    """Show the draft, pause until an editor decides (or the time is up) and apply the
    decision: the approved edition to deliver, or None when nothing is to be sent."""
    logger = get_run_logger()
    d = settings.digests[digest]
    variants = render_task(settings, store, edition)
    _approval_artifact(settings, edition, len(variants[None].html.encode()))
    logger.warning(
        "edition %s awaits an editor's approval (up to %.4g hour(s))",
        edition.id,
        d.approval_timeout_hours,
    )
    decision = wait_for_decision(edition.id, d.approval_timeout_hours)
    # What the store says now wins over what this run saw before pausing: an editor may have
    # rejected the edition (without a run to resume) or changed it while the run waited.
    stored = store.edition(edition.id) or edition
    if stored.status is not EditionStatus.DRAFT and stored.status is not EditionStatus.APPROVED:
        summary.edition_status = stored.status.value
        summary.message = f"the edition was {stored.status.value} meanwhile; nothing sent here"
        logger.warning("edition %s is %s; this run sends nothing", edition.id, stored.status.value)
        return None
    edition = stored
    if decision is None:
        if d.approval_timeout_action == "skip":
            summary.edition_status = EditionStatus.DRAFT.value
            summary.message = "approval timed out; skipped"
            logger.warning("edition %s: approval timed out; nothing sent", edition.id)
            return None
        summary.message = "approval timed out; sent"
        logger.warning("edition %s: approval timed out; sending it as it is", edition.id)
        summary.items = len(edition.teasers)
        return composing.approve(store, edition, now=now)
    who = decision.editor or "an editor"
    if decision.decision == "reject":
        store.set_edition_status(edition.id, EditionStatus.REJECTED, now=now)
        summary.edition_status = EditionStatus.REJECTED.value
        summary.message = f"rejected by {who}"
        logger.warning("edition %s was rejected by %s; nothing is sent", edition.id, who)
        return None
    changes: dict[str, Any] = {}
    if decision.subject is not None:
        changes["subject"] = decision.subject
    if decision.intro is not None:
        changes["intro"] = decision.intro
    if decision.excluded:
        have = store.overrides(edition.id).excluded
        new = [composing.resolve_article(store, digest, settings, ref) for ref in decision.excluded]
        changes["excluded"] = tuple(dict.fromkeys([*have, *new]))
    if changes:
        outcome = composing.edit_edition(settings, store, digest, changes, now=now)
        if outcome.edition is not None:
            edition = outcome.edition
        logger.info("edition %s: %s changed by %s", edition.id, ", ".join(changes), who)
    else:
        # The editor may have changed the draft in the meantime: send what is stored.
        edition = store.edition(edition.id) or edition
    summary.items = len(edition.teasers)
    summary.message = f"approved by {who}"
    logger.info("edition %s was approved by %s", edition.id, who)
    return composing.approve(store, edition, now=now)


def _approval_artifact(settings: Settings, edition: Edition, html_bytes: int) -> None:
    """The draft an editor decides on: subject, preheader, teasers, size and a link."""
    link = preview_url(settings, edition.id)
    lines = [
        f"# Awaiting approval: {edition.subject}",
        "",
        f"Preheader: {edition.preheader}",
        "",
        f"Edition `{edition.id}` · {len(edition.teasers)} items · HTML {html_bytes / 1000:.1f} "
        f"KB ({html_bytes} bytes, all sections)",
        "",
    ]
    if link:
        lines += [f"Review: [{link}]({link})", ""]
    lines += _teaser_lines(edition)
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key("approval", edition.id),
        description=f"Edition {edition.id}: awaiting approval",
    )


def _teaser_lines(edition: Edition) -> list[str]:
    """Markdown: each section's heading and its teasers as links."""
    lines: list[str] = []
    for section in edition.sections:
        lines.append(f"## {section.title}")
        lines.extend(f"- [{t.title}]({t.url})" for t in section.teasers)
        lines.append("")
    return lines


def preview_url(settings: Settings, edition_id: str) -> str | None:
    """The web app's page for an edition, when ``web.base_url`` is set."""
    base = settings.web.base_url.rstrip("/")
    return f"{base}/editions/{edition_id}" if base else None


def _artifact(settings: Settings, edition: Edition, summary: RunSummary, html_bytes: int) -> None:
    """The edition summary: what went out and to how many."""
    link = preview_url(settings, edition.id)
    lines = [
        f"# {edition.subject}",
        "",
        f"Edition `{edition.id}` · {summary.items} items · HTML {html_bytes / 1000:.1f} KB "
        f"({html_bytes} bytes, all sections)",
        "",
    ]
    if link:
        lines += [f"Preview: [{link}]({link})", ""]
    lines += [
        f"Recipients {summary.recipients} · submitted {summary.submitted} "
        f"(this run {summary.submitted_now}, {summary.messages_per_s:.0f}/s) · failed "
        f"{summary.transient + summary.permanent + summary.exhausted} (transient "
        f"{summary.transient}, permanent {summary.permanent}, out of attempts "
        f"{summary.exhausted}) · suppressed {summary.suppressed}",
        "",
    ]
    lines += _teaser_lines(edition)
    create_markdown_artifact(
        markdown="\n".join(lines),
        key=artifact_key("edition", edition.id),
        description=f"Edition {edition.id}",
    )


def _delivery_artifact(edition: Edition, summary: RunSummary) -> None:
    """One row: the ledger's counts for the edition and what this run sent, how fast."""
    row = {
        "edition": edition.id,
        "status": summary.edition_status,
        "recipients": summary.recipients,
        "submitted": summary.submitted,
        "submitted_this_run": summary.submitted_now,
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


def _note_artifact(summary: RunSummary) -> None:
    """A short summary for a run that delivered nothing (no edition, rejected, awaiting
    approval, dry run), so that every edition run leaves one."""
    title = summary.edition_id or f"digest {summary.digest}: no edition"
    lines = [f"# {title}", "", f"Status: {summary.edition_status or '-'}"]
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
        description=f"Edition run of {summary.digest}: {summary.edition_status or 'no edition'}",
    )


@flow(name="edition", log_prints=True, flow_run_name=_edition_run_name)
def edition_flow(
    config: str,
    digest: str,
    now: datetime | None = None,
    dry_run: bool = False,
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Compose, render and deliver the current period's edition of ``digest``.

    ``extra``: articles gathered by a dry run, which are not in the store.
    """
    settings = load_settings(config)
    store = open_store(settings)
    try:
        summary = _edition(
            settings,
            store,
            digest,
            _now(now),
            dry_run=dry_run,
            extra=[Article.model_validate(a) for a in extra or ()],
            summary=RunSummary(digest=digest, dry_run=dry_run),
        )
    finally:
        store.close()
    return summary.as_dict()


@flow(name="digest-run", log_prints=True, flow_run_name=_digest_run_name)
def run_flow(
    config: str, digest: str, now: datetime | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """The main job: gather every section of ``digest``, then compose, render and deliver."""
    settings = load_settings(config)
    when = _now(now)
    sections: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    for section in settings.digests[digest].sections:
        gathered = gather_section_flow(config, section, when, dry_run)
        extra.extend(gathered.pop("found", ()))
        sections.append(gathered)
    result = edition_flow(config, digest, when, dry_run, extra)
    result["sections"] = sections
    return result
