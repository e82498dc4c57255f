"""What every flow reads of its run: its clock (the ``now`` parameter, or the current time), its
parameters (for run names an operator reads in the UI), and which task failures are retried."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from digest.errors import DeliveryLocked, DigestError


def run_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def run_time(value: Any) -> datetime:
    """The run's clock from its ``now`` parameter: a datetime, an ISO string (from a
    deployment), or nothing (the current time)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = None
    return run_now(value if isinstance(value, datetime) else None)


def run_parameters() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters or {})


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what can pass: errors that say a retry helps (a lost delivery lease is
    transient for the run as a whole, but retrying the task would only find it lost again)."""
    try:
        state.result()
    except DeliveryLocked:
        return False
    except DigestError as e:
        return e.retryable
    except Exception:
        return False
    return False
