"""The send loop of one process: build each claimed batch's messages and hand them to the
provider, noting and journaling every answer the moment it is known.

A runner claims batches as its owner (renewing the owner's claim lease, and the edition's lease
when the owner holds it) and has their answers recorded
(:class:`~digest.steps.ledger.Recorder`); :class:`LocalRunner` builds and sends in this process,
:class:`~digest.steps.workers.PoolRunner` in worker processes. A batch cut short keeps what was
answered and gives the rest back (:meth:`Runner.settle`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from digest.config import Settings
from digest.delivery.base import Provider
from digest.delivery.ratelimit import RateLimited, TokenBucket
from digest.errors import DeliveryError
from digest.factory import make_provider
from digest.models import Edition, SendResult, Subscriber
from digest.render.variants import Variants
from digest.steps.ledger import (
    Clock,
    DeliveryReport,
    Recorder,
    crash_record,
    open_journal,
    renew_claim,
    renew_lease,
    settle,
)
from digest.steps.messages import Builder
from digest.store import Claimed, Store
from digest.store import journal as journals

# Messages built and held at once by a provider that sends one message at a time: bounds memory
# (an 80 KB edition, 500 rows a batch, would otherwise hold ~40 MB of messages per session).
_PIECE = 50


@dataclass
class Sent:
    """What became of a claimed batch: answers by delivery id (filled as they come, so they
    survive an exception), rows to skip, and the error that stopped it early, if any."""

    answers: dict[int, SendResult] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    error: DeliveryError | None = None


def send_rows(
    builder: Builder,
    provider: Provider,
    journal: journals.Journal,
    rows: Sequence[tuple[int, Subscriber]],
    sent: Sent,
) -> Sent:
    """Build and send claimed rows into ``sent``, each answer noted and journaled as it comes.

    Providers that send one message at a time get the rows in pieces (bounded memory); API
    providers get the batch whole (their requests carry hundreds). A provider refusing a piece
    whole stops the batch: the rest stay unanswered (given back, no attempt spent) and the
    error is kept in ``sent.error``. Anything else propagates; ``sent`` holds what was answered.
    """
    piece = _PIECE if provider.raw_only else max(1, len(rows))
    waits = getattr(provider, "waits_for_results", False)
    try:
        for start in range(0, len(rows), piece):
            built = builder.build(rows[start : start + piece])
            sent.skipped += built.skipped
            sent.answers |= built.unusable
            if not built.messages:
                continue
            noted = _Noted(sent, journal, built.by_key, waits=waits)
            try:
                results = provider.send(built.messages, noted)
            except DeliveryError as e:
                sent.error = e
                return sent
            sent.answers |= {built.by_key[r.key]: r for r in results}
    finally:
        if not journal.closed:
            journal.wait()  # every answer down before the batch is recorded (and forgotten)
    return sent


class _Noted:
    """What a provider calls with each answer: noted in ``sent`` (first, in memory: a failing
    journal loses nothing), then journaled. For a provider that waits for the journal before
    each message's point of no return (``waits_for_results``), the row is only sent, and
    :meth:`wait` is what it waits with; for any other, each row is written before the call
    returns."""

    def __init__(
        self,
        sent: Sent,
        journal: journals.Journal,
        by_key: Mapping[str, int],
        *,
        waits: bool,
    ) -> None:
        self.sent, self.journal, self.by_key, self.waits = sent, journal, by_key, waits

    def __call__(self, result: SendResult) -> None:
        delivery_id = self.by_key[result.key]
        self.sent.answers[delivery_id] = result
        self.journal.write(delivery_id, result)
        if not self.waits:
            self.journal.wait()

    def wait(self) -> None:
        self.journal.wait()


def sender(
    settings: Settings,
    edition: Edition,
    variants: Variants,
    *,
    now: datetime,
    rate: float,
    provider: Provider | None = None,
) -> tuple[Provider, Builder]:
    """What one sending process sends with: the provider (the configured one unless given),
    behind a rate limit when there is one, and a builder that makes the bodies only for a
    provider that reads them."""
    base = provider or make_provider(settings)
    limited: Provider = RateLimited(base, TokenBucket(rate)) if rate else base
    bodies = not base.raw_only
    return limited, Builder(settings, edition, variants, now=now, bodies=bodies)


class Runner:
    """What both ways of sending share: claiming the next batch as the owner, under its claim
    lease (and the edition's, with ``edition_lease``), and settling batches whose sending was
    cut short."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        edition: Edition,
        *,
        owner: str,
        clock: Clock,
        edition_lease: bool = True,
    ) -> None:
        self.settings, self.store, self.edition = settings, store, edition
        self.owner, self.clock, self.edition_lease = owner, clock, edition_lease
        self.crash = crash_record(settings, store, edition.id)
        self.after = 0  # the last id claimed: the next claim reads on from there

    def claim(self) -> list[Claimed]:
        renew_claim(self.settings, self.store, self.owner)
        if self.edition_lease:
            renew_lease(self.store, self.edition, self.owner)
        size = self.settings.delivery.batch_size
        claimed = self.store.claim_batch(
            self.edition.id, size, now=self.clock(), owner=self.owner, after=self.after
        )
        if claimed:
            self.after = claimed[-1].delivery_id
        return claimed

    def settle(
        self,
        claimed: Iterable[Claimed],
        report: DeliveryReport,
        known: Mapping[int, SendResult] | None = None,
    ) -> None:
        """Rows whose batch was cut short: keep what was answered (``known`` answers, and the
        journals'), give back the rest (never a row that may have gone out)."""
        ids = [c.delivery_id for c in claimed]
        journaled = self.crash.replay(self.owner)
        journaled.update(known or {})
        mine = {i: journaled[i] for i in ids if i in journaled}
        settle(
            self.settings,
            self.store,
            self.edition,
            mine,
            report,
            self.clock,
            give_back=ids,
            owner=self.owner,
        )
        self.crash.forget(self.owner, ids)


class LocalRunner(Runner):
    """Builds and sends in this process, one batch at a time."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        edition: Edition,
        variants: Variants,
        *,
        now: datetime,
        owner: str,
        clock: Clock,
        provider: Provider | None,
        edition_lease: bool = True,
    ) -> None:
        super().__init__(
            settings, store, edition, owner=owner, clock=clock, edition_lease=edition_lease
        )
        self.own_provider = provider is None
        self.provider, self.builder = sender(
            settings, edition, variants, now=now, rate=settings.delivery.rate, provider=provider
        )
        self.journal: journals.Journal | None = None

    def drain(self, recorder: Recorder) -> None:
        while True:
            claimed = self.claim()
            if not claimed:
                return
            if self.journal is None:
                self.journal = open_journal(self.settings, self.edition.id, self.owner)
            rows = [(c.delivery_id, c.subscriber) for c in claimed]
            sent = Sent()
            try:
                send_rows(self.builder, self.provider, self.journal, rows, sent)
            except BaseException:
                # An interrupt, a full disk, a bug: what was answered stays answered (from
                # memory and the journals), the rest goes back.
                self.settle(claimed, recorder.report, sent.answers)
                raise
            attempts = {c.delivery_id: c.attempts for c in claimed}
            down = recorder.record(attempts, sent.answers, sent.skipped)
            if sent.error is not None:
                raise sent.error  # the provider refused a batch whole: stop (unanswered rows
                # were given back by the recorder)
            if down:
                return  # every answer transient: the provider is down; wait before more

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close(remove=False)
        if self.own_provider:
            self.provider.close()
