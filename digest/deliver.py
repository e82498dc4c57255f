"""The deliver stage: every subscriber's copy of an edition, exactly once, as fast as allowed.

The ledger (``deliveries``) holds one row per (edition, subscriber), written before anything is
sent (:func:`prepare_delivery`). :func:`deliver` then works through it:

1. claim a batch of pending rows (pending → sending, one atomic UPDATE);
2. build each subscriber's message from the variant's compiled template;
3. hand the batch to the provider, journaling each answer the moment it is known
   (:mod:`digest.store.journal`);
4. record the answers in one transaction: submitted (with the provider's id), failed
   transient (attempts and next attempt time, by exponential backoff with jitter, the
   provider's Retry-After as a floor), failed permanent (the reason; a hard bounce also
   suppresses the address) or exhausted (out of attempts: reported, kept, never dropped).

With ``delivery.sessions`` above 1, steps 2 and 3 run in that many worker processes, each with
its own provider (its own SMTP connection), while this process claims and records; building
and sending are CPU-bound, so threads would gain nothing. Transient failures come back into the
queue when due; a run waits for them up to ``delivery.retry.wait`` seconds, and leaves later
ones to the next run.

Crash rule: rows a crashed run left ``sending`` are settled by the next run from the journals
first; only the rest go back to the queue. What can go out twice is what was in flight at the
crash: one message per SMTP session, one request per API session.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.context
import multiprocessing.util
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from digest.audience.tokens import make_token, preferences_url, unsubscribe_url
from digest.config import Settings
from digest.delivery.base import Provider
from digest.delivery.ratelimit import RateLimited, TokenBucket
from digest.delivery.retry import backoff
from digest.errors import DeliveryError, DigestError, TransientDeliveryError
from digest.factory import make_provider
from digest.models import (
    DeliveryStatus,
    Edition,
    EditionStatus,
    OutgoingMessage,
    RenderedVariant,
    SendResult,
    SendStatus,
    Subscriber,
)
from digest.render.email import render_variant
from digest.render.fastmime import MessageTemplate, compile_message
from digest.store import Claimed, Store, lock_owner
from digest.store import journal as journals

Clock = Callable[[], datetime]

# Variants ------------------------------------------------------------------------------------


def variant_key(edition: Edition, chosen: frozenset[str] | None) -> frozenset[str] | None:
    """The set of this edition's sections a subscriber who chose ``chosen`` gets; None means
    all of them, an empty set that none of their chosen sections has news this time."""
    if chosen is None:
        return None
    present = {s.key for s in edition.sections}
    chosen = frozenset(chosen & present)
    return None if chosen == present else chosen


Variants = dict[frozenset[str] | None, RenderedVariant]


def render_variants(
    settings: Settings, edition: Edition, choices: Iterable[frozenset[str] | None]
) -> Variants:
    """Compile each distinct variant once (the full edition always); empty ones are skipped.

    ``choices`` are the subscribers' chosen sections (None: every section), repeats welcome.
    """
    keys: set[frozenset[str] | None] = {variant_key(edition, c) for c in choices}
    keys.add(None)
    return {k: render_variant(edition, settings, sections=k) for k in keys if k is None or k}


def variant_for(
    settings: Settings, edition: Edition, variants: Variants, key: frozenset[str] | None
) -> RenderedVariant:
    """The compiled variant ``key``, compiling it now if the audience changed since."""
    if key not in variants:
        variants[key] = render_variant(edition, settings, sections=key)
    return variants[key]


def message_template(
    settings: Settings, edition: Edition, variant: RenderedVariant, *, now: datetime
) -> MessageTemplate:
    """``variant``'s MIME message with the personal parts left open (Date is ``now``)."""
    return compile_message(variant.html, variant.text, edition=edition, settings=settings, now=now)


