"""Leases in the store: a second holder is refused, a lease that ran out or whose holder died is
taken over."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.store import Store


def test_locks_exclude_a_second_holder_and_recover_from_crashes(store: Store) -> None:
    from digest.errors import DeliveryLocked

    ttl = timedelta(minutes=5)
    store.acquire_lock("deliver:x", "me", ttl=ttl)
    store.acquire_lock("deliver:x", "me", ttl=ttl)  # re-entrant for the same owner
    with pytest.raises(DeliveryLocked, match="another run"):
        store.acquire_lock("deliver:x", "someone-else", ttl=ttl)
    # An expired lease is taken over; the old holder then learns it lost it.
    store.release_lock("deliver:x", "me")
    store.acquire_lock("deliver:x", "old", ttl=timedelta(seconds=-1))
    store.acquire_lock("deliver:x", "new", ttl=ttl)
    with pytest.raises(DeliveryLocked, match="lost"):
        store.renew_lock("deliver:x", "old", ttl=ttl)
    store.renew_lock("deliver:x", "new", ttl=ttl)


def test_a_dead_process_on_this_host_does_not_hold_a_lock(store: Store) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:abcd"
    store.acquire_lock("deliver:y", owner, ttl=timedelta(hours=1))
    store.acquire_lock("deliver:y", "survivor", ttl=timedelta(hours=1))
