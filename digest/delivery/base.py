"""The provider port: what the deliver stage may expect of anything that sends messages.

Contract of :meth:`Provider.send`:

- It takes a batch of messages and returns **exactly one** :class:`SendResult` per message, in
  the same order, each carrying that message's ``key``. This holds even when the connection
  drops halfway: messages that could not be attempted come back ``TRANSIENT``, never missing.
- Per-message outcomes are results, not exceptions: ``SUBMITTED`` (the provider accepted it;
  "submitted", not "delivered": a bounce may still follow), ``TRANSIENT`` (try again later) or
  ``PERMANENT`` (the same message will fail the same way).
- It raises only when the whole batch cannot be attempted at all, before anything of it was
  sent: :class:`~digest.errors.TransientDeliveryError` (cannot connect, timeout, overloaded) or
  :class:`~digest.errors.PermanentDeliveryError` (credentials refused, misconfiguration). The
  message names the provider and where it tried (e.g. ``host:port``). After a raise, nothing of
  the batch was submitted, so the caller may retry the batch as a whole.
- An empty batch returns ``[]`` without touching the network or the disk.
- ``on_result``, when given, is called with each result as soon as it is known and before the
  next message (or request) is attempted. The deliver stage journals results through it, so a
  crash loses at most what was in flight: one message per SMTP session, one request per API
  session. A provider with ``waits_for_results`` set may begin the next message's exchange
  while the last result is still being written (an ``on_result`` with a ``wait`` method, see
  :func:`ready`), as long as it calls :func:`ready` before that message's point of no return
  (SMTP: the body); for any other provider, ``on_result`` has written each result when it
  returns.
- A permanent failure caused by the recipient's address sets ``bounce`` (the subscriber is
  suppressed); a transient one may carry the provider's ``retry_after`` hint.
- Submission is at least once: when a connection is lost after a message was handed over but
  before the provider confirmed it, the message is reported ``TRANSIENT`` and may arrive twice
  once retried. Providers that accept an idempotency key use ``OutgoingMessage.key``.

:meth:`Provider.close` releases connections and may be called more than once; a provider may
reopen lazily if ``send`` is called again. Providers are not thread-safe: give each worker
(thread or process) its own instance, built from settings. Wrappers that add rate limits or fan
a batch out to processes are themselves Providers, so the deliver stage never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from digest.models import OutgoingMessage, SendResult, SendStatus

OnResult = Callable[[SendResult], None]


@runtime_checkable
class Provider(Protocol):
    """Anything that can submit a batch of messages. See the module docstring for the contract."""

    name: str
    # True: sends ``OutgoingMessage.raw`` only, so ``html``/``text`` need not be built.
    raw_only: bool
    # True: calls :func:`ready` before each message's point of no return, so ``on_result`` may
    # still be writing the last result when it returns.
    waits_for_results: bool

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        """Submit ``messages``; one result per message, in order."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


class ProviderBase:
    """Shared plumbing for providers: ``with provider: ...`` closes it on the way out.

    ``raw_only``: the provider sends ``OutgoingMessage.raw`` and never reads ``html`` or
    ``text``, so the deliver stage need not build them (SMTP, outbox).
    """

    name: str = "provider"
    raw_only: bool = False
    waits_for_results: bool = False

    def close(self) -> None:
        """Nothing to release by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def submitted(key: str, provider_id: str) -> SendResult:
    """The provider accepted the message; ``provider_id`` lets bounces be matched later."""
    return SendResult(key=key, status=SendStatus.SUBMITTED, provider_id=provider_id)


def transient(key: str, reason: str, *, retry_after: float | None = None) -> SendResult:
    """The message was not accepted this time; trying again later may work."""
    return SendResult(key=key, status=SendStatus.TRANSIENT, reason=reason, retry_after=retry_after)


def permanent(key: str, reason: str, *, bounce: bool = False) -> SendResult:
    """The message was refused for good; sending it again fails the same way. ``bounce``: the
    recipient's address is the cause (suppress it)."""
    return SendResult(key=key, status=SendStatus.PERMANENT, reason=reason, bounce=bounce)


def ready(on_result: OnResult | None) -> None:
    """Before a message's point of no return: wait until every result given to ``on_result``
    is written down (when it writes them in the background: has a ``wait`` method); raises
    what the writing raised, and the message must then not go out."""
    wait = getattr(on_result, "wait", None)
    if wait is not None:
        wait()


def report(results: list[SendResult], result: SendResult, on_result: OnResult | None) -> None:
    """Append ``result`` and tell ``on_result`` at once (before anything else is attempted)."""
    results.append(result)
    if on_result is not None:
        on_result(result)