def personal_message(
    settings: Settings,
    edition: Edition,
    variant: RenderedVariant,
    subscriber: Subscriber,
    *,
    now: datetime,
    template: MessageTemplate | None = None,
    bodies: bool = True,
) -> OutgoingMessage:
    """One subscriber's copy: tokens substituted into the compiled variant, MIME around it.

    ``template`` is ``variant``'s message compiled with :func:`message_template` for this
    ``now``; batches pass it so that only the personal parts are encoded per recipient.
    ``bodies=False``: ``raw`` only (see ``ProviderBase.raw_only``).
    """
    key = settings.signing_key
    unsub = unsubscribe_url(settings, make_token(key, subscriber.link_id, "unsubscribe"))
    prefs = preferences_url(settings, make_token(key, subscriber.link_id, "preferences"))
    template = template or message_template(settings, edition, variant, now=now)
    return template.render(
        subscriber=subscriber,
        unsubscribe_url=unsub,
        preferences_url=prefs,
        key=f"{edition.id}.{subscriber.id}",
        bodies=bodies,
    )


@dataclass
class Built:
    """A claimed batch turned into messages: what to send and what is settled already."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    by_key: dict[str, int] = field(default_factory=dict)  # message key -> delivery id
    unusable: dict[int, SendResult] = field(default_factory=dict)  # could not be built
    skipped: list[int] = field(default_factory=list)  # chose only sections without news


class Builder:
    """Builds the messages of claimed rows; each variant's template is compiled once."""

    def __init__(
        self,
        settings: Settings,
        edition: Edition,
        variants: Variants,
        *,
        now: datetime,
        bodies: bool = True,
    ) -> None:
        self.settings, self.edition, self.variants, self.now = settings, edition, variants, now
        self.bodies = bodies
        self.templates: dict[frozenset[str] | None, MessageTemplate] = {}

    def build(self, rows: Iterable[tuple[int, Subscriber]]) -> Built:
        out = Built()
        for delivery_id, subscriber in rows:
            key = variant_key(self.edition, subscriber.sections)
            if key == frozenset():
                out.skipped.append(delivery_id)
                continue
            try:
                variant = variant_for(self.settings, self.edition, self.variants, key)
                if key not in self.templates:
                    self.templates[key] = message_template(
                        self.settings, self.edition, variant, now=self.now
                    )
                msg = personal_message(
                    self.settings,
                    self.edition,
                    variant,
                    subscriber,
                    now=self.now,
                    template=self.templates[key],
                    bodies=self.bodies,
                )
            except DigestError as e:
                out.unusable[delivery_id] = SendResult(
                    f"{self.edition.id}.{subscriber.id}", SendStatus.PERMANENT, reason=str(e)
                )
                continue
            out.by_key[msg.key] = delivery_id
            out.messages.append(msg)
        return out


# Reports -------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one run did for one edition."""

    edition_id: str
    recipients: int = 0
    submitted: int = 0
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
        for name in ("submitted", "transient", "permanent", "exhausted", "skipped", "suppressed"):
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
        )


# The ledger ----------------------------------------------------------------------------------

LOCK_TTL = timedelta(minutes=15)


@contextmanager
def delivery_lock(store: Store, edition: Edition) -> Iterator[str]:
    """Hold the edition's delivery lease for the block; yields this run's owner name.

    A second run of the same edition raises DeliveryLocked instead of sending alongside. A
    background thread renews the lease every few minutes, so a batch that takes long (a slow
    server, a low rate limit) never lets it lapse while this run lives; each claim renews it
    too, and stops the run if it was lost.
    """
    name, owner = f"deliver:{edition.id}", lock_owner()
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


def journal_root(settings: Settings) -> Path:
    return settings.data_path / "journal"


