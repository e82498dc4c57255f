"""MemoryProvider: records submissions and plays scripted failures."""

from __future__ import annotations

import pytest

from digest.delivery.base import Provider
from digest.delivery.memory import MemoryProvider
from digest.errors import TransientDeliveryError
from digest.models import SendStatus

from . import assert_one_per_message, make_message


def test_records_submitted_messages_with_distinct_ids() -> None:
    provider = MemoryProvider()
    messages = [make_message(f"r{i}@example.org", n=i) for i in range(3)]
    results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert all(r.status is SendStatus.SUBMITTED for r in results)
    assert [r.provider_id for r in results] == ["mem-1", "mem-2", "mem-3"]
    assert provider.sent == messages
    assert provider.send([make_message(n=9)])[0].provider_id == "mem-4"
    assert provider.batches == [tuple(m.key for m in messages), (make_message(n=9).key,)]


def test_scripted_failures_per_recipient() -> None:
    provider = MemoryProvider(
        fail={"Bounce@example.org": SendStatus.PERMANENT, "later@example.org": SendStatus.TRANSIENT}
    )
    messages = [
        make_message("ok@example.org", n=1),
        make_message("bounce@example.org", n=2),
        make_message("later@example.org", n=3),
    ]
    results = provider.send(messages)
    assert_one_per_message(messages, results)
    assert [r.status for r in results] == [
        SendStatus.SUBMITTED,
        SendStatus.PERMANENT,
        SendStatus.TRANSIENT,
    ]
    assert "bounce@example.org" in results[1].reason
    assert provider.sent == messages[:1]


def test_down_raises_transient_and_can_come_back() -> None:
    provider = MemoryProvider(down=True)
    with pytest.raises(TransientDeliveryError) as caught:
        provider.send([make_message()])
    assert caught.value.retryable
    assert provider.sent == [] and provider.batches == []
    provider.down = False
    assert provider.send([make_message()])[0].status is SendStatus.SUBMITTED


def test_empty_batch_and_context_manager() -> None:
    with MemoryProvider(down=True) as provider:
        assert provider.send([]) == []  # nothing to attempt, so not even an outage shows
        assert isinstance(provider, Provider)
    assert provider.closed


def test_submitted_is_not_a_failure_status() -> None:
    with pytest.raises(ValueError, match="transient or permanent"):
        MemoryProvider(fail={"a@example.org": SendStatus.SUBMITTED})
