"""Where a send is recorded: the delivery ledger, the leases that guard it, and who owns a claim.

The ledger (``deliveries``) holds one row per (edition, subscriber), written before anything is
sent (:func:`prepare_delivery`): *pending* → *sending* (claimed) → *submitted* or *failed*
(transient, permanent or exhausted), or *skipped*. :class:`Recorder` writes each batch's
answers; :func:`settle` records what a cut-short batch had answered and gives the rest back;
:func:`finish_delivery` marks the edition sent once nothing is left to send or to retry.

One run at a time prepares and finishes an edition: :func:`delivery_lock` holds the edition's
lease. The sending itself may have several owners at once (the edition run, or the shards of a
fan-out): each claim belongs to an owner holding a claim lease (:func:`claim_lease`), renewed by
a heartbeat and at each claim. An owner whose lease ran out (or whose process died on this
host) is dead: another owner takes its ``sending`` rows over (:func:`take_over_dead`), records
what its crash record (:mod:`digest.store.journal`) says it answered, and gives the rest back.
A live owner's rows are never touched.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from digest.config import Settings
from digest.delivery.retry import backoff
from digest.errors import DigestError
from digest.models import (
    DeliveryStatus,
    Edition,
    EditionAction,
    EditionStatus,
    SendResult,
    SendStatus,
)
from digest.render.variants import variant_key
from digest.steps.progress import Progress, ProgressHook, report_progress
from digest.store import Store, lock_owner
from digest.store import journal as journals
from digest.store.locks import claim_lock

Clock = Callable[[], datetime]


# Reports -------------------------------------------------------------------------------------

# Failures a report keeps in full; the rest are only counted (``failures_not_kept``), so an
# outage on a long list holds a few hundred lines, not one per subscriber.
FAILURES_KEPT = 200


@dataclass
class DeliveryReport:
    """What one run did for one edition. ``submitted`` counts what this run handed over;
    ``recovered`` what a run that stopped before recording it (a crash) had handed over, which
    this run recorded from its journals. ``failures`` keeps the first :data:`FAILURES_KEPT`
    failures in full and ``failures_not_kept`` counts the others; the counts per kind
    (``transient``, ``permanent``, ...) are exact."""

    edition_id: str
    recipients: int = 0
    submitted: int = 0
    recovered: int = 0
    transient: int = 0
    permanent: int = 0
    exhausted: int = 0
    skipped: int = 0
    suppressed: int = 0
    elapsed: float = 0.0  # seconds spent sending, waits for retries not included
    waited: float = 0.0  # seconds spent waiting for retries to come due
    failures: list[str] = field(default_factory=list)
    failures_not_kept: int = 0

    def note_failure(self, text: str) -> None:
        """Keep one failure's line, or count it once :data:`FAILURES_KEPT` are kept."""
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(text)
        else:
            self.failures_not_kept += 1

    @property
    def failed(self) -> int:
        return self.transient + self.permanent + self.exhausted

    @property
    def rate(self) -> float:
        """Messages submitted per second of this run's sending."""
        return self.submitted / self.elapsed if self.elapsed > 0 else 0.0

    def add(self, other: DeliveryReport) -> None:
        counts = ("submitted", "recovered", "transient", "permanent", "exhausted", "skipped")
        for name in (*counts, "suppressed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.elapsed += other.elapsed
        self.waited += other.waited
        for text in other.failures:
            self.note_failure(text)
        self.failures_not_kept += other.failures_not_kept

    def summary(self) -> str:
        return (
            f"edition {self.edition_id}: {self.submitted} submitted, {self.failed} failed "
            f"({self.transient} transient, {self.permanent} permanent, {self.exhausted} out of "
            f"attempts), {self.skipped} skipped, {self.suppressed} suppressed, "
            f"{self.elapsed:.1f} s sending ({self.rate:.0f} messages/s)"
            + (f", {self.waited:.0f} s waiting for retries" if self.waited else "")
            + (
                f"; {self.recovered} submitted by an interrupted run, recorded from its journals"
                if self.recovered
                else ""
            )
        )


# The ledger ----------------------------------------------------------------------------------

LOCK_TTL = timedelta(minutes=15)


def lease_name(edition_id: str) -> str:
    """The name of an edition's delivery lease in the store's locks."""
    return f"deliver:{edition_id}"


@contextmanager
def _held(store: Store, name: str, owner: str, ttl: timedelta) -> Iterator[str]:
    """Hold the lease ``name`` as ``owner`` for the block, renewed by a background thread every
    fifth of ``ttl``, so a batch that takes long (a slow server, a low rate limit) never lets
    it lapse while this process lives."""
    store.acquire_lock(name, owner, ttl=ttl)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl.total_seconds() / 5):
            try:
                store.renew_lock(name, owner, ttl=ttl)
            except DigestError:
                return  # lost or unreachable: the next claim finds out and stops the run

    beat = threading.Thread(target=heartbeat, name=f"lease {name}", daemon=True)
    beat.start()
    try:
        yield owner
    finally:
        stop.set()
        beat.join()
        store.release_lock(name, owner)


