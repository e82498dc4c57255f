"""The long-running commands: ``web`` (the web app) and ``serve`` (the scheduled deployments)."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    app,
    fail,
    flows_api,
    out,
    settings_from,
)
from digest.config import Settings
from digest.errors import DigestError


@app.command()
def web(
    config: ConfigOpt = DEFAULT_CONFIG,
    host: Annotated[str | None, typer.Option(help="Address to listen on (web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (web.port).")] = None,
) -> None:
    """Run the web app: unsubscribe and preference pages, sign-up with double opt-in, the
    providers' bounce and complaint webhooks, and the editors' pages. Put it behind HTTPS at
    `web.base_url`. Without DIGEST__WEB__EDITOR_TOKEN, prints a login URL for the editors'
    pages that works on this machine until the command stops."""
    from digest.web.app import serve as serve_web

    settings = settings_from(config)
    approver = None
    if os.environ.get("PREFECT_API_URL"):
        # Editors' decisions resume the edition run paused for them (flows/approval.py).
        from digest.web.editor import NoRunWaiting
        from flows.approval import ApprovalInput, NoPausedRun, resume_edition

        def approver(edition_id: str, decision: dict[str, Any]) -> str:
            try:
                return resume_edition(edition_id, ApprovalInput(**decision))
            except NoPausedRun as e:
                raise NoRunWaiting(str(e)) from None

    try:
        serve_web(
            settings,
            host=host or settings.web.host,
            port=port or settings.web.port,
            approver=approver,
            say=lambda line: out.print(line, soft_wrap=True),
        )
    except DigestError as e:
        raise fail(str(e), 2) from None


@app.command()
def serve(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Serve the gather and edition deployments on the schedules from the config."""
    settings = settings_from(config)
    with flows_api():
        from flows.deployments import serve_config

        announce_alerts(settings)
        serve_config(settings, str(config))


def announce_alerts(settings: Settings) -> None:
    """Say, when alerts are configured, what the automation set up for them will call and
    which link to runs it will carry."""
    if not settings.alerts.webhook_url:
        return
    from flows.alerts import local_ui_base

    ui = local_ui_base()
    links = (
        f"links to runs at {ui}, unless the Prefect server sets PREFECT_UI_URL"
        if ui
        else "no links to runs unless the Prefect server sets PREFECT_UI_URL"
    )
    out.print(
        "Alerts: failed or crashed runs call the webhook in [alerts] webhook_url "
        f"({settings.alerts.format} format; {links}).",
        soft_wrap=True,
    )
