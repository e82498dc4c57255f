"""Backoff with full jitter and the reading of ``Retry-After``.

Both functions are pure: the random source and "now" are passed in, so every value here is
reproducible.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from digest.delivery.retry import backoff, parse_retry_after

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
SAMPLES = 400


def http_date(when: datetime) -> str:
    """An IMF-fixdate as servers send it: ``Sat, 28 Nov 2026 12:00:30 GMT``."""
    return format_datetime(when, usegmt=True)


# backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_full_jitter_stays_within_the_doubling_ceiling(attempt: int) -> None:
    ceiling = 0.5 * 2 ** (attempt - 1)
    rng = random.Random(attempt)
    waits = [backoff(attempt, base=0.5, cap=1000.0, rng=rng) for _ in range(SAMPLES)]
    assert all(0.0 <= w <= ceiling for w in waits)
    # Full jitter spreads over the whole range, not just near the ceiling or near zero.
    assert max(waits) > 0.9 * ceiling
    assert min(waits) < 0.1 * ceiling
    assert sum(waits) / len(waits) == pytest.approx(ceiling / 2, rel=0.15)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_backoff_draws_uniformly_from_the_given_rng(attempt: int) -> None:
    ceiling = 2.0 * 2 ** (attempt - 1)
    expected = random.Random(42)
    got = random.Random(42)
    for _ in range(20):
        want = expected.uniform(0, ceiling)
        assert backoff(attempt, base=2.0, cap=1000.0, rng=got) == pytest.approx(want)


def test_same_seed_gives_the_same_waits() -> None:
    first = [backoff(a, base=1.0, cap=60.0, rng=random.Random(7)) for a in range(1, 7)]
    again = [backoff(a, base=1.0, cap=60.0, rng=random.Random(7)) for a in range(1, 7)]
    assert first == again


def test_the_ceiling_doubles_with_each_attempt() -> None:
    # With an rng that always draws the top of the range, the ceiling itself is visible.
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    waits = [backoff(a, base=1.5, cap=1000.0, rng=Top()) for a in range(1, 7)]
    assert waits == [1.5, 3.0, 6.0, 12.0, 24.0, 48.0]


@pytest.mark.parametrize("attempt", [4, 6, 10, 30, 200])
def test_cap_bounds_every_wait(attempt: int) -> None:
    rng = random.Random(attempt)
    waits = [backoff(attempt, base=1.0, cap=5.0, rng=rng) for _ in range(SAMPLES)]
    assert all(0.0 <= w <= 5.0 for w in waits)
    # Past the cap the range is [0, cap]: the waits reach near it.
    assert max(waits) > 4.5


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(3)
    waits = [backoff(1, base=1.0, cap=60.0, retry_after=7.0, rng=rng) for _ in range(SAMPLES)]
    # The jittered draw is at most 1 s, so every wait is exactly the provider's hint.
    assert waits == [7.0] * SAMPLES


def test_retry_after_below_the_draw_leaves_the_jitter_alone() -> None:
    with_hint = [
        backoff(6, base=1.0, cap=60.0, retry_after=0.5, rng=random.Random(s)) for s in range(50)
    ]
    without = [backoff(6, base=1.0, cap=60.0, rng=random.Random(s)) for s in range(50)]
    assert with_hint == [max(w, 0.5) for w in without]
    assert all(w >= 0.5 for w in with_hint)
    assert len(set(with_hint)) > 10  # still jittered


def test_retry_after_never_lifts_the_wait_beyond_the_cap() -> None:
    rng = random.Random(5)
    assert backoff(1, base=1.0, cap=60.0, retry_after=3600.0, rng=rng) == 60.0
    assert backoff(6, base=1.0, cap=60.0, retry_after=60.0001, rng=rng) == 60.0


def test_retry_after_zero_changes_nothing() -> None:
    assert backoff(3, base=1.0, cap=60.0, retry_after=0.0, rng=random.Random(9)) == backoff(
        3, base=1.0, cap=60.0, rng=random.Random(9)
    )


@pytest.mark.parametrize("attempt", [0, -1, -50])
def test_attempt_below_one_uses_the_base_as_ceiling(attempt: int) -> None:
    rng = random.Random(11)
    waits = [backoff(attempt, base=2.0, cap=60.0, rng=rng) for _ in range(SAMPLES)]
    assert all(0.0 <= w <= 2.0 for w in waits)
    assert max(waits) > 1.8


def test_zero_cap_means_no_wait() -> None:
    assert backoff(5, base=1.0, cap=0.0, retry_after=30.0, rng=random.Random(1)) == 0.0


def test_zero_base_means_no_wait_without_a_hint() -> None:
    assert backoff(4, base=0.0, cap=60.0, rng=random.Random(1)) == 0.0
    assert backoff(4, base=0.0, cap=60.0, retry_after=2.5, rng=random.Random(1)) == 2.5


def test_without_an_rng_the_module_random_is_used() -> None:
    waits = [backoff(3, base=1.0, cap=60.0) for _ in range(100)]
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 50


# parse_retry_after -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("2", 2.0), ("120", 120.0), ("3600", 3600.0), ("86400", 86400.0)],
)
def test_delay_seconds(value: str, seconds: float) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize("value", [" 30", "30 ", "\t30\r\n", "  30  "])
def test_delay_seconds_with_surrounding_whitespace(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 30.0


def test_http_date_in_the_future() -> None:
    assert parse_retry_after(http_date(NOW + timedelta(seconds=90)), now=NOW) == 90.0


def test_http_date_in_the_future_with_whitespace() -> None:
    value = f"  {http_date(NOW + timedelta(minutes=5))}  "
    assert parse_retry_after(value, now=NOW) == 300.0


def test_http_date_in_the_past_gives_zero() -> None:
    assert parse_retry_after(http_date(NOW - timedelta(hours=1)), now=NOW) == 0.0


def test_http_date_equal_to_now_gives_zero() -> None:
    assert parse_retry_after(http_date(NOW), now=NOW) == 0.0


def test_http_date_is_measured_from_the_given_now() -> None:
    value = http_date(NOW + timedelta(seconds=600))
    assert parse_retry_after(value, now=NOW) == 600.0
    assert parse_retry_after(value, now=NOW + timedelta(seconds=200)) == 400.0
    assert parse_retry_after(value, now=NOW + timedelta(seconds=900)) == 0.0


def test_http_date_with_a_numeric_offset() -> None:
    # 13:00 at +01:00 is 12:00 UTC: 60 s after NOW is 13:01 +01:00.
    assert parse_retry_after("Sat, 28 Nov 2026 13:01:00 +0100", now=NOW) == 60.0


def test_http_date_without_a_zone_is_read_as_utc() -> None:
    # "-0000" means "zone unknown": parsed as naive, then taken as UTC.
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:45 -0000", now=NOW) == 45.0


def test_http_date_without_now_uses_the_current_time() -> None:
    far = datetime.now(UTC) + timedelta(days=1)
    seconds = parse_retry_after(http_date(far))
    assert seconds is not None
    assert 86000 < seconds <= 86400
    assert parse_retry_after(http_date(datetime(2000, 1, 1, tzinfo=UTC))) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "\t\r\n"])
def test_absent_or_blank_gives_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "-5",
        "1.5",
        "2 seconds",
        "0x10",
        "Someday, 99 Foo 2026",
        "Sat, 28 Nov 2026 25:61:00 GMT",
        "Sat, 31 Feb 2026 12:00:00 GMT",
        "Sat, 28 Nov",
        "\x00",
    ],
)
def test_garbage_gives_none(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u00b3", "1\u00b9"])
def test_non_ascii_digit_characters_give_none(value: str) -> None:
    """Header values arrive decoded as Latin-1, where ``²``, ``³`` and ``¹`` are single bytes.

    ``str.isdigit`` is true for them but ``float`` cannot read them: the value is unreadable
    and must give None rather than raise.
    """
    assert parse_retry_after(value, now=NOW) is None