@contextmanager
def delivery_lock(store: Store, edition: Edition) -> Iterator[str]:
    """Hold the edition's delivery lease for the block; yields this run's owner name.

    A second run of the same edition raises DeliveryLocked instead of preparing or finishing
    it alongside. A heartbeat renews the lease; each claim of the run's own sending renews it
    too, and stops the run if it was lost.
    """
    with _held(store, lease_name(edition.id), lock_owner(), LOCK_TTL) as owner:
        yield owner


def claim_ttl(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.delivery.claim_ttl)


@contextmanager
def claim_lease(settings: Settings, store: Store, owner: str) -> Iterator[str]:
    """Hold ``owner``'s claim lease for the block (``delivery.claim_ttl``, renewed by a
    heartbeat and at each claim): while it lives, nobody settles the rows ``owner`` claimed."""
    with _held(store, claim_lock(owner), owner, claim_ttl(settings)):
        yield owner


def renew_lease(store: Store, edition: Edition, owner: str) -> None:
    """Renew ``owner``'s lease on the edition (at each claim); raises if it was lost."""
    store.renew_lock(lease_name(edition.id), owner, ttl=LOCK_TTL)


def renew_claim(settings: Settings, store: Store, owner: str) -> None:
    """Renew ``owner``'s claim lease (at each claim); raises DeliveryLocked if it was lost
    (another owner took its rows over: it must stop sending)."""
    store.renew_lock(claim_lock(owner), owner, ttl=claim_ttl(settings))


def journal_root(settings: Settings) -> Path:
    return settings.data_path / "journal"


def crash_record(settings: Settings, store: Store, edition_id: str) -> journals.Record:
    """The edition's crash record: in the store on PostgreSQL (no shared disk needed), in
    journal files under ``data_dir`` on SQLite (one machine)."""
    root = journal_root(settings)
    if store.engine.dialect.name == "postgresql":
        return journals.StoreRecord(root, edition_id, store.engine)
    return journals.Record(root, edition_id)


def open_journal(settings: Settings, edition_id: str, owner: str) -> journals.Journal:
    """The journal one sending process of ``owner`` writes (see :func:`crash_record`)."""
    return journals.open_journal(journal_root(settings), edition_id, owner, settings.database_url)


def take_over_dead(
    settings: Settings,
    store: Store,
    edition: Edition,
    owner: str,
    report: DeliveryReport,
    clock: Clock,
) -> int:
    """Take over the ``sending`` rows of the edition's dead owners (see the module docstring):
    record what each had answered, from its crash record, as it would have (those submitted
    count as ``recovered`` in ``report``), and give the rest back to pending. Returns how
    many rows were taken over."""
    record = crash_record(settings, store, edition.id)
    taken = 0
    for dead in store.dead_owners(edition.id):
        ids = store.take_over(edition.id, dead, owner, now=clock())
        if not ids:
            continue
        taken += len(ids)
        record.adopt(dead, owner)
        journaled = record.replay(owner)
        mine = {i: journaled[i] for i in ids if i in journaled}
        found = DeliveryReport(edition.id)
        settle(settings, store, edition, mine, found, clock, give_back=ids, owner=owner)
        # What the journal says went out, the dead owner sent: recovered, not this owner's.
        found.recovered, found.submitted = found.submitted, 0
        report.add(found)
        record.forget(owner, ids)
    return taken


