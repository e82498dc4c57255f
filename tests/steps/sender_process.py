"""A delivery run in a process of its own, for tests that kill it or run two at once.

``python -m tests.steps.sender_process CONFIG EDITION_ID`` does what the edition flow does
once an edition is approved (render, lock, prepare the ledger, deliver, finish), without
Prefect, and prints the report as JSON: what this run submitted, what it recorded from an
interrupted run's journals, the ledger's counts. Exit 3: another run holds the edition.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from digest.config import load_settings
from digest.errors import DeliveryLocked
from digest.render.variants import render_variants
from digest.steps.deliver import deliver
from digest.steps.ledger import delivery_lock, finish_delivery, prepare_delivery
from digest.store import Store


def main(config: str, edition_id: str) -> int:
    settings = load_settings(config)
    store = Store.open(settings.database_url)
    edition = store.edition(edition_id)
    if edition is None:
        print(f"no edition {edition_id}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    variants = render_variants(settings, edition, store.section_choices())
    try:
        with delivery_lock(store, edition) as owner:
            print("locked", flush=True)
            report = prepare_delivery(settings, store, edition, now=now)
            report.add(deliver(settings, store, edition, variants, now=now, owner=owner))
            counts = finish_delivery(store, edition, now=now)
    except DeliveryLocked as e:
        print(str(e), file=sys.stderr)
        return 3
    done = {"submitted": report.submitted, "recovered": report.recovered, "counts": counts}
    print(json.dumps(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
