"""What the Prefect server knows about this project's runs, for `digest status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Flows of this project, as named in flows/gather.py and flows/pipeline.py.
PROJECT_FLOWS = ("digest-run", "gather-section", "edition")


@dataclass(frozen=True)
class RunLine:
    started: datetime | None
    name: str
    state: str
    seconds: float | None
    flow: str
    # Why a failed or crashed run ended (its state's message); "" for any other run.
    failure: str = ""


def recent_runs(api_url: str, limit: int) -> list[RunLine]:
    """The last started runs of this project's flows on the server at ``api_url`` (whatever a
    Prefect profile says), newest first. Raises whatever the client raises when the server
    does not answer."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterId,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        flows = client.read_flows(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(PROJECT_FLOWS)))
        )
        names = {f.id: f.name for f in flows}
        if not names:
            return []
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(id=FlowFilterId(any_=list(names))),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
        )
    lines = []
    for r in runs:
        if r.end_time and r.start_time:
            seconds: float | None = (r.end_time - r.start_time).total_seconds()
        else:
            seconds = r.total_run_time.total_seconds() if r.total_run_time else None
        state = r.state_name or (r.state_type.value if r.state_type else "-")
        failure = ""
        if r.state is not None and (r.state.is_failed() or r.state.is_crashed()):
            failure = r.state.message or "no message"
        lines.append(
            RunLine(r.start_time, r.name, state, seconds, names.get(r.flow_id, "-"), failure)
        )
    return lines