def prepare_delivery(
    settings: Settings,
    store: Store,
    edition: Edition,
    *,
    now: datetime,
    owner: str | None = None,
) -> DeliveryReport:
    """Write the ledger before sending anything: one row per (edition, subscriber) for the
    digest's active subscribers, written a page at a time (one transaction each:
    ``write_ledger``), so memory does not grow with the list; a crash between pages leaves
    rows a re-run completes (rows already there are kept as they are).

    Call it holding :func:`delivery_lock`. Subscribers whose chosen sections carry nothing this
    time get no row. Rows of subscribers who left since are closed as skipped. Rows a crashed
    run left in ``sending`` are settled from its crash record where it recorded an answer (those
    it submitted are counted as ``recovered``, not as this run's), and go back to pending where
    it did not; they become ``owner``'s meanwhile (a name of its own without one). A sent
    edition gets no new rows: someone who subscribed after it went out does not get last
    period's email. Only an approved (or sending) edition starts sending: any other
    raises :class:`~digest.errors.EditionStateError`, rows unwritten.
    """

    def wanted(chosen: frozenset[str] | None) -> bool:
        return variant_key(edition, chosen) != frozenset()

    report = DeliveryReport(edition.id)
    if store.edition_status(edition.id) is not EditionStatus.SENT:
        # Only an approved (or sending) edition starts sending: a rejected one never does,
        # even when the rejection came after this run read it (EditionStateError).
        store.change_edition_status(edition.id, EditionAction.START_SENDING, now=now)
        report.skipped = store.write_ledger(edition.id, edition.digest, wanted, now=now)
    else:
        for page in store.choice_pages(edition.digest):
            report.skipped += sum(not wanted(chosen) for _, chosen in page)
    # Rows a crashed run left in ``sending`` (its claim lease dead) are settled from its crash
    # record; a live owner's (a shard of an earlier run still sending) stay its own.
    settler = owner or lock_owner()
    take_over_dead(settings, store, edition, settler, report, lambda: now)
    if owner is None:
        crash_record(settings, store, edition.id).discard(settler)
    store.skip_inactive(edition.id, now=now)
    report.recipients = recipients(store.delivery_counts(edition.id))
    return report


def settle(
    settings: Settings,
    store: Store,
    edition: Edition,
    journaled: Mapping[int, SendResult],
    report: DeliveryReport,
    clock: Clock,
    *,
    give_back: Iterable[int] = (),
    owner: str | None = None,
) -> None:
    """Record journaled answers of rows still ``sending`` (claimed by ``owner``) as the run
    that got them would have (attempts capped, bounces suppressed); then give back
    ``give_back`` rows left unanswered."""
    in_flight = store.in_flight([*journaled, *give_back], owner)
    known = {i: r for i, r in journaled.items() if i in in_flight}
    if known:
        attempts = {i: in_flight[i] for i in known}
        Recorder(settings, store, report, clock, owner=owner).record(attempts, known, [])
    left = [i for i in give_back if i in in_flight and i not in known]
    store.release(left, now=clock(), owner=owner)


def recipients(counts: dict[str, int]) -> int:
    """Ledger rows meant to be sent (every status but skipped)."""
    return sum(counts[s.value] for s in DeliveryStatus if s is not DeliveryStatus.SKIPPED)


def unanswered(counts: dict[str, int]) -> int:
    """Ledger rows still to send or to retry: pending, claimed, or failed transiently."""
    return counts["pending"] + counts["sending"] + counts["transient"]


