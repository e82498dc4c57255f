"""Alerts on failed runs: a Prefect automation that calls a webhook when a run of this
project's flows fails or crashes.

The server evaluates the trigger and calls the webhook, so alerts need no process of ours
running beyond the Prefect server itself. `digest serve` sets the automation up when
`[alerts] webhook_url` is configured; setting it up again updates it in place (by name).
"""

from __future__ import annotations

import json
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

FORMATS = ("slack", "discord", "teams", "json")
# How long an error message may be in the alert: enough for the exception and its message, not
# a traceback (Discord takes 2,000 characters in all).
MESSAGE_CHARS = 500
NO_LINK = "no link to the run: set PREFECT_UI_URL where the Prefect server runs"


def _prelude(ui_base: str) -> str:
    """Jinja that sets ``link`` (the run in Prefect's UI, or none) and ``line`` (one line for
    people: what failed, which run, the error, the link). The server renders it when the
    automation fires, with its own PREFECT_UI_URL for ``ui_url``; ``ui_base`` is the UI this
    process knows, for a server that knows none."""
    fallback = (
        f" or ({json.dumps(ui_base.rstrip('/') + '/runs/flow-run/')} ~ (flow_run.id|string))"
        if ui_base
        else ""
    )
    return (
        f"{{%- set link = (flow_run|ui_url){fallback} -%}}"
        "{%- set error = (flow_run.state.message or 'no message')|replace('\\n', ' ')"
        f"|truncate({MESSAGE_CHARS}, true, '…', 0) -%}}"
        "{%- set line = 'newsletter-digest: flow run ' ~ flow_run.name ~ ' (' ~ flow.name "
        "~ ') ' ~ (flow_run.state.name|lower) ~ ': ' ~ error -%}"
    )


# The run's facts as JSON fields, for receivers that read them (every format but Teams and
# Discord, whose APIs take only their own fields). `tojson` quotes what a name may contain.
_FIELDS = (
    '"flow_run": {{ flow_run.name|tojson }}, '
    '"flow_run_id": {{ flow_run.id|string|tojson }}, '
    '"flow": {{ flow.name|tojson }}, '
    '"state": {{ flow_run.state.name|tojson }}, '
    '"message": {{ flow_run.state.message|tojson }}, '
    '"url": {{ link|tojson }}'
)
# The human line with its link, or with how to get one.
_TEXT = "(line ~ (' ' ~ link if link else ' (' ~ NO_LINK ~ ')'))".replace(
    "NO_LINK", json.dumps(NO_LINK)
)
# Slack-compatible hooks (Slack, Mattermost, Rocket.Chat) read `text`; Slack takes `<`, `>`
# and `&` as markup (`<!channel>` would notify everyone), so they are escaped there.
_SLACK_TEXT = f"{_TEXT}|replace('&', '&amp;')|replace('<', '&lt;')|replace('>', '&gt;')"
_BODIES = {
    "slack": '{"text": {{ ' + _SLACK_TEXT + "|tojson }}, " + _FIELDS + "}",
    "json": '{"text": {{ ' + _TEXT + "|tojson }}, " + _FIELDS + "}",
    # Discord reads `content`; no @-mention in an error message notifies anyone.
    "discord": '{"content": {{ ' + _TEXT + '|tojson }}, "allowed_mentions": {"parse": []}}',
    # A Teams incoming webhook's MessageCard: the line as its text, a button to the run.
    "teams": (
        '{"@type": "MessageCard", "@context": "https://schema.org/extensions", '
        '"themeColor": "C4314B", '
        '"summary": {{ line|truncate(200, true, "…", 0)|tojson }}, '
        '"title": {{ ("newsletter-digest: " ~ flow.name ~ " " ~ (flow_run.state.name|lower))'
        "|tojson }}, "
        '"text": {{ ' + _TEXT + "|tojson }}"
        '{% if link %}, "potentialAction": [{"@type": "OpenUri", "name": "Open the run", '
        '"targets": [{"os": "default", "uri": {{ link|tojson }}}]}]{% endif %}}'
    ),
}


def payload_template(alert_format: str = "slack", ui_base: str = "") -> str:
    """The webhook body the server renders when a run fails, in ``alert_format`` (one of
    FORMATS); ``ui_base``: the Prefect UI's address for links when the server has none."""
    if alert_format not in _BODIES:
        raise ValueError(f"unknown alert format {alert_format!r}: one of {', '.join(FORMATS)}")
    return _prelude(ui_base) + _BODIES[alert_format]


def local_ui_base() -> str:
    """The Prefect UI's address as this process knows it (PREFECT_UI_URL, or derived from
    PREFECT_API_URL); empty for a temporary server, which has no UI."""
    from prefect.settings import PREFECT_UI_URL

    value = PREFECT_UI_URL.value() or ""
    return value if value.startswith(("http://", "https://")) else ""


def block_name(name: str) -> str:
    """The Webhook block's name for an automation name (blocks take lower-case slugs)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "alerts"


def build_automation(name: str, block_document_id: UUID, payload: str) -> AutomationCore:
    """The automation: any Failed or Crashed run of this project's flows calls the webhook
    with ``payload`` (a :func:`payload_template`)."""
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
        actions=[CallWebhook(block_document_id=block_document_id, payload=payload)],
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


def ensure_alert_automation(
    webhook_url: str, *, alert_format: str = "slack", name: str = DEFAULT_NAME
) -> UUID:
    """Create or update the failed-runs automation and its webhook; returns the automation id.
    The alert's body is in ``alert_format`` (FORMATS); its link to the run comes from the
    server's UI URL, else this process's.

    Idempotent by name: an existing automation of that name is updated in place (and any
    duplicates of it removed), so calling this at every start leaves exactly one."""
    block_id = save_webhook_block(webhook_url, name)
    wanted = build_automation(name, block_id, payload_template(alert_format, local_ui_base()))
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=name)
        if not existing:
            return client.create_automation(automation=wanted)
        keep, *duplicates = sorted(existing, key=lambda a: str(a.id))
        for extra in duplicates:
            client.delete_automation(automation_id=extra.id)
        client.update_automation(automation_id=keep.id, automation=wanted)
        return keep.id
