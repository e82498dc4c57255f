"""Where a send is recorded: the delivery ledger and the lease that guards it.

The ledger (``deliveries``) holds one row per (edition, subscriber), written before anything is
sent (:func:`prepare_delivery`): *pending* → *sending* (claimed) → *submitted* or *failed*
(transient, permanent or exhausted), or *skipped*. :class:`Recorder` writes each batch's
answers; :func:`settle` records what a cut-short batch (or a crashed run, from its journals)
had answered and gives the rest back; :func:`finish_delivery` marks the edition sent once
nothing is left to send or to retry.

One run at a time delivers an edition: :func:`delivery_lock` holds the edition's lease, renewed
by a heartbeat and at each claim (:func:`renew_lease`).
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

Clock = Callable[[], datetime]


# Reports -------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one run did for one edition. ``submitted`` counts what this run handed over;
    ``recovered`` what a run that stopped before recording it (a crash) had handed over, which
    this run recorded from its journals."""

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
        self.failures.extend(other.failures)

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
def delivery_lock(store: Store, edition: Edition) -> Iterator[str]:
    """Hold the edition's delivery lease for the block; yields this run's owner name.

    A second run of the same edition raises DeliveryLocked instead of sending alongside. A
    background thread renews the lease every few minutes, so a batch that takes long (a slow
    server, a low rate limit) never lets it lapse while this run lives; each claim renews it
    too, and stops the run if it was lost.
    """
    name, owner = lease_name(edition.id), lock_owner()
    store.acquire_lock(name, owner, ttl=LOCK_TTL)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(LOCK_TTL.total_seconds() / 5):
            try:
                store.renew_lock(name, owner, ttl=LOCK_TTL)
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


def renew_lease(store: Store, edition: Edition, owner: str) -> None:
    """Renew ``owner``'s lease on the edition (at each claim); raises if it was lost."""
    store.renew_lock(lease_name(edition.id), owner, ttl=LOCK_TTL)


def journal_root(settings: Settings) -> Path:
    return settings.data_path / "journal"


def prepare_delivery(
    settings: Settings, store: Store, edition: Edition, *, now: datetime
) -> DeliveryReport:
    """Write the ledger before sending anything: one row per (edition, subscriber) for the
    digest's active subscribers, written a page at a time (one transaction each:
    ``write_ledger``), so memory does not grow with the list; a crash between pages leaves
    rows a re-run completes (rows already there are kept as they are).

    Call it holding :func:`delivery_lock`. Subscribers whose chosen sections carry nothing this
    time get no row (counted as skipped). Rows of subscribers who left since are closed as
    skipped. Rows a crashed run left in ``sending`` are settled from its journal where it
    recorded an answer (those it submitted are counted as ``recovered``, not as this run's),
    and go back to pending where it did not. A sent edition gets no new rows: someone who
    subscribed after it went out does not get last period's email. Only an approved (or
    sending) edition starts sending: any other raises
    :class:`~digest.errors.EditionStateError`, rows unwritten.
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
    root = journal_root(settings)
    settle(settings, store, edition, journals.replay(root, edition.id), report, lambda: now)
    # What the journals say went out, the crashed run sent: recovered, not submitted by this one.
    report.recovered, report.submitted = report.submitted, 0
    journals.discard(root, edition.id)
    store.release_stale(edition.id, now=now)
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
) -> None:
    """Record journaled answers of rows still ``sending`` as the run that got them would have
    (attempts capped, bounces suppressed); then give back ``give_back`` rows left unanswered."""
    in_flight = store.in_flight([*journaled, *give_back])
    known = {i: r for i, r in journaled.items() if i in in_flight}
    if known:
        attempts = {i: in_flight[i] for i in known}
        Recorder(settings, store, report, clock).record(attempts, known, [])
    store.release([i for i in give_back if i in in_flight and i not in known], now=clock())


def recipients(counts: dict[str, int]) -> int:
    """Ledger rows meant to be sent (every status but skipped)."""
    return sum(counts[s.value] for s in DeliveryStatus if s is not DeliveryStatus.SKIPPED)


def finish_delivery(store: Store, edition: Edition, *, now: datetime) -> dict[str, int]:
    """Mark the edition sent once nothing is left to send or to retry; return the counts.

    With transient failures left the edition stays ``sending``: the next run retries them.
    Rows out of attempts do not hold the edition open; they stay in the ledger, reported.
    """
    store.skip_inactive(edition.id, now=now)  # who left during the run holds nothing open
    counts = store.delivery_counts(edition.id)
    done = counts["pending"] == counts["sending"] == counts["transient"] == 0
    if done and store.edition_status(edition.id) is EditionStatus.SENDING:
        store.change_edition_status(edition.id, EditionAction.FINISH, now=now)
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
    ) -> None:
        self.retry = settings.delivery.retry
        self.store, self.report, self.clock = store, report, clock
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
            self.store.release(missing, now=now)
            self.report.failures.append(f"{len(missing)} row(s) got no answer; given back")
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
        self.report.suppressed += len(self.store.mark_results(answers, now=now, retry_at=retry_at))
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
            if len(report.failures) < 200:
                report.failures.append(f"{r.key}: {kind}: {r.reason}")
        failed = report.permanent + report.transient + report.exhausted
        done = report.submitted + report.skipped + failed
        self.total = max(self.total, done)
        report_progress(
            self.progress,
            Progress(f"deliver {report.edition_id}", done, self.total, failed=failed),
        )
        return bool(answers) and all(r.status is SendStatus.TRANSIENT for r in answers.values())
