"""Fan-out: one edition sent by several shard runs at once, each on any worker of the work pool.

With ``delivery.shards`` above 1 (PostgreSQL only), the edition run writes the ledger once
(holding the edition's lease), then :func:`fan_out` starts that many shard runs (the flow layer
passes how: a ``deliver-shard`` deployment run on the work pool) and waits until the ledger says
done. Each shard (:func:`deliver_shard`) sends as an owner of its own, with its own
``delivery.sessions`` processes, claiming batches from the shared ledger beside the others.

Nothing waits on a dead shard: a shard whose claim lease ran out (its machine died, its worker
was killed) has its rows taken over by whichever owner finds them, the edition run included,
which also sends what is left itself once every shard run has ended. The edition run then marks
the edition sent, once (:func:`~digest.steps.ledger.finish_delivery`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from digest.config import Settings
from digest.errors import EditionStateError
from digest.models import Edition, EditionStatus
from digest.render.variants import Variants
from digest.steps.deliver import deliver, edition_variants
from digest.steps.ledger import DeliveryReport, unanswered
from digest.store import Store, lock_owner

Log = Callable[[str], None]


def shard_settings(settings: Settings) -> Settings:
    """What one shard sends with: the configured rate shared among the shards."""
    shards = settings.delivery.shards
    if not settings.delivery.rate or shards <= 1:
        return settings
    delivery = settings.delivery.model_copy(update={"rate": settings.delivery.rate / shards})
    return settings.model_copy(update={"delivery": delivery})


def deliver_shard(
    settings: Settings,
    store: Store,
    edition_id: str,
    shard: int,
    *,
    now: datetime,
    log: Log | None = None,
) -> DeliveryReport:
    """One shard of an edition's fan-out: send rows of the ledger as an owner of its own, beside
    the other shards, until none is left to claim (nor any of a dead owner to take over).

    An edition that is not being sent (already sent, say) has nothing to do. Raises
    EditionStateError for an edition the store does not have.
    """
    edition = store.edition(edition_id)
    if edition is None:
        raise EditionStateError(edition_id, "", f"deliver (shard {shard})")
    if edition.status is not EditionStatus.SENDING:
        if log:
            log(f"edition {edition_id} is {edition.status.value}: shard {shard} has nothing to do")
        return DeliveryReport(edition_id)
    variants = edition_variants(settings, store, edition)
    owner = f"{lock_owner()}:shard-{shard}"
    if log:
        log(f"edition {edition_id}: shard {shard} sends as {owner}")
    return deliver(
        shard_settings(settings),
        store,
        edition,
        variants,
        now=now,
        owner=owner,
        log=log,
        edition_lease=False,
    )


def fan_out(
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Variants,
    *,
    now: datetime,
    owner: str,
    start: Callable[[int], object],
    running: Callable[[], bool],
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Log | None = None,
) -> DeliveryReport:
    """Start ``delivery.shards`` shard runs (``start(n)`` for n = 0, 1, ...) and wait until the
    ledger is done; call it holding the edition's lease as ``owner``, after
    :func:`~digest.steps.ledger.prepare_delivery`.

    ``running()`` says whether any shard run may still be sending. Every ``poll`` seconds the
    ledger is read: rows of a dead owner are taken over (this run delivers as ``owner``, which
    settles them and sends what they left, beside the live shards); once no shard run is left,
    this run sends whatever remains. A shard that cannot be started is reported and its part
    sent by the others (or by this run). The report counts every row the fan-out submitted.
    """
    say = log or (lambda _m: None)
    before = store.delivery_counts(edition.id)
    started_at = time.perf_counter()
    report = DeliveryReport(edition.id)
    started = 0
    for n in range(settings.delivery.shards):
        try:
            start(n)
            started += 1
        except Exception as e:  # a missing deployment, an unreachable API: sent without it
            report.note_failure(f"shard {n} not started: {type(e).__name__}: {e}")
            say(f"edition {edition.id}: shard {n} could not be started ({e}); sent without it")
    say(f"edition {edition.id}: {started} shard run(s) started")
    mine = DeliveryReport(edition.id)

    def help_out() -> None:
        mine.add(deliver(settings, store, edition, variants, now=now, owner=owner, log=log))

    while started and running():
        if not unanswered(store.delivery_counts(edition.id)):
            break
        dead = store.dead_owners(edition.id)
        if dead:
            say(f"edition {edition.id}: taking over the rows of {len(dead)} dead owner(s)")
            help_out()
        sleep(poll)
    if unanswered(store.delivery_counts(edition.id)):
        say(f"edition {edition.id}: no shard run is sending; this run sends what is left")
        help_out()
    after = store.delivery_counts(edition.id)
    report.add(mine)
    # Everything the fan-out submitted, by every owner (not what it recorded for the dead).
    report.submitted = after["submitted"] - before["submitted"] - report.recovered
    report.elapsed = time.perf_counter() - started_at
    return report