def prepare_delivery(
    settings: Settings,
    store: Store,
    edition: Edition,
    subscribers: Sequence[Subscriber],
    *,
    now: datetime,
) -> DeliveryReport:
    """Write the ledger before sending anything: one row per (edition, subscriber).

    Call it holding :func:`delivery_lock`. Subscribers whose chosen sections carry nothing this
    time get no row. Rows of subscribers who left since are closed as skipped. Rows a crashed
    run left in ``sending`` are settled from its journal where it recorded an answer, and go
    back to pending where it did not. A sent edition gets no new rows: someone who subscribed
    after it went out does not get last period's email.
    """
    wanted = [s for s in subscribers if variant_key(edition, s.sections) != frozenset()]
    if edition.status is not EditionStatus.SENT:
        store.create_deliveries(edition.id, [s.id for s in wanted], now=now)
        store.set_edition_status(edition.id, EditionStatus.SENDING, now=now)
    report = DeliveryReport(edition.id, skipped=len(subscribers) - len(wanted))
    root = journal_root(settings)
    settle(settings, store, edition, journals.replay(root, edition.id), report, lambda: now)
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
        _Recorder(settings, store, report, clock).record(attempts, known, [])
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
    if done and edition.status is not EditionStatus.SENT:
        store.set_edition_status(edition.id, EditionStatus.SENT, now=now)
    return counts


def run_clock(start: datetime) -> Clock:
    """A clock that starts at ``start`` (the run's "now", fixed in tests) and runs in real time."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


# Sending -------------------------------------------------------------------------------------


class _Recorder:
    """Writes a batch's answers to the ledger and counts them into the report."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        report: DeliveryReport,
        clock: Clock,
    ) -> None:
        self.retry = settings.delivery.retry
        self.store, self.report, self.clock = store, report, clock
        self.rng = random.Random()

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
        return bool(answers) and all(r.status is SendStatus.TRANSIENT for r in answers.values())


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


