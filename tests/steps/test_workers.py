"""Several sending processes: each recipient gets the edition once, and the journals go."""

from __future__ import annotations

import email
from collections import Counter
from email.utils import parseaddr

from digest.models import (
    EditionStatus,
)
from tests.steps.world import run


def test_sending_processes_send_each_recipient_once(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=30, delivery={"provider": "outbox", "sessions": 2, "batch_size": 4})
    result = run(w, None)
    assert result.counts["submitted"] == 30 and result.sent.submitted == 30
    files = sorted(w.settings.outbox_path.rglob("*.eml"))
    recipients = Counter(
        parseaddr(email.message_from_bytes(f.read_bytes())["To"])[1] for f in files
    )
    assert recipients == Counter(w.emails)
    assert w.journal_files() == []
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
