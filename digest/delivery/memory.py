"""An in-memory provider: the fake that tests and ``--dry-run`` share.

It keeps every submitted message in :attr:`MemoryProvider.sent` (a dry run's keeps none) and
can be scripted to fail: per recipient (transient or permanent) or as a whole (``down``), so
the deliver stage's retry and suppression paths can be exercised without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from digest.delivery.base import OnResult, ProviderBase, permanent, report, submitted, transient
from digest.errors import TransientDeliveryError
from digest.models import OutgoingMessage, SendResult, SendStatus


class MemoryProvider(ProviderBase):
    """Records messages instead of sending them.

    ``fail`` maps a recipient address (compared case-insensitively) to the status its messages
    get; ``down=True`` makes every ``send`` raise :class:`TransientDeliveryError`, as an
    unreachable server would. Both are plain attributes, so a test may change them between
    batches (e.g. bring the provider back up for the retry).
    """

    name = "memory"

    def __init__(
        self,
        *,
        fail: Mapping[str, SendStatus] | None = None,
        down: bool = False,
        keep: bool = True,
    ) -> None:
        self.fail: dict[str, SendStatus] = {}
        for address, status in (fail or {}).items():
            if status is SendStatus.SUBMITTED:
                raise ValueError(f"fail[{address!r}]: must be transient or permanent")
            self.fail[address.lower()] = SendStatus(status)
        self.down = down
        # keep=False (a dry run): count, keep nothing, so a long list takes no more memory.
        self.keep = keep
        self.sent: list[OutgoingMessage] = []
        # Keys per send() call, so tests can check how work was batched.
        self.batches: list[tuple[str, ...]] = []
        self.closed = False
        self._next_id = 1

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not messages:
            return []
        if self.down:
            raise TransientDeliveryError(
                f"provider 'memory': scripted outage, {len(messages)} message(s) not attempted"
            )
        if self.keep:
            self.batches.append(tuple(m.key for m in messages))
        results: list[SendResult] = []
        for message in messages:
            status = self.fail.get(message.recipient.lower())
            if status is SendStatus.TRANSIENT:
                result = transient(message.key, f"scripted: {message.recipient} try later")
            elif status is SendStatus.PERMANENT:
                result = permanent(
                    message.key, f"scripted: {message.recipient} refused", bounce=True
                )
            else:
                if self.keep:
                    self.sent.append(message)
                result = submitted(message.key, f"mem-{self._next_id}")
                self._next_id += 1
            report(results, result, on_result)
        return results

    def close(self) -> None:
        # Sending after close stays allowed, as with the real providers (they reconnect).
        self.closed = True
