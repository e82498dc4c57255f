"""Deliver an edition: every subscriber's copy, exactly once, as fast as allowed.

Call :func:`deliver` once :func:`~digest.steps.ledger.prepare_delivery` wrote the ledger, as
one owner of claims (the edition run holding the edition's lease, or a shard of a fan-out
beside others): it works through the ledger in batches (claim, build, send, record), in this
process or in ``delivery.sessions`` worker processes, under its claim lease. Transient failures
come back into the queue when due; a run waits for them up to ``delivery.retry.wait`` seconds,
and leaves later ones to the next run. :func:`deliver_dry` builds every message and records
nothing.

Crash rule: rows a dead owner (a crashed run or shard: its claim lease ran out, or its process
on this host is gone) left ``sending`` are settled by the owner that finds them, from the dead
one's crash record, once no pending row is left; only the rest go back to the queue. What can
go out twice is what was in flight at the crash: one message per SMTP session, one request per
API session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from digest.config import Settings
from digest.delivery.base import Provider
from digest.models import Edition, SendStatus
from digest.render.variants import Variants, render_variants
from digest.steps.ledger import (
    Clock,
    DeliveryReport,
    Recorder,
    claim_lease,
    crash_record,
    take_over_dead,
    unanswered,
)
from digest.steps.messages import Builder
from digest.steps.progress import ProgressHook
from digest.steps.sending import LocalRunner
from digest.steps.workers import PoolRunner
from digest.store import Store


def run_clock(start: datetime) -> Clock:
    """A clock that starts at ``start`` (the run's "now", fixed in tests) and runs in real time."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


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
    progress: ProgressHook | None = None,
    edition_lease: bool = True,
) -> DeliveryReport:
    """Send every due row of ``edition``'s ledger as ``owner``; call it holding
    :func:`~digest.steps.ledger.delivery_lock` as ``owner``, or with ``edition_lease=False``
    as a shard beside others (the edition run holds the lease then).

    It holds ``owner``'s claim lease throughout. Once no pending row is left, it takes over
    the rows of dead owners (see the module docstring) and sends what they left; rows of live
    owners stay theirs, however long.

    ``now`` is the run's time (the messages' Date); ``clock`` the time as it goes on (default:
    ``now`` plus the real time elapsed), by which retries come due. ``provider`` replaces the
    configured one in this process (tests, dry runs); with ``delivery.sessions`` above 1 each
    worker process builds its own from settings. Raises when the provider cannot be used at
    all (after giving unsent rows back), as the port says. ``progress`` hears after each
    batch how many rows were answered of those due (the process's installed hook without one).
    """
    clock = clock or run_clock(now)
    report = DeliveryReport(edition.id)
    to_answer = unanswered(store.delivery_counts(edition.id))
    crash = crash_record(settings, store, edition.id)
    recorder = Recorder(
        settings, store, report, clock, progress=progress, total=to_answer, owner=owner, crash=crash
    )
    retry = settings.delivery.retry
    deadline = clock() + timedelta(seconds=retry.wait)
    started = time.perf_counter()
    real_wait = 0.0
    sessions = settings.delivery.sessions if provider is None else 1
    with claim_lease(settings, store, owner):
        common: dict[str, Any] = {
            "now": now,
            "owner": owner,
            "clock": clock,
            "edition_lease": edition_lease,
        }
        runner = (
            PoolRunner(settings, store, edition, variants, **common)
            if sessions > 1
            else LocalRunner(settings, store, edition, variants, provider=provider, **common)
        )
        try:
            while True:
                store.requeue_due(edition.id, now=clock())
                runner.drain(recorder)
                if take_over_dead(settings, store, edition, owner, report, clock):
                    continue  # what the dead left unanswered is pending again: send it
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
        # Every answer is in the ledger now; this owner's journal has served its purpose.
        crash.discard(owner)
    return report


def edition_variants(settings: Settings, store: Store, edition: Edition) -> Variants:
    """Every variant the edition's subscribers chose, each compiled once."""
    return render_variants(settings, edition, store.section_choices(edition.digest))


def deliver_dry(
    settings: Settings,
    provider: Provider,
    edition: Edition,
    store: Store,
    *,
    now: datetime,
) -> DeliveryReport:
    """Build every message a real run would send and hand them to ``provider``; record nothing.

    The digest's active subscribers not yet sent this edition are read a page at a time, and
    each page's messages built and handed over before the next is read: memory does not grow
    with the list (a provider that keeps what it is given, as tests' in-memory one, does).
    """
    started = time.perf_counter()
    variants = edition_variants(settings, store, edition)
    builder = Builder(settings, edition, variants, now=now)
    report = DeliveryReport(edition.id)
    for page in store.subscriber_pages(digest=edition.digest, unsent_in=edition.id):
        built = builder.build((s.id, s) for s in page)
        report.skipped += len(built.skipped)
        report.recipients += len(page) - len(built.skipped)
        results = provider.send(built.messages) if built.messages else []
        report.submitted += sum(r.status is SendStatus.SUBMITTED for r in results)
    report.elapsed = time.perf_counter() - started
    return report
