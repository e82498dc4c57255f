"""What every flow reads of its run: its clock (the ``now`` parameter, or the current time) and
its parameters (for run names an operator reads in the UI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def run_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def run_parameters() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters or {})
