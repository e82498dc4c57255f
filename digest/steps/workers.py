"""The sending processes: with ``delivery.sessions`` above 1, that many worker processes build
and send (each with its own provider: its own SMTP connection) while the run claims and records;
building and sending are CPU-bound, so threads would gain nothing.

Workers fork from a fork server and die with their run: a *lifeline* pipe whose only writing end
the run holds ends them the moment the run is gone, however it went.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.util
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection

from digest.config import Settings
from digest.delivery.base import Provider
from digest.errors import TransientDeliveryError
from digest.models import Edition, Subscriber
from digest.render.variants import Variants
from digest.steps.ledger import Clock, Recorder, open_journal
from digest.steps.lifeline import check_run, die_with_parent
from digest.steps.messages import Builder
from digest.steps.sending import Runner, Sent, send_rows, sender
from digest.store import Claimed, Store
from digest.store import journal as journals


def pool_context() -> multiprocessing.context.BaseContext:
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
    owner: str,
) -> None:
    global _WORKER
    die_with_parent(parent, lifeline)
    provider, builder = sender(settings, edition, variants, now=now, rate=rate)
    journal = open_journal(settings, edition.id, owner)
    _WORKER = _Worker(builder, provider, journal, parent)

    def _close() -> None:
        provider.close()
        journal.close(remove=False)

    multiprocessing.util.Finalize(None, _close, exitpriority=10)


def _worker_send(rows: list[tuple[int, Subscriber]]) -> Sent:
    """One claimed batch in a worker. It never raises with answers in hand: an unexpected error
    comes back in ``error`` with whatever was answered before it."""
    assert _WORKER is not None, "worker not initialised"
    check_run(_WORKER.parent)  # batches queued by a run that is gone are not sent
    sent = Sent()
    try:
        return send_rows(_WORKER.builder, _WORKER.provider, _WORKER.journal, rows, sent)
    except Exception as e:
        sent.error = TransientDeliveryError(f"a sending process failed: {type(e).__name__}: {e}")
        return sent


class PoolRunner(Runner):
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
        edition_lease: bool = True,
    ) -> None:
        super().__init__(
            settings, store, edition, owner=owner, clock=clock, edition_lease=edition_lease
        )
        sessions = settings.delivery.sessions
        self.sessions = sessions
        context = pool_context()
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
                owner,
            ),
        )

    def drain(self, recorder: Recorder) -> None:
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
