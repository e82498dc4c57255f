"""Leases in the store: a named lock held by one run, renewed while it works, and taken over
when its holder ran out of time or died on this host. Two kinds: an edition's delivery lease
(``deliver:<edition>``, one run prepares and finishes it) and each sending owner's claim lease
(``claim:<owner>``, see :func:`claim_lock`), which says its claimed ledger rows are in hand."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.errors import DeliveryLocked
from digest.store import schema as t
from digest.store.base import StoreBase, _insert_ignore


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_owner() -> str:
    """A name for this process that other runs can show and, on this host, check for life."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_lock(owner: str) -> str:
    """The name of ``owner``'s claim lease: while it lives, nobody else settles its rows."""
    return f"claim:{owner}"


def stale(held: Any, now: datetime) -> bool:
    """Whether a lease row (``owner``, ``expires_at``) is dead: out of time, or held by a
    process of this host that no longer exists (a crash)."""
    if held.expires_at <= now:
        return True
    host, _, rest = held.owner.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid))


class LockStore(StoreBase):
    """The ``locks`` table: one row per lease held."""

    # Leases use the wall clock, not a run's (possibly fixed) ``now``: they guard real time.
    def acquire_lock(self, name: str, owner: str, *, ttl: timedelta) -> None:
        """Take the lease ``name`` or raise DeliveryLocked naming who holds it.

        A lease whose holder's time ran out, or whose holder was a process on this host that no
        longer exists (a crash), is taken over.
        """
        now = datetime.now(UTC)
        row = {"name": name, "owner": owner, "acquired_at": now, "expires_at": now + ttl}
        with self.engine.begin() as c:
            if _insert_ignore(c, t.locks, [row], ["name"]):
                return
            held = c.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
            if held is None or held.owner == owner or stale(held, now):
                taken = c.execute(
                    sa.update(t.locks)
                    .where(t.locks.c.name == name)
                    .where(t.locks.c.owner == (held.owner if held else owner))
                    .values(owner=owner, acquired_at=now, expires_at=now + ttl)
                )
                if taken.rowcount:
                    return
                held = c.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
        assert held is not None
        raise DeliveryLocked(
            f"{name}: another run ({held.owner}) holds it since "
            f"{held.acquired_at:%Y-%m-%d %H:%M:%S} UTC, until {held.expires_at:%H:%M:%S} UTC "
            "unless it renews; wait for it to finish"
        )

    def renew_lock(self, name: str, owner: str, *, ttl: timedelta) -> None:
        """Extend our lease; raise DeliveryLocked if it is no longer ours."""
        now = datetime.now(UTC)
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.locks)
                .where(t.locks.c.name == name, t.locks.c.owner == owner)
                .values(expires_at=now + ttl)
            )
        if not res.rowcount:
            raise DeliveryLocked(f"{name}: the lease was lost (taken over by another run)")

    def release_lock(self, name: str, owner: str) -> None:
        with self.engine.begin() as c:
            c.execute(sa.delete(t.locks).where(t.locks.c.name == name, t.locks.c.owner == owner))
