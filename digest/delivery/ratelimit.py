"""A rate limit around any provider: at most ``rate`` messages per second.

A token bucket holding at most one second's worth of messages: a batch is handed to the
provider in slices as tokens allow, so a provider with a sending quota is never pushed past it
and an API that takes big requests still gets them as big as the rate allows. The wrapper is
itself a :class:`~digest.delivery.base.Provider`, so the deliver stage does not change. Each
sending process has its own bucket; the deliver stage gives each ``rate / sessions``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from digest.delivery.base import OnResult, Provider, ProviderBase, report, transient
from digest.errors import DeliveryError
from digest.models import OutgoingMessage, SendResult


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. ``clock``/``sleep`` injectable."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, wanted: int) -> int:
        """Wait for tokens; take up to ``wanted``; return how many.

        It waits for a tenth of a second's worth (or ``wanted``, if fewer), not for one token:
        an API provider then gets requests of a useful size rather than one message each.
        """
        need = max(1, min(wanted, math.floor(self.burst / 10)))
        self._refill()
        if self.tokens < need:
            self.sleep((need - self.tokens) / self.rate)
            self._refill()
        n = max(1, min(wanted, math.floor(self.tokens)))
        self.tokens -= n
        return n


class RateLimited(ProviderBase):
    """``provider`` behind a :class:`TokenBucket`."""

    def __init__(self, provider: Provider, bucket: TokenBucket) -> None:
        self.provider = provider
        self.bucket = bucket
        self.name = provider.name
        self.raw_only = provider.raw_only
        self.waits_for_results = getattr(provider, "waits_for_results", False)

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        results: list[SendResult] = []
        start = 0
        while start < len(messages):
            n = self.bucket.take(len(messages) - start)
            piece = messages[start : start + n]
            try:
                results.extend(self.provider.send(piece, on_result))
            except DeliveryError as e:
                if not results:
                    raise  # nothing of the batch went out yet: the caller may retry it whole
                for m in messages[start:]:
                    report(results, transient(m.key, f"not attempted: {e}"), on_result)
                return results
            start += n
        return results

    def close(self) -> None:
        self.provider.close()
