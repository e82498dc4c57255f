"""The approval gate: an edition run that needs an editor pauses and waits for a decision.

The edition flow tags its run with :func:`approval_tag` and pauses with
``pause_flow_run(wait_for_input=ApprovalInput)``. An editor (the web app, the Prefect UI or a
script) decides with :func:`resume_edition`, which finds the paused run of the edition and
resumes it with the decision. No decision in time: :func:`wait_for_decision` returns None and
the flow does what the digest's ``approval_timeout_action`` says.
"""

from __future__ import annotations

import re
from typing import Literal
from uuid import UUID

from prefect import get_client, get_run_logger
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field

# How often a paused run asks the API whether it was resumed.
POLL_SECONDS = 10


class ApprovalInput(RunInput):
    """An editor's decision on an edition awaiting approval.

    ``excluded``: article ids (or unique prefixes of 6+ characters) to leave out, added to
    those already excluded. ``subject``/``intro``: replace the edition's, when given.
    """

    decision: Literal["approve", "reject"]
    subject: str | None = None
    intro: str | None = None
    excluded: list[str] = Field(default_factory=list)
    editor: str = ""


class NoPausedRun(LookupError):
    """No run of the edition is waiting for a decision."""


def approval_tag(edition_id: str) -> str:
    """The tag of the edition run that waits for a decision on ``edition_id``."""
    return f"approval:{edition_id}"


def timeout_seconds(hours: float) -> int:
    return max(1, round(hours * 3600))


def wait_for_decision(edition_id: str, timeout_hours: float) -> ApprovalInput | None:
    """Pause the current flow run until an editor decides on ``edition_id``; None when no
    decision came in ``timeout_hours`` (the run then goes on, running again)."""
    run_id = UUID(str(flow_run.id))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        tag = approval_tag(edition_id)
        if tag not in run.tags:
            client.update_flow_run(run_id, tags=[*run.tags, tag])
    timeout = timeout_seconds(timeout_hours)
    try:
        return pause_flow_run(
            wait_for_input=ApprovalInput,
            timeout=timeout,
            poll_interval=max(1, min(POLL_SECONDS, timeout // 2)),
            # Pause keys take lowercase letters, digits and dashes only.
            key=re.sub(r"[^a-z0-9]+", "-", f"approval-{edition_id}".lower()).strip("-"),
        )
    except FlowPauseTimeout:
        get_run_logger().warning(
            "edition %s: no decision within %.4g hour(s)", edition_id, timeout_hours
        )
    # The API no longer lets a timed-out pause leave its state but to fail: the run decides
    # what to do itself, so it is set running again.
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Running(), force=True)
    return None


def paused_run_id(edition_id: str) -> UUID | None:
    """The id of the flow run waiting for a decision on ``edition_id``, if one is."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[approval_tag(edition_id)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return runs[0].id if runs else None


def resume_edition(edition_id: str, decision: ApprovalInput) -> str:
    """Resume the run waiting for a decision on ``edition_id`` with ``decision``; the run's
    id. Raises :class:`NoPausedRun` when no run of the edition is waiting."""
    run_id = paused_run_id(edition_id)
    if run_id is None:
        raise NoPausedRun(f"edition {edition_id}: no run is waiting for approval")
    resume_flow_run(run_id, run_input=decision.model_dump(mode="json"))
    return str(run_id)