def finish_delivery(store: Store, edition: Edition, *, now: datetime) -> dict[str, int]:
    """Mark the edition sent once nothing is left to send or to retry; return the counts.

    With transient failures left the edition stays ``sending``: the next run retries them.
    Rows out of attempts do not hold the edition open; they stay in the ledger, reported.
    Once done, the edition's rows left in the store's crash record are deleted.
    """
    store.skip_inactive(edition.id, now=now)  # who left during the run holds nothing open
    counts = store.delivery_counts(edition.id)
    done = unanswered(counts) == 0
    if done and store.edition_status(edition.id) is EditionStatus.SENDING:
        store.change_edition_status(edition.id, EditionAction.FINISH, now=now)
    if done:
        # Every answer is in the ledger: journal rows an owner left behind (it died between
        # recording and forgetting them) would otherwise stay in the store for ever.
        store.forget_journal(edition.id)
    return counts


# Recording answers ---------------------------------------------------------------------------


class Recorder:
    """Writes a claimed batch's answers to the ledger and counts them into ``report``.

    Its random source jitters the backoff. For each row answered: submitted
    (with the provider's id); failed transient, with the next attempt's time (exponential
    backoff with jitter, the provider's Retry-After as a floor) while attempts are left;
    failed permanent (a hard bounce also suppresses the address); or exhausted (transient but
    out of attempts: reported, kept). Rows that chose only sections without news are closed
    as skipped; rows without an answer are given back.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        report: DeliveryReport,
        clock: Clock,
        progress: ProgressHook | None = None,
        total: int = 0,
        *,
        owner: str | None = None,
        crash: journals.Record | None = None,
    ) -> None:
        self.retry = settings.delivery.retry
        self.store, self.report, self.clock = store, report, clock
        # Whose claims these are (only its rows change), and its crash record, whose entries
        # go once recorded.
        self.owner, self.crash = owner, crash
        self.rng = random.Random()
        # Rows to answer in this run (``total``), for the progress hook after each batch.
        self.progress, self.total = progress, total

    def record(
        self,
        attempts: Mapping[int, int],
        answers: dict[int, SendResult],
        skipped: Sequence[int],
        *,
        release_missing: bool = True,
    ) -> bool:
        """Record the answers for rows tried ``attempts`` times so far. Rows without an answer
        (a provider that broke its contract) are given back. True when every answer was a
        transient failure: the provider is probably down, so stop claiming for now."""
        now = self.clock()
        missing = [i for i in attempts if i not in answers and i not in skipped]
        if missing and release_missing:
            self.store.release(missing, now=now, owner=self.owner)
            self.report.note_failure(f"{len(missing)} row(s) got no answer; given back")
        retry_at: dict[int, datetime] = {}
        for delivery_id, r in answers.items():
            if r.status is SendStatus.TRANSIENT and attempts[delivery_id] < self.retry.attempts:
                wait = backoff(
                    attempts[delivery_id],
                    base=self.retry.base_delay,
                    cap=self.retry.max_delay,
                    retry_after=r.retry_after,
                    rng=self.rng,
                )
                retry_at[delivery_id] = now + timedelta(seconds=wait)
        marked = self.store.mark_results(answers, now=now, retry_at=retry_at, owner=self.owner)
        self.report.suppressed += len(marked)
        if self.crash is not None and self.owner is not None:
            self.crash.forget(self.owner, answers)
        if skipped:
            self.store.mark_skipped(skipped, "none of the chosen sections has news", now=now)
        report = self.report
        report.skipped += len(skipped)
        for delivery_id, r in answers.items():
            if r.status is SendStatus.SUBMITTED:
                report.submitted += 1
                continue
            if r.status is SendStatus.PERMANENT:
                report.permanent += 1
                kind = "permanent (hard bounce)" if r.bounce else "permanent"
            elif delivery_id in retry_at:
                report.transient += 1
                kind = "transient"
            else:
                report.exhausted += 1
                kind = f"transient, out of attempts after {attempts[delivery_id]}"
            report.note_failure(f"{r.key}: {kind}: {r.reason}")
        failed = report.permanent + report.transient + report.exhausted
        done = report.submitted + report.skipped + failed
        self.total = max(self.total, done)
        report_progress(
            self.progress,
            Progress(f"deliver {report.edition_id}", done, self.total, failed=failed),
        )
        return bool(answers) and all(r.status is SendStatus.TRANSIENT for r in answers.values())
