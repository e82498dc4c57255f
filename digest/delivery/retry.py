"""When to try again: exponential backoff with full jitter, and the provider's Retry-After.

Pure functions; the caller owns the clock and the random source, so tests can pin both.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts tries so far, ≥ 1).

    Full jitter: uniform in ``[0, min(cap, base · 2^(attempt-1))]``, so many clients that failed
    together do not come back together. A provider's ``retry_after`` is a floor: waiting less
    would only be refused again. The result never exceeds ``cap``.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    wait = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return max(0.0, min(wait, cap))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (RFC 9110 §10.2.3) in seconds: delay-seconds or an HTTP-date.

    None when absent or unreadable; a date in the past gives 0.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
