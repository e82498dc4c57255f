"""The edition flow, and the run flow that chains the gather flow (``flows/gather.py``) and it.

Tasks are thin: each calls one step of ``digest.steps`` and adds what Prefect is good at
(retries of transient errors only, logs, a UI). The edition's sequence (dry run, approval,
lease, delivery) is ``digest.steps.edition``; the edition flow passes it these tasks and its
approval gate (a paused run), and leaves artifacts (``flows/artifacts.py``). Delivery is one
task per edition: the deliver step claims, sends and records in batches of hundreds (in worker
processes when ``delivery.sessions`` > 1), never a task per recipient; with ``delivery.shards``
> 1 a fan-out task starts that many ``deliver-shard`` runs on the work pool instead and waits
for the ledger (``flows/shards.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from digest.compose.periods import edition_id, period_key
from digest.config import Settings, load_settings
from digest.factory import open_store
from digest.models import Article, Edition
from digest.render.variants import Variants
from digest.steps import edition as editions
from digest.steps import ledger, stats
from digest.steps.compose import ComposeOutcome, Decision
from digest.steps.deliver import deliver
from digest.steps.edition import EditionStages
from digest.store import Store
from flows.approval import wait_for_decision
from flows.artifacts import (
    approval_artifact,
    clicks_artifact,
    delivery_artifact,
    edition_artifact,
    note_artifact,
)
from flows.gather import gather_section_flow, gathered_result
from flows.runs import retry_transient, run_now, run_parameters, run_time
from flows.shards import fan_out_stage

# Run names an operator reads in the UI ------------------------------------------------------


def run_edition_id(config: str, digest: str, now: datetime) -> str:
    """The id of the edition a run of ``digest`` at ``now`` works on; the date when the
    configuration cannot be read (the run itself then reports why)."""
    try:
        d = load_settings(config).digests[digest]
        return edition_id(digest, period_key(now, d.period, d.schedule.timezone, d.schedule.cron))
    except Exception:
        return f"{digest}-{now:%Y-%m-%d}"


def _edition_label() -> str:
    p = run_parameters()
    when = run_time(p.get("now"))
    return run_edition_id(str(p.get("config", "")), str(p.get("digest", "")), when)


def _edition_run_name() -> str:
    return f"edition-{_edition_label()}"


def _digest_run_name() -> str:
    return f"digest-run-{_edition_label()}"


# Tasks --------------------------------------------------------------------------------------


@task(name="compose-edition", cache_policy=NO_CACHE)
def compose_task(
    settings: Settings,
    store: Store,
    digest: str,
    now: datetime,
    record: bool,
    extra: list[Article],
) -> ComposeOutcome:
    outcome = editions.compose_stage(settings, store, digest, now, record, extra)
    get_run_logger().info("compose %r: %s (%s)", digest, outcome.status, outcome.message)
    for w in outcome.warnings:
        get_run_logger().warning("compose %r: %s", digest, w)
    return outcome


@task(name="render-variants", cache_policy=NO_CACHE)
def render_task(settings: Settings, store: Store, edition: Edition) -> Variants:
    variants = editions.render_stage(settings, store, edition)
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
    report = editions.prepare_stage(settings, store, edition, now)
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
    retry_condition_fn=retry_transient,
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
    return deliver(settings, store, edition, variants, now=now, owner=owner, log=log)


# Flows --------------------------------------------------------------------------------------


def _approval_gate(settings: Settings) -> editions.AwaitDecision:
    """Show the draft (an artifact) and pause the run until an editor decides or the time is
    up (flows/approval.py)."""

    def wait(edition: Edition, html_bytes: int) -> Decision | None:
        approval_artifact(settings, edition, html_bytes)
        hours = settings.digests[edition.digest].approval_timeout_hours
        answer = wait_for_decision(edition.id, hours)
        if answer is None:
            return None
        return Decision(
            answer.decision,
            subject=answer.subject,
            intro=answer.intro,
            excluded=tuple(answer.excluded),
            editor=answer.editor,
        )

    return wait


def _edition(
    settings: Settings,
    store: Store,
    digest: str,
    now: datetime,
    *,
    dry_run: bool,
    extra: list[Article],
    config: str,
) -> editions.RunSummary:
    stages = EditionStages(
        compose=compose_task,
        render=render_task,
        prepare=prepare_task,
        deliver=deliver_task,
        fan_out=fan_out_stage(config),
        await_decision=_approval_gate(settings),
    )
    done = editions.run_edition(
        settings,
        store,
        digest,
        now,
        dry_run=dry_run,
        extra=extra,
        stages=stages,
        logger=get_run_logger(),
    )
    summary, edition = done.summary, done.delivered
    if edition is None:
        note_artifact(summary)
        return summary
    edition_artifact(settings, edition, summary, done.html_bytes)
    delivery_artifact(edition, summary)
    if done.failure is not None:
        raise done.failure
    return summary


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
            run_now(now),
            dry_run=dry_run,
            extra=[Article.model_validate(a) for a in extra or ()],
            config=config,
        )
    finally:
        store.close()
    if not dry_run and any(d.click_tracking for d in settings.digests.values()):
        click_summaries_flow(config, run_now(now))
    return summary.as_dict()


@flow(name="click-summaries", log_prints=True)
def click_summaries_flow(config: str, now: datetime | None = None) -> list[str]:
    """An artifact of clicks for each edition sent at least a day ago that has none yet (the
    edition flow runs it after each edition; it can run on its own schedule too). Each edition
    gets one summary, ever; returns the editions summarised."""
    settings = load_settings(config)
    store = open_store(settings)
    made: list[str] = []
    try:
        for edition_id in stats.summaries_due(settings, store, run_now(now)):
            found = stats.edition_clicks(settings, store, edition_id)
            if found is None:
                continue
            clicks_artifact(settings, found)
            store.mark_click_summary(edition_id, run_now(now))
            made.append(edition_id)
    finally:
        store.close()
    return made


@flow(name="digest-run", log_prints=True, flow_run_name=_digest_run_name)
def run_flow(
    config: str, digest: str, now: datetime | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """The main job: gather every section of ``digest``, then compose, render and deliver."""
    settings = load_settings(config)
    when = run_now(now)
    sections: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    for section in settings.digests[digest].sections:
        # A section without a working source fails its own run (and alerts) but not the
        # edition: the other sections still go out; ``digest run`` exits non-zero.
        state = gather_section_flow(config, section, when, dry_run, return_state=True)
        gathered = gathered_result(state)
        extra.extend(gathered.pop("found", ()))
        sections.append(gathered)
    result = edition_flow(config, digest, when, dry_run, extra)
    result["sections"] = sections
    return result
