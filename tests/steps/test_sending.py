"""The send loop over a real store: a batch cut short keeps what was answered and gives back the
rest; an outage stops the claiming."""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Sequence

import pytest

from digest.delivery.base import OnResult, ProviderBase, report, submitted
from digest.delivery.memory import MemoryProvider
from digest.models import (
    DeliveryStatus,
    EditionStatus,
    OutgoingMessage,
    SendResult,
    SendStatus,
)
from digest.store import journal as journals
from tests.steps.world import run


class Interrupted(BaseException):
    """Stands for an interrupt (Ctrl-C, a shutdown) arriving mid-batch."""


class HaltingProvider(ProviderBase):
    """Submits messages one at a time, answering each through ``on_result`` as the real
    providers do; on its first batch, raises ``error`` after ``halt_after`` messages."""

    name = "halting"

    def __init__(self, *, halt_after: int | None = None, error: BaseException | None = None):
        self.halt_after, self.error = halt_after, error
        self.sent: list[str] = []
        self.answered: list[str] = []  # recipients whose answer reached on_result

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for i, message in enumerate(messages):
            if self.halt_after is not None and i == self.halt_after and self.error is not None:
                error, self.halt_after = self.error, None
                raise error
            self.sent.append(message.recipient)
            self.answered.append(message.recipient)
            report(results, submitted(message.key, f"halt-{len(self.sent)}"), on_result)
        self.halt_after = None
        return results


@pytest.mark.parametrize("cause", ["value-error", "interrupt", "journal-write"])
def test_a_batch_cut_short_keeps_what_was_answered_and_gives_back_the_rest(
    world, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=6, delivery={"batch_size": 10})
    expected: type[BaseException]
    if cause == "value-error":
        provider, expected = HaltingProvider(halt_after=3, error=ValueError("bug")), ValueError
    elif cause == "interrupt":
        provider, expected = HaltingProvider(halt_after=3, error=Interrupted()), Interrupted
    else:
        # The disk fills up: the fourth answer cannot be journaled.
        provider, expected = HaltingProvider(), OSError
        write = journals.Journal.write
        calls = [0]

        def failing_write(self: journals.Journal, delivery_id: int, result: SendResult) -> None:
            calls[0] += 1
            if calls[0] == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(self, delivery_id, result)

        monkeypatch.setattr(journals.Journal, "write", failing_write)

    with pytest.raises(expected):
        run(w, provider)
    monkeypatch.undo()

    answered = set(provider.answered)
    assert answered, "the provider answered part of the batch before it stopped"
    ledger = w.ledger()
    # What the provider answered stays submitted: it must not go out again.
    assert w.with_status(DeliveryStatus.SUBMITTED) == answered
    assert all(ledger[e]["provider_id"] for e in answered)
    # The rest goes back to the queue, its claim's attempt undone.
    rest = set(w.emails) - answered
    assert w.with_status(DeliveryStatus.PENDING) == rest
    assert all(ledger[e]["attempts"] == 0 for e in rest)
    assert not w.with_status(DeliveryStatus.SENDING)

    again = run(w, provider)
    assert again.counts["submitted"] == 6
    sends = Counter(provider.sent)
    assert set(sends) == set(w.emails)
    assert [e for e, n in sends.items() if n > 1] == [], "nobody gets the edition twice"
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]


def test_an_outage_stops_claiming_after_the_first_batch(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=6, delivery={"batch_size": 2, "retry": {"wait": 0}})
    provider = MemoryProvider(fail={e: SendStatus.TRANSIENT for e in w.emails})
    result = run(w, provider)
    assert len(provider.batches) == 1, "after a batch of only transient answers, claim no more"
    ledger = w.ledger()
    first = {e for e, r in ledger.items() if r["status"] == DeliveryStatus.FAILED.value}
    assert len(first) == 2
    assert all(ledger[e]["failure"] == "transient" and ledger[e]["attempts"] == 1 for e in first)
    rest = set(w.emails) - first
    assert {e for e, r in ledger.items() if r["status"] == DeliveryStatus.PENDING.value} == rest
    assert all(ledger[e]["attempts"] == 0 for e in rest), "untried rows keep all their attempts"
    assert result.sent.transient == 2 and result.sent.exhausted == 0
    assert w.store.edition(w.edition.id).status is EditionStatus.SENDING  # type: ignore[union-attr]
