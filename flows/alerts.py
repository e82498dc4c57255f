"""Alerts on failed runs: a Prefect automation that calls a webhook when a run of this
project's flows fails or crashes.

The server evaluates the trigger and calls the webhook, so alerts need no process of ours
running beyond the Prefect server itself. `digest serve` sets the automation up when
`[alerts] webhook_url` is configured; setting it up again updates it in place (by name).
"""

from __future__ import annotations

import re
from uuid import UUID

from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.types import SecretDict

from flows.monitoring import PROJECT_FLOWS

DEFAULT_NAME = "newsletter-digest: failed runs"
ALERT_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")

# The webhook's JSON body, rendered by the server when the automation fires. `tojson` quotes
# what a run name may contain; the UI link is null when the server has no UI URL configured.
PAYLOAD = (
    "{"
    '"flow_run": {{ flow_run.name|tojson }}, '
    '"flow_run_id": {{ flow_run.id|string|tojson }}, '
    '"flow": {{ flow.name|tojson }}, '
    '"state": {{ flow_run.state.name|tojson }}, '
    '"message": {{ flow_run.state.message|tojson }}, '
    '"url": {{ flow_run|ui_url|tojson }}'
    "}"
)


def block_name(name: str) -> str:
    """The Webhook block's name for an automation name (blocks take lower-case slugs)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "alerts"


def build_automation(name: str, block_document_id: UUID) -> AutomationCore:
    """The automation: any Failed or Crashed run of this project's flows calls the webhook."""
    return AutomationCore(
        name=name,
        description="Calls the alert webhook when a newsletter-digest flow run fails or crashes.",
        enabled=True,
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "flow",
                "prefect.resource.name": list(PROJECT_FLOWS),
            },
            expect=set(ALERT_EVENTS),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_document_id, payload=PAYLOAD)],
    )


def save_webhook_block(webhook_url: str, name: str) -> UUID:
    """Save (or overwrite) the Webhook block the automation calls; returns its document id."""
    block = Webhook(
        method="POST",
        url=webhook_url,
        headers=SecretDict({"Content-Type": "application/json"}),
    )
    block_id: UUID = block.save(name=block_name(name), overwrite=True)  # type: ignore[assignment]
    return block_id


def ensure_alert_automation(webhook_url: str, *, name: str = DEFAULT_NAME) -> UUID:
    """Create or update the failed-runs automation and its webhook; returns the automation id.

    Idempotent by name: an existing automation of that name is updated in place (and any
    duplicates of it removed), so calling this at every start leaves exactly one."""
    block_id = save_webhook_block(webhook_url, name)
    wanted = build_automation(name, block_id)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=name)
        if not existing:
            return client.create_automation(automation=wanted)
        keep, *duplicates = sorted(existing, key=lambda a: str(a.id))
        for extra in duplicates:
            client.delete_automation(automation_id=extra.id)
        client.update_automation(automation_id=keep.id, automation=wanted)
        return keep.id
