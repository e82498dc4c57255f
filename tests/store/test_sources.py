"""Sources in the store: validators kept, failures counted in a row."""

from __future__ import annotations

from datetime import UTC, datetime

from digest.store import Store

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_source_validators_and_failures(store: Store) -> None:
    store.record_fetch_success("qiosk", "https://x/feed", etag='"v1"', last_modified=None, now=NOW)
    assert store.record_fetch_failure("qiosk", "https://x/feed", error="HTTP 500", now=NOW) == 1
    assert store.record_fetch_failure("qiosk", "https://x/feed", error="HTTP 500", now=NOW) == 2
    state = store.source_state("qiosk")
    assert state is not None
    assert state.etag == '"v1"' and state.consecutive_failures == 2 and state.last_error
    assert state.last_success_at == NOW
    store.record_fetch_success("qiosk", "https://x/feed", etag='"v2"', last_modified=None, now=NOW)
    state = store.source_state("qiosk")
    assert state is not None and state.consecutive_failures == 0 and state.last_error is None
