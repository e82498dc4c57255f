"""An edition run: the current period's edition from composition to the last send.

The sequence (:class:`EditionRun`): compose (or find) the edition; stop if there is none or it
was rejected or skipped; a dry run builds every message and records nothing; a draft is
approved, at once or, when the digest requires it, by an editor's decision (the approval gate:
the edition is *awaiting approval* while the run waits; with no decision in time it is approved
or *skipped*, as ``approval_timeout_action`` says); then the variants
are rendered, the outbox preview written, and the edition delivered under its lease (prepare
the ledger, send, finish; with ``delivery.shards`` above 1 the sending is fanned out to shard
runs, :mod:`digest.steps.shards`, and the run waits for the ledger to be done). A lease held by
another run raises ``DeliveryLocked``; a delivery that stops on an error still counts what the
ledger holds and hands the error back.

Each stage is a replaceable callable (:class:`EditionStages`): the Prefect flow passes its tasks
(retries, a UI) and its approval gate (a paused run); without Prefect the plain steps run, and
an edition that needs approval stops awaiting it (an editor approves it in the web app; the
next run sends it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from digest.config import CAMPAIGN_PROVIDERS, Settings
from digest.errors import DigestError, EditionStateError
from digest.factory import make_campaign_provider, make_provider
from digest.models import Article, Edition, EditionAction, EditionStatus, edition_state
from digest.render.variants import Variants
from digest.steps.campaigns import HandOver, hand_over
from digest.steps.compose import (
    ComposeOutcome,
    Decision,
    approve,
    compose,
    decide,
    transition,
)
from digest.steps.deliver import deliver, deliver_dry, edition_variants
from digest.steps.ledger import (
    DeliveryReport,
    delivery_lock,
    finish_delivery,
    prepare_delivery,
    recipients,
)
from digest.steps.preview import write_preview
from digest.store import Store

log = logging.getLogger(__name__)

# Not decided yet: the approval gate (or, without one needed, an approval) comes next.
UNDECIDED = (EditionStatus.DRAFT, EditionStatus.AWAITING_APPROVAL)
# The status each decision leaves.
DONE = {"approve": EditionStatus.APPROVED, "reject": EditionStatus.REJECTED}

Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass
class RunSummary:
    """What the edition run did; the run flow adds what each section's gather did."""

    digest: str
    edition_id: str | None = None
    edition_status: str = ""
    message: str = ""
    items: int = 0
    recipients: int = 0
    submitted: int = 0
    submitted_now: int = 0  # by this run
    recovered: int = 0  # by an interrupted run, recorded by this one from its journals
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
    campaigns: dict[str, str] = field(default_factory=dict)  # variant: id at the provider

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The stages ---------------------------------------------------------------------------------


def compose_stage(
    settings: Settings,
    store: Store,
    digest: str,
    now: datetime,
    record: bool,
    extra: list[Article],
) -> ComposeOutcome:
    """Compose (or find) the current period's edition (``record=False``: store nothing)."""
    return compose(settings, store, digest, now=now, record=record, extra=extra)


def render_stage(settings: Settings, store: Store, edition: Edition) -> Variants:
    """Every variant the edition's subscribers chose, each compiled once."""
    return edition_variants(settings, store, edition)


def prepare_stage(
    settings: Settings, store: Store, edition: Edition, now: datetime
) -> DeliveryReport:
    """The ledger, for the digest's active subscribers (hold the lease)."""
    return prepare_delivery(settings, store, edition, now=now)


def deliver_stage(
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Variants,
    now: datetime,
    owner: str,
) -> DeliveryReport:
    """Send every due row of the ledger (hold the lease as ``owner``)."""
    return deliver(settings, store, edition, variants, now=now, owner=owner, log=log.info)


def hand_over_stage(
    settings: Settings, store: Store, edition: Edition, variants: Variants, now: datetime
) -> HandOver:
    """Hand every variant over as one campaign to the provider that owns the list (hold the
    lease)."""
    provider = make_campaign_provider(settings)
    assert provider is not None, "hand_over_stage needs a campaign provider"
    with closing(provider):
        return hand_over(settings, store, edition, variants, provider, now=now, log=log.info)


Deliver = Callable[[Settings, Store, Edition, Variants, datetime, str], DeliveryReport]

# Waits for an editor's decision on the draft (given its HTML size, to show); None when none
# came in time.
AwaitDecision = Callable[[Edition, int], Decision | None]


@dataclass(frozen=True)
class EditionStages:
    """The stages an edition run calls, each replaceable with a callable of the same signature
    (the flow passes its Prefect tasks). ``await_decision``: the approval gate; None (no one to
    ask) leaves an edition that needs approval awaiting it."""

    compose: Callable[[Settings, Store, str, datetime, bool, list[Article]], ComposeOutcome] = (
        compose_stage
    )
    render: Callable[[Settings, Store, Edition], Variants] = render_stage
    prepare: Callable[[Settings, Store, Edition, datetime], DeliveryReport] = prepare_stage
    deliver: Deliver = deliver_stage
    # With ``delivery.shards`` above 1: start the shard runs and wait until the ledger is done
    # (digest.steps.shards.fan_out; the flow passes one that runs them on the work pool).
    # None: the run sends alone, as ``deliver``.
    fan_out: Deliver | None = None
    hand_over: Callable[[Settings, Store, Edition, Variants, datetime], HandOver] = hand_over_stage
    await_decision: AwaitDecision | None = None


