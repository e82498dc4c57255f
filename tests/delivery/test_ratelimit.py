"""The token bucket and the rate-limited provider wrapper, on a fake clock.

The clock only moves when the bucket sleeps (or when a test moves it on purpose), so every
duration here is exact fake time and nothing really waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from digest.delivery.base import Provider
from digest.delivery.memory import MemoryProvider
from digest.delivery.ratelimit import RateLimited, TokenBucket
from digest.errors import TransientDeliveryError
from digest.models import OutgoingMessage, SendResult, SendStatus

from . import assert_one_per_message, make_message


@dataclass
class FakeClock:
    """``clock()`` reads fake seconds; ``sleep(s)`` records the wait and moves the clock."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the bucket never sleeps for nothing"
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingBucket(TokenBucket):
    """A bucket that remembers what every ``take`` asked for and got."""

    def __init__(self, rate: float, *, clock: FakeClock, burst: float | None = None) -> None:
        super().__init__(rate, burst=burst, clock=clock, sleep=clock.sleep)
        self.asked: list[int] = []
        self.taken: list[int] = []

    def take(self, wanted: int) -> int:
        n = super().take(wanted)
        self.asked.append(wanted)
        self.taken.append(n)
        return n


def messages(count: int, *, start: int = 1) -> list[OutgoingMessage]:
    return [make_message(f"reader{i}@example.org", n=i) for i in range(start, start + count)]


def bucket(clock: FakeClock, rate: float = 10.0, burst: float | None = None) -> CountingBucket:
    return CountingBucket(rate, clock=clock, burst=burst)


# TokenBucket -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, -1, -0.5])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate)


def test_burst_defaults_to_one_second_of_rate() -> None:
    clock = FakeClock()
    b = TokenBucket(10, clock=clock, sleep=clock.sleep)
    assert b.burst == 10
    assert b.take(100) == 10
    assert clock.sleeps == []


@pytest.mark.parametrize(("burst", "expected"), [(0.2, 1.0), (0.0, 1.0), (1.0, 1.0), (3.0, 3.0)])
def test_burst_is_at_least_one(burst: float, expected: float) -> None:
    clock = FakeClock()
    b = TokenBucket(0.5, burst=burst, clock=clock, sleep=clock.sleep)
    assert b.burst == expected


def test_slow_rate_still_holds_one_token() -> None:
    clock = FakeClock()
    b = TokenBucket(0.25, clock=clock, sleep=clock.sleep)
    assert b.take(5) == 1
    assert clock.sleeps == []
    assert b.take(5) == 1
    assert clock.sleeps == [pytest.approx(4.0)]


def test_initial_burst_is_free() -> None:
    clock = FakeClock()
    b = bucket(clock)
    assert b.take(4) == 4
    assert b.take(6) == 6
    assert clock.sleeps == []
    assert clock.now == 1000.0


def test_an_empty_bucket_sleeps_for_one_token() -> None:
    clock = FakeClock()
    b = bucket(clock)
    b.take(10)
    assert b.take(5) == 1
    assert clock.sleeps == [pytest.approx(0.1)]


def test_25_messages_at_10_per_second_take_one_and_a_half_seconds_after_the_burst() -> None:
    clock = FakeClock()
    b = bucket(clock)
    start = clock.now
    left, slices = 25, []
    while left:
        n = b.take(left)
        slices.append(n)
        left -= n
    assert sum(slices) == 25
    assert slices[0] == 10  # the burst, at once
    assert clock.now - start == pytest.approx(1.5)
    assert sum(clock.sleeps) == pytest.approx(1.5)


def test_never_more_than_burst_at_once() -> None:
    clock = FakeClock()
    b = bucket(clock, burst=4)
    got = [b.take(100) for _ in range(30)]
    assert max(got) <= 4
    assert got[0] == 4
    # A long idle spell saves up no more than the burst.
    clock.advance(3600)
    assert b.take(100) == 4
    assert b.tokens == pytest.approx(0)


def test_take_returns_at_least_one() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=2)
    for wanted in (1, 1, 1, 5, 1, 7, 3):
        assert b.take(wanted) >= 1
    # Even a request for none gets (and spends) one.
    assert b.take(0) == 1


def test_take_never_returns_more_than_wanted() -> None:
    clock = FakeClock()
    b = bucket(clock)
    assert b.take(3) == 3
    assert b.take(1) == 1
    assert b.take(2) == 2
    assert b.tokens == pytest.approx(4)


def test_tokens_refill_with_elapsed_time() -> None:
    clock = FakeClock()
    b = bucket(clock)
    b.take(10)
    clock.advance(0.55)  # 5.5 tokens: five whole ones
    assert b.take(10) == 5
    assert clock.sleeps == []
    assert b.tokens == pytest.approx(0.5)
    # Half a token left: the next take sleeps for the other half.
    assert b.take(10) == 1
    assert clock.sleeps == [pytest.approx(0.05)]


def test_long_run_rate_is_respected() -> None:
    clock = FakeClock()
    b = bucket(clock, rate=20, burst=5)
    start, sent = clock.now, 0
    while sent < 405:
        sent += b.take(405 - sent)
    # 5 at once, then 400 more at 20 per second.
    assert clock.now - start == pytest.approx(20.0)


# RateLimited -------------------------------------------------------------------------------