def _send_rows(
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
    for start in range(0, len(rows), piece):
        built = builder.build(rows[start : start + piece])
        sent.skipped += built.skipped
        sent.answers |= built.unusable
        if not built.messages:
            continue
        by_key = built.by_key

        def noted(result: SendResult, by_key: dict[str, int] = by_key) -> None:
            delivery_id = by_key[result.key]
            sent.answers[delivery_id] = result  # first in memory: a failing journal loses nothing
            journal.write(delivery_id, result)

        try:
            results = provider.send(built.messages, noted)
        except DeliveryError as e:
            sent.error = e
            return sent
        sent.answers |= {by_key[r.key]: r for r in results}
    return sent


def deliver(
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Variants,
    *,
    now: datetime,
    owner: str,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
    provider: Provider | None = None,
    log: Callable[[str], None] | None = None,
) -> DeliveryReport:
    """Send every due row of ``edition``'s ledger; call it holding :func:`delivery_lock`.

    ``now`` is the run's time (the messages' Date); ``clock`` the time as it goes on (default:
    ``now`` plus the real time elapsed), by which retries come due. ``provider`` replaces the
    configured one in this process (tests, dry runs); with ``delivery.sessions`` above 1 each
    worker process builds its own from settings. Raises when the provider cannot be used at
    all (after giving unsent rows back), as the port says.
    """
    clock = clock or run_clock(now)
    report = DeliveryReport(edition.id)
    recorder = _Recorder(settings, store, report, clock)
    retry = settings.delivery.retry
    deadline = clock() + timedelta(seconds=retry.wait)
    started = time.perf_counter()
    real_wait = 0.0
    sessions = settings.delivery.sessions if provider is None else 1
    runner = (
        _PoolRunner(settings, store, edition, variants, now=now, owner=owner, clock=clock)
        if sessions > 1
        else _LocalRunner(
            settings, store, edition, variants, now=now, owner=owner, clock=clock, provider=provider
        )
    )
    try:
        while True:
            store.requeue_due(edition.id, now=clock())
            runner.drain(recorder)
            due = store.next_retry_at(edition.id)
            if due is None or due > deadline:
                break
            pause = max(0.0, (due - clock()).total_seconds())
            if log:
                log(f"edition {edition.id}: retrying transient failures in {pause:.0f} s")
            slept = time.perf_counter()
            sleep(pause)
            real_wait += time.perf_counter() - slept
            report.waited += pause
    finally:
        runner.close()
        report.elapsed = time.perf_counter() - started - real_wait
    # Every answer is in the ledger now; the journals have served their purpose.
    journals.discard(journal_root(settings), edition.id)
    return report


def _sender(
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


class _Runner:
    """What both ways of sending share: claiming the next batch under the lease, and
    settling batches whose sending was cut short."""

    def __init__(
        self, settings: Settings, store: Store, edition: Edition, *, owner: str, clock: Clock
    ) -> None:
        self.settings, self.store, self.edition = settings, store, edition
        self.owner, self.clock = owner, clock

    def claim(self) -> list[Claimed]:
        self.store.renew_lock(f"deliver:{self.edition.id}", self.owner, ttl=LOCK_TTL)
        size = self.settings.delivery.batch_size
        return self.store.claim_batch(self.edition.id, size, now=self.clock())

    def settle(
        self,
        claimed: Iterable[Claimed],
        report: DeliveryReport,
        known: Mapping[int, SendResult] | None = None,
    ) -> None:
        """Rows whose batch was cut short: keep what was answered (``known`` answers, and the
        journals'), give back the rest (never a row that may have gone out)."""
        ids = [c.delivery_id for c in claimed]
        journaled = journals.replay(journal_root(self.settings), self.edition.id)
        journaled.update(known or {})
        mine = {i: journaled[i] for i in ids if i in journaled}
        settle(self.settings, self.store, self.edition, mine, report, self.clock, give_back=ids)


class _LocalRunner(_Runner):
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
    ) -> None:
        super().__init__(settings, store, edition, owner=owner, clock=clock)
        self.own_provider = provider is None
        self.provider, self.builder = _sender(
            settings, edition, variants, now=now, rate=settings.delivery.rate, provider=provider
        )
        self.journal: journals.Journal | None = None

    def drain(self, recorder: _Recorder) -> None:
        while True:
            claimed = self.claim()
            if not claimed:
                return
            if self.journal is None:
                self.journal = journals.Journal(journal_root(self.settings), self.edition.id)
            rows = [(c.delivery_id, c.subscriber) for c in claimed]
            sent = Sent()
            try:
                _send_rows(self.builder, self.provider, self.journal, rows, sent)
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


# Worker processes ----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent(run: int, lifeline: Connection) -> None:
    """Have this worker die with the run that started it, so a killed run leaves no orphan
    sending the rest of its batches.

    ``lifeline`` is the reading end of a pipe whose only writing end the run holds: when the
    run dies, however it dies, the read ends (EOF) and a watcher thread ends this process at
    once. (A parent-death signal alone is not enough: under the fork server the parent is the
    server, which stays up while workers hold its pipe.) A run already gone means exit now.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # nothing is ever sent: this returns only when the run is gone
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    _check_run(run)


def _check_run(run: int) -> None:
    try:
        os.kill(run, 0)
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass  # alive, under another user (cannot happen for our own run, but harmless)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork server where there is one (POSIX): workers fork from a single-threaded server that
    has this module imported already, so each starts in milliseconds, not the half second a
    fresh interpreter takes; forking this process itself could deadlock (it runs threads)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


@dataclass
class _Worker:
    builder: Builder
    provider: Provider
    journal: journals.Journal
    parent: int


_WORKER: _Worker | None = None


def _worker_init(
    settings: Settings,
    edition: Edition,
    variants: Variants,
    now: datetime,
    rate: float,
    parent: int,
    lifeline: Connection,
) -> None:
    global _WORKER
    _die_with_parent(parent, lifeline)
    provider, builder = _sender(settings, edition, variants, now=now, rate=rate)
    journal = journals.Journal(journal_root(settings), edition.id)
    _WORKER = _Worker(builder, provider, journal, parent)

    def _close() -> None:
        provider.close()
        journal.close(remove=False)

    multiprocessing.util.Finalize(None, _close, exitpriority=10)


def _worker_send(rows: list[tuple[int, Subscriber]]) -> Sent:
    """One claimed batch in a worker. It never raises with answers in hand: an unexpected error
    comes back in ``error`` with whatever was answered before it."""
    assert _WORKER is not None, "worker not initialised"
    _check_run(_WORKER.parent)  # batches queued by a run that is gone are not sent
    sent = Sent()
    try:
        return _send_rows(_WORKER.builder, _WORKER.provider, _WORKER.journal, rows, sent)
    except Exception as e:
        sent.error = TransientDeliveryError(f"a sending process failed: {type(e).__name__}: {e}")
        return sent


class _PoolRunner(_Runner):
    """``delivery.sessions`` worker processes build and send; this one claims and records.

    Up to two batches per session are in flight, so a worker never waits for the ledger.
    """

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
    ) -> None:
        super().__init__(settings, store, edition, owner=owner, clock=clock)
        sessions = settings.delivery.sessions
        self.sessions = sessions
        context = _pool_context()
        # The workers hold the reading end; only this process holds the writing end.
        self.lifeline, lifeline_w = context.Pipe(duplex=False)
        self._lifeline_w = lifeline_w
        self.pool = ProcessPoolExecutor(
            sessions,
            mp_context=context,
            initializer=_worker_init,
            initargs=(
                settings,
                edition,
                variants,
                now,
                settings.delivery.rate / sessions,
                os.getpid(),
                self.lifeline,
            ),
        )

    def drain(self, recorder: _Recorder) -> None:
        inflight: dict[Future[Sent], list[Claimed]] = {}
        broken: list[Claimed] = []  # batches of a pool that broke: settled once it is down
        error: BaseException | None = None
        stop = False
        try:
            while True:
                while not stop and error is None and len(inflight) < 2 * self.sessions:
                    claimed = self.claim()
                    if not claimed:
                        stop = True
                        break
                    rows = [(c.delivery_id, c.subscriber) for c in claimed]
                    try:
                        inflight[self.pool.submit(_worker_send, rows)] = claimed
                    except BrokenProcessPool as e:
                        broken += claimed
                        error = self._died(e)
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    claimed = inflight.pop(future)
                    try:
                        sent = future.result()
                    except BrokenProcessPool as e:
                        broken += claimed
                        error = error or self._died(e)
                        continue
                    attempts = {c.delivery_id: c.attempts for c in claimed}
                    # Unanswered rows (the batch stopped early) are given back by the recorder.
                    if recorder.record(attempts, sent.answers, sent.skipped):
                        stop = True  # every answer transient: the provider is down
                    if sent.error is not None:
                        error = error or sent.error
        except BaseException:
            # Let the batches in flight finish (their workers are mid-send) before settling.
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.settle([c for b in inflight.values() for c in b] + broken, recorder.report)
            raise
        if broken:
            # A dead worker breaks the whole pool: wait until every worker has stopped, so no
            # journal is read while its worker may still be sending.
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.settle(broken, recorder.report)
        if error is not None:
            raise error

    def _died(self, e: BaseException) -> TransientDeliveryError:
        return TransientDeliveryError(
            f"edition {self.edition.id}: a sending process died ({e}); the answers it had "
            "are recorded, the rest go out on the next run"
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.lifeline.close()
        self._lifeline_w.close()


def deliver_dry(
    settings: Settings,
    provider: Provider,
    edition: Edition,
    subscribers: Sequence[Subscriber],
    already: set[int],
    *,
    now: datetime,
) -> DeliveryReport:
    """Build every message a real run would send and hand them to ``provider``; record nothing."""
    started = time.perf_counter()
    keys = {s.id: variant_key(edition, s.sections) for s in subscribers if s.id not in already}
    todo = [s for s in subscribers if keys.get(s.id, frozenset()) != frozenset()]
    variants = render_variants(settings, edition, [s.sections for s in todo])
    built = Builder(settings, edition, variants, now=now).build((s.id, s) for s in todo)
    results = provider.send(built.messages) if built.messages else []
    report = DeliveryReport(edition.id, recipients=len(todo), skipped=len(subscribers) - len(todo))
    report.submitted = sum(r.status is SendStatus.SUBMITTED for r in results)
    report.elapsed = time.perf_counter() - started
    return report