# The run ------------------------------------------------------------------------------------


@dataclass
class EditionOutcome:
    """How an edition run ended.

    ``delivered``: the edition whose delivery ran (None: the run stopped before, and
    ``summary`` says why), with ``html_bytes`` its full variant's size. ``failure``: the error
    that stopped its delivery; the counts are in ``summary`` all the same, and the caller
    raises it to fail the run.
    """

    summary: RunSummary
    delivered: Edition | None = None
    html_bytes: int = 0
    failure: DigestError | None = None


@dataclass
class EditionRun:
    """One run of the current period's edition of ``digest`` (see the module docstring).

    ``extra``: articles gathered by a dry run, which are not in the store.
    """

    settings: Settings
    store: Store
    digest: str
    now: datetime
    dry_run: bool = False
    extra: Sequence[Article] = ()
    stages: EditionStages = field(default_factory=EditionStages)
    logger: Logger = log

    def run(self) -> EditionOutcome:
        settings, store, now, logger = self.settings, self.store, self.now, self.logger
        summary = RunSummary(digest=self.digest, dry_run=self.dry_run)
        outcome = self.stages.compose(
            settings, store, self.digest, now, not self.dry_run, list(self.extra)
        )
        summary.message = outcome.message
        edition = outcome.edition
        if edition is None:
            logger.info("digest %r: %s", self.digest, outcome.message)
            return EditionOutcome(summary)
        summary.edition_id = edition.id
        summary.items = len(edition.teasers)
        summary.edition_status = edition.status.value
        if edition.status in (EditionStatus.REJECTED, EditionStatus.SKIPPED):
            logger.warning(
                "edition %s was %s; nothing is sent", edition.id, edition_state(edition.status)
            )
            return EditionOutcome(summary)
        if self.dry_run:
            return self._dry_run(edition, summary)
        try:
            if edition.status in UNDECIDED:
                if settings.digests[self.digest].approval == "required":
                    decided = self._await_approval(edition, summary)
                    if decided is None:
                        return EditionOutcome(summary)
                    edition = decided
                else:
                    edition = approve(store, edition, now=now)
            return self._deliver(edition, summary)
        except EditionStateError as e:
            # Another decision came first (an editor rejected it meanwhile, say): it stands.
            summary.edition_status = e.status
            state = edition_state(e.status)
            summary.message = f"the edition was {state} meanwhile; nothing sent here"
            logger.warning("%s; this run sends nothing", e.message)
            return EditionOutcome(summary)

    def _dry_run(self, edition: Edition, summary: RunSummary) -> EditionOutcome:
        """Build every message a real run would send, to the in-memory provider; record nothing."""
        settings, store = self.settings, self.store
        with closing(make_provider(settings, dry_run=True)) as provider:
            dry = deliver_dry(settings, provider, edition, store, now=self.now)
        summary.edition_status = "dry run: nothing recorded"
        summary.recipients = dry.recipients
        summary.submitted_now = dry.submitted
        summary.skipped = dry.skipped
        summary.elapsed = dry.elapsed
        return EditionOutcome(summary)

    def _await_approval(self, edition: Edition, summary: RunSummary) -> Edition | None:
        """Ask for a decision (the edition is awaiting approval from then on), wait until an
        editor decides (or the time is up) and apply the decision: the approved edition to
        deliver, or None when nothing is to be sent."""
        settings, store, now, logger = self.settings, self.store, self.now, self.logger
        d = settings.digests[self.digest]
        if edition.status is EditionStatus.DRAFT:
            edition = transition(store, edition, EditionAction.ASK, now=now)
        summary.edition_status = edition.status.value
        if self.stages.await_decision is None:
            summary.message = "awaiting an editor's approval; nothing sent"
            logger.warning("edition %s awaits an editor's approval; nothing sent", edition.id)
            return None
        variants = self.stages.render(settings, store, edition)
        logger.warning(
            "edition %s awaits an editor's approval (up to %.4g hour(s))",
            edition.id,
            d.approval_timeout_hours,
        )
        decision = self.stages.await_decision(edition, len(variants[None].html.encode()))
        who = (decision.editor if decision else "") or "an editor"
        # What the store says now wins over what this run saw before waiting: an editor may
        # have decided in the store (the web page records a decision before it tells this run)
        # or changed the edition meanwhile.
        stored = store.edition(edition.id) or edition
        if stored.status not in (*UNDECIDED, EditionStatus.APPROVED):
            state = edition_state(stored.status)
            summary.edition_status = stored.status.value
            told = decision is not None and DONE.get(decision.decision) is stored.status
            summary.message = (
                f"{state} by {who}"
                if told
                else f"the edition was {state} meanwhile; nothing sent here"
            )
            logger.warning("edition %s is %s; this run sends nothing", edition.id, state)
            return None
        edition = stored
        if decision is None:
            if edition.status is EditionStatus.APPROVED:
                summary.message = "approved meanwhile"
                summary.items = len(edition.teasers)
                logger.info("edition %s was approved meanwhile", edition.id)
                return edition
            if d.approval_timeout_action == "skip":
                edition = transition(store, edition, EditionAction.SKIP, now=now)
                summary.edition_status = edition.status.value
                summary.message = "approval timed out; skipped"
                logger.warning("edition %s: approval timed out; nothing sent", edition.id)
                return None
            edition = transition(store, edition, EditionAction.APPROVE_ON_TIMEOUT, now=now)
            summary.message = "approval timed out; sent"
            logger.warning("edition %s: approval timed out; sending it as it is", edition.id)
            summary.items = len(edition.teasers)
            return edition
        decided = decide(settings, store, edition, decision, now=now)
        edition = decided.edition
        if edition.status is EditionStatus.REJECTED:
            summary.edition_status = edition.status.value
            summary.message = f"rejected by {who}"
            logger.warning("edition %s was rejected by %s; nothing is sent", edition.id, who)
            return None
        if decided.changed:
            logger.info("edition %s: %s changed by %s", edition.id, ", ".join(decided.changed), who)
        summary.items = len(edition.teasers)
        summary.message = f"approved by {who}"
        logger.info("edition %s was approved by %s", edition.id, who)
        return edition

    def _hand_over(self, edition: Edition, summary: RunSummary) -> EditionOutcome:
        """Render and hand the variants over as campaigns, under the edition's lease (the
        provider owns the list: no ledger, no per-subscriber messages)."""
        settings, store, now, logger = self.settings, self.store, self.now, self.logger
        variants = self.stages.render(settings, store, edition)
        failure: DigestError | None = None
        with delivery_lock(store, edition):
            try:
                done = self.stages.hand_over(settings, store, edition, variants, now)
                logger.info(done.summary())
            except EditionStateError:
                raise
            except DigestError as e:
                # What was made is stored; the next run picks it up. Report, then fail the run.
                failure = e
                summary.failures.append(f"hand-over stopped: {e}")
                logger.error("edition %s: hand-over stopped: %s", edition.id, e)
        summary.campaigns = {c.variant_key: c.campaign_id for c in store.campaigns(edition.id)}
        summary.edition_status = (store.edition(edition.id) or edition).status.value
        return EditionOutcome(summary, edition, len(variants[None].html.encode()), failure)

    def _deliver(self, edition: Edition, summary: RunSummary) -> EditionOutcome:
        """Render, write the preview, and deliver under the edition's lease."""
        settings, store, now, logger = self.settings, self.store, self.now, self.logger
        if settings.delivery.provider in CAMPAIGN_PROVIDERS:
            return self._hand_over(edition, summary)
        variants = self.stages.render(settings, store, edition)
        preview = write_preview(settings, edition, variants[None])
        summary.preview = str(preview) if preview else None
        total = DeliveryReport(edition.id)
        failure: DigestError | None = None
        with delivery_lock(store, edition) as owner:
            total.add(self.stages.prepare(settings, store, edition, now))
            try:
                send = self.stages.deliver
                if settings.delivery.shards > 1 and self.stages.fan_out is not None:
                    send = self.stages.fan_out
                total.add(send(settings, store, edition, variants, now, owner))
            except DigestError as e:
                # Still count and report what the ledger holds, then fail the run.
                failure = e
                total.note_failure(f"delivery stopped: {e}")
            counts = finish_delivery(store, edition, now=now)
        summary.edition_status = (store.edition(edition.id) or edition).status.value
        summary.recipients = recipients(counts)
        summary.submitted = counts["submitted"]
        summary.submitted_now = total.submitted
        summary.recovered = total.recovered
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
                "edition %s: %d message(s) ran out of attempts; `digest edition retry` queues "
                "them again",
                edition.id,
                summary.exhausted,
            )
        logger.info(total.summary())
        return EditionOutcome(summary, edition, len(variants[None].html.encode()), failure)


def run_edition(
    settings: Settings,
    store: Store,
    digest: str,
    now: datetime,
    *,
    dry_run: bool = False,
    extra: Sequence[Article] = (),
    stages: EditionStages | None = None,
    logger: Logger = log,
) -> EditionOutcome:
    """Run the current period's edition of ``digest``; see :class:`EditionRun`."""
    run = EditionRun(
        settings,
        store,
        digest,
        now,
        dry_run=dry_run,
        extra=extra,
        stages=stages or EditionStages(),
        logger=logger,
    )
    return run.run()