def test_wrapper_is_a_provider_with_the_wrapped_name() -> None:
    clock = FakeClock()
    limited = RateLimited(MemoryProvider(), bucket(clock))
    assert isinstance(limited, Provider)
    assert limited.name == "memory"


def test_slices_match_the_tokens_taken() -> None:
    clock = FakeClock()
    provider = MemoryProvider()
    b = bucket(clock)
    batch = messages(25)
    results = RateLimited(provider, b).send(batch)
    assert_one_per_message(batch, results)
    assert [len(s) for s in provider.batches] == b.taken
    assert b.taken == [10] + [1] * 15
    # Each take asks for everything still to go.
    assert b.asked == [25 - sum(b.taken[:i]) for i in range(len(b.taken))]
    # Slices are consecutive and in order.
    assert [k for s in provider.batches for k in s] == [m.key for m in batch]
    assert clock.now - 1000.0 == pytest.approx(1.5)


def test_results_one_per_message_in_order_and_on_result_per_message() -> None:
    clock = FakeClock()
    provider = MemoryProvider()
    batch = messages(25)
    reported: list[SendResult] = []
    results = RateLimited(provider, bucket(clock)).send(batch, reported.append)
    assert_one_per_message(batch, results)
    assert reported == results
    assert all(r.status is SendStatus.SUBMITTED for r in results)
    assert provider.sent == batch
    assert len({r.provider_id for r in results}) == 25


def test_slices_grow_when_the_provider_is_slower_than_the_rate() -> None:
    clock = FakeClock()
    provider = MemoryProvider()
    b = bucket(clock)
    batch = messages(25)

    def slow(result: SendResult) -> None:
        clock.advance(0.2)  # each message costs 0.2 s: the bucket refills while sending

    results = RateLimited(provider, b).send(batch, slow)
    assert_one_per_message(batch, results)
    assert b.taken == [10, 10, 5]
    assert [len(s) for s in provider.batches] == [10, 10, 5]
    assert clock.sleeps == []


def test_per_message_failures_keep_their_place() -> None:
    clock = FakeClock()
    provider = MemoryProvider(
        fail={
            "reader3@example.org": SendStatus.PERMANENT,
            "READER12@example.org": SendStatus.TRANSIENT,
        }
    )
    batch = messages(14)
    results = RateLimited(provider, bucket(clock)).send(batch)
    assert_one_per_message(batch, results)
    statuses = {r.key: r.status for r in results}
    assert statuses[batch[2].key] is SendStatus.PERMANENT
    assert results[2].bounce
    assert statuses[batch[11].key] is SendStatus.TRANSIENT
    assert sum(s is SendStatus.SUBMITTED for s in statuses.values()) == 12


def test_empty_batch_touches_nothing() -> None:
    clock = FakeClock()
    provider = MemoryProvider(down=True)
    b = bucket(clock)
    reported: list[SendResult] = []
    assert RateLimited(provider, b).send([], reported.append) == []
    assert b.taken == []
    assert b.tokens == 10
    assert provider.batches == []
    assert reported == []


def test_an_outage_on_the_first_slice_is_raised() -> None:
    clock = FakeClock()
    provider = MemoryProvider(down=True)
    reported: list[SendResult] = []
    with pytest.raises(TransientDeliveryError, match="memory"):
        RateLimited(provider, bucket(clock)).send(messages(25), reported.append)
    assert reported == []
    assert provider.sent == []


def test_an_outage_on_a_later_slice_returns_the_rest_as_transient() -> None:
    clock = FakeClock()
    provider = MemoryProvider()
    b = bucket(clock)

    def sleep_then_fail(seconds: float) -> None:
        clock.sleep(seconds)
        provider.down = True  # the provider goes away while the bucket refills

    b.sleep = sleep_then_fail
    batch = messages(25)
    reported: list[SendResult] = []
    results = RateLimited(provider, b).send(batch, reported.append)

    # Nothing lost: one result per message, in order, each told to on_result.
    assert_one_per_message(batch, results)
    assert reported == results
    assert [r.status for r in results[:10]] == [SendStatus.SUBMITTED] * 10
    assert [r.status for r in results[10:]] == [SendStatus.TRANSIENT] * 15
    assert all("not attempted" in r.reason for r in results[10:])
    assert all("scripted outage" in r.reason for r in results[10:])
    assert not any(r.bounce for r in results)
    assert provider.sent == batch[:10]
    # It stopped at the failed slice rather than trying the rest one by one.
    assert b.taken == [10, 1]


def test_an_outage_after_a_few_slices() -> None:
    clock = FakeClock()
    provider = MemoryProvider()
    b = bucket(clock, rate=4)
    batch = messages(9)

    def on_result(result: SendResult) -> None:
        if result.key == batch[5].key:
            provider.down = True  # goes down after the sixth message went out

    results = RateLimited(provider, b).send(batch, on_result)
    assert_one_per_message(batch, results)
    assert b.taken == [4, 1, 1, 1]
    assert [r.status for r in results] == [SendStatus.SUBMITTED] * 6 + [SendStatus.TRANSIENT] * 3
    assert provider.sent == batch[:6]


def test_close_closes_the_wrapped_provider() -> None:
    clock = FakeClock()
    provider = MemoryProvider()
    with RateLimited(provider, bucket(clock)) as limited:
        limited.send(messages(2))
    assert provider.closed
