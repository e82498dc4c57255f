"""``digest deploy``: the config's deployments on a Prefect work pool, for workers on any host."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    app,
    fail,
    out,
    quiet_prefect,
    settings_from,
)
from digest.cli.serve import announce_alerts
from digest.errors import PermanentError, TransientError

# How the summary counts each action, done and (in a dry run) to do.
DONE = {"create": "created", "update": "updated", "remove": "removed", "keep": "unchanged"}
TO_DO = {"create": "to create", "update": "to update", "remove": "to remove", "keep": "unchanged"}


@app.command()
def deploy(
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            help="The work pool the workers poll; made (type process) when it does not exist.",
        ),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    config_path_on_workers: Annotated[
        str | None,
        typer.Option(
            "--config-path-on-workers",
            help="Where the workers find the config file, when not at this file's absolute path.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; change nothing.")
    ] = False,
) -> None:
    """Create or update the config's deployments on a Prefect work pool, for workers.

    On the Prefect server at PREFECT_API_URL: the deployments `digest serve` serves (a gather
    per section, an edition per digest, ...) on the work pool --pool, and those an earlier
    `digest deploy` made that the config no longer has removed. Workers (`prefect worker start
    --pool NAME`) run them from the installed package: each worker's host needs this package
    installed, the config file at the path this command prints (its absolute path here, or
    --config-path-on-workers) and the secrets in its environment. Deployments it did not make
    (without the tag digest-managed) are never changed. With alerts.webhook_url set, it also
    creates or updates the alert automation, as `digest serve` does."""
    settings = settings_from(config)
    quiet_prefect()
    from flows.deployments import api_url, apply_deploy, deploy_alerts, plan_deploy

    if not api_url():
        raise fail(
            "digest deploy needs a Prefect server: set PREFECT_API_URL (e.g. "
            "http://prefect.example.org:4200/api)",
            2,
        )

    where = config_path_on_workers or str(Path(config).resolve())
    try:
        plan = plan_deploy(settings, str(config), pool, config_on_workers=config_path_on_workers)
        if not dry_run:
            apply_deploy(plan)
            if settings.alerts.webhook_url:
                announce_alerts(settings)
                deploy_alerts(settings)
    except PermanentError as e:
        raise fail(str(e), 2) from None
    except TransientError as e:
        raise fail(str(e), 1) from None
    would = "would " if dry_run else ""
    if plan.pool_type is None:
        out.print(
            f"Work pool {pool}: {'would create it' if dry_run else 'created'} (type process)."
        )
    else:
        out.print(f"Work pool {pool} (type {plan.pool_type}).")
    for change in plan.changes:
        out.print(f"  {would}{change.action:<6}  {change.name}", soft_wrap=True)
        for line in change.what:
            out.print(f"      {line}", soft_wrap=True)
    if dry_run and settings.alerts.webhook_url:
        out.print("Alerts: would create or update the automation for alerts.webhook_url.")
    words = TO_DO if dry_run else DONE
    counts = ", ".join(f"{plan.count(action)} {word}" for action, word in words.items())
    if dry_run:
        out.print(f"Dry run, nothing changed on the server: {counts}.", soft_wrap=True)
    else:
        out.print(f"Deployments on work pool {pool}: {counts}.", soft_wrap=True)
    out.print(
        f"Each worker's host needs the config file at {where}, this package installed and the "
        "secrets in its environment; start workers with: prefect worker start --pool "
        f"{pool}",
        soft_wrap=True,
    )
