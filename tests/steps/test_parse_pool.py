"""The parse workers: each holds the job it parses and the next one, answers come back to the
job that asked, and a worker that hangs or dies fails its jobs (the caller parses them) and is
replaced by a fresh one for the next."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from digest.gather.feeds import parse_feed
from digest.steps import gather, parse_pool
from digest.steps.parse_pool import DEPTH, ParsePool, ParseWorkerError

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def feed(title: str, items: int = 3) -> bytes:
    entries = "".join(
        f"<item><title>{title} {n}</title><link>https://example.org/{title}/{n}</link></item>"
        for n in range(items)
    )
    return f'<rss version="2.0"><channel><title>{title}</title>{entries}</channel></rss>'.encode()


def options(source: str) -> dict[str, Any]:
    return {"source": source, "url": "https://example.org/feed", "now": NOW}


def not_here() -> Any:
    raise AssertionError("parsed in this process, not by a worker")


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    p = ParsePool(1)
    yield p
    p.close()
    for w in list(p._workers):
        w.proc.kill()
        w.stop()


def test_a_busy_worker_takes_the_next_job_before_this_process_parses_one(pool) -> None:  # type: ignore[no-untyped-def]
    first = pool._take(wait=False)
    assert first is not None and first.jobs == 1
    # Busy with one job, it is given the next (to wait in its pipe) rather than none ...
    assert pool._take(wait=False) is first and first.jobs == DEPTH == 2
    # ... and only when it holds all it can does the caller parse the feed itself.
    assert pool._take(wait=False) is None
    pool._give_back(first, True)
    pool._give_back(first, True)
    assert pool._workers == [first] and first.jobs == 0 and first.proc.poll() is None


def test_jobs_written_back_to_back_each_get_their_own_answer(pool) -> None:  # type: ignore[no-untyped-def]
    titles = [f"feed{n}" for n in range(12)]
    answers: dict[str, Any] = {}

    def one(title: str) -> None:
        answers[title] = pool.parse(feed(title, 40), options(title), 60, not_here, here_ok=False)

    threads = [threading.Thread(target=one, args=(t,)) for t in titles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(pool._workers) == 1  # one worker answered them all, two at a time
    for title in titles:
        assert answers[title].parsed() == parse_feed(feed(title, 40), **options(title))


def test_a_hung_worker_fails_its_job_and_the_one_waiting_behind_it(pool) -> None:  # type: ignore[no-untyped-def]
    worker = pool._take(wait=False)
    assert worker is not None
    os.kill(worker.proc.pid, signal.SIGSTOP)  # it hangs: it reads no job and answers none
    errors: dict[str, BaseException] = {}

    def first() -> None:
        try:
            worker.run(feed("first"), options("first"), timeout=0.5)
        except BaseException as e:  # what it raised is the point
            errors["first"] = e
        finally:
            pool._give_back(worker, "first" not in errors)

    def second() -> None:
        try:
            pool.parse(feed("second"), options("second"), 60, not_here)
        except BaseException as e:
            errors["second"] = e

    try:
        ahead = threading.Thread(target=first)
        ahead.start()
        while worker._written < 1:  # the first job is in the pipe
            time.sleep(0.01)
        behind = threading.Thread(target=second)  # queued behind it, on the same worker
        behind.start()
        ahead.join(10)
        behind.join(10)
        assert not ahead.is_alive() and not behind.is_alive()
    finally:
        with contextlib.suppress(ProcessLookupError):  # stopped and reaped already
            os.kill(worker.proc.pid, signal.SIGCONT)
    assert worker._written == 2  # both went to the hung worker
    assert isinstance(errors["first"], ParseWorkerError)
    assert "did not answer in time" in str(errors["first"])
    # The second fails with it, long before its own 60 seconds are up.
    assert isinstance(errors["second"], ParseWorkerError)
    assert worker.proc.wait(5) == -signal.SIGKILL
    assert pool._workers == []
    # The next job starts a fresh worker.
    answer = pool.parse(feed("third"), options("third"), 60, not_here)
    assert answer.parsed() == parse_feed(feed("third"), **options("third"))
    assert pool._workers[0].proc.pid != worker.proc.pid


def test_a_worker_that_died_fails_the_job_and_is_replaced(pool) -> None:  # type: ignore[no-untyped-def]
    pool.parse(feed("warm"), options("warm"), 60, not_here)
    [worker] = pool._workers
    worker.proc.kill()
    worker.proc.wait()
    with pytest.raises(ParseWorkerError, match=str(worker.proc.pid)):
        pool.parse(feed("lost"), options("lost"), 60, not_here)
    assert pool._workers == []
    pool.parse(feed("next"), options("next"), 60, not_here)
    assert pool._workers and pool._workers[0].proc.pid != worker.proc.pid


def test_a_swollen_worker_is_retired_after_its_job(pool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(parse_pool, "RETIRE_MB", 0.0)  # every worker is past it after a job
    pool.parse(feed("one"), options("one"), 60, not_here)
    assert pool._workers == []  # stopped, not kept idle


def test_a_feed_is_parsed_here_when_its_worker_hangs(make_settings, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    body = feed("big", 1000)
    assert len(body) >= gather.POOL_MIN_BYTES
    settings = make_settings({"http": {"parse_workers": 2}})
    gather.shutdown_parse_pool()
    pool = gather._parse_pool(2)
    started = parse_pool.ParseWorker

    def stopped() -> parse_pool.ParseWorker:
        worker = started()
        os.kill(worker.proc.pid, signal.SIGSTOP)
        return worker

    monkeypatch.setattr(parse_pool, "ParseWorker", stopped)
    monkeypatch.setattr(gather, "PARSE_TIMEOUT", 0.5)
    try:
        with caplog.at_level(logging.WARNING, logger=gather.log.name):
            there = gather.parse(
                settings,
                body,
                source="big",
                url="https://example.org/feed",
                now=NOW,
                content_type=None,
            )
    finally:
        gather.shutdown_parse_pool()
    assert there == parse_feed(body, **options("big"), max_items=settings.http.max_feed_items)
    # Its body would not even fit in the pipe: the job was not taken in time.
    assert "took no job in time; parsing it in the gathering process" in caplog.text
    assert pool._workers == []
