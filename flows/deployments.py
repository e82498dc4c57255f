"""Deployments built from the configuration: what `digest serve` runs on a schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import prefect
from prefect.schedules import Cron

from digest.config import Settings
from flows.alerts import ensure_alert_automation
from flows.pipeline import edition_flow, gather_section_flow
from flows.shards import deliver_shard_flow


def build_deployments(settings: Settings, config_path: str) -> list[Any]:
    """One gather deployment per section (its own cron) and one edition deployment per digest
    (its cron in its timezone). The config path is a parameter, read again at each run."""
    config = str(Path(config_path).resolve())
    deployments = [
        gather_section_flow.to_deployment(
            name=f"gather-{key}",
            schedule=Cron(section.gather_cron, timezone="UTC"),
            parameters={"config": config, "section": key},
            tags=["gather", key],
        )
        for key, section in settings.sections.items()
    ]
    deployments += [
        edition_flow.to_deployment(
            name=f"edition-{key}",
            schedule=Cron(digest.schedule.cron, timezone=digest.schedule.timezone),
            parameters={"config": config, "digest": key},
            tags=["edition", key],
        )
        for key, digest in settings.digests.items()
    ]
    # Started by an edition run with delivery.shards > 1 (never scheduled): one shard each.
    deployments.append(
        deliver_shard_flow.to_deployment(
            name="deliver-shard", parameters={"config": config}, tags=["deliver"]
        )
    )
    return deployments


def setup_alerts(settings: Settings) -> UUID | None:
    """Create or update the failed-runs automation when `[alerts] webhook_url` is set."""
    if not settings.alerts.webhook_url:
        return None
    return ensure_alert_automation(settings.alerts.webhook_url, alert_format=settings.alerts.format)


def serve_config(settings: Settings, config_path: str) -> None:
    """Serve every deployment until interrupted (needs a Prefect server: PREFECT_API_URL),
    after setting up the alert automation when one is configured.

    Stopping the process leaves the schedules active: a restart (a deploy, a reboot) must not
    silently pause the publication's runs."""
    setup_alerts(settings)
    prefect.serve(*build_deployments(settings, config_path), pause_on_shutdown=False)
