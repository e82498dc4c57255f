"""Deployments built from the configuration: what `digest serve` runs on a schedule, and what
`digest deploy` creates, updates and removes on a work pool (:func:`plan_deploy`,
:func:`apply_deploy`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import httpx
import prefect
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.client.schemas.objects import VersionInfo
from prefect.deployments.runner import DeploymentApplyError, RunnerDeployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from digest.config import Settings
from digest.errors import PermanentError, TransientError
from flows.alerts import ensure_alert_automation
from flows.gather import gather_section_flow
from flows.pipeline import edition_flow
from flows.shards import deliver_shard_flow

# A deployment's entrypoint: a file path from the current directory (what `digest serve` runs),
# or a module path (``flows.pipeline.edition_flow``, what `digest deploy` registers).
BY_FILE, BY_MODULE = EntrypointType.FILE_PATH, EntrypointType.MODULE_PATH


def build_deployments(
    settings: Settings, config_path: str, *, entrypoint_type: EntrypointType = BY_FILE
) -> list[Any]:
    """One gather deployment per section (its own cron) and one edition deployment per digest
    (its cron in its timezone). The config path is a parameter, read again at each run.
    ``entrypoint_type``: :data:`BY_MODULE` for workers that import the flows from the installed
    package (no source to pull, no working directory to share)."""
    config = str(Path(config_path).resolve())
    deployments = [
        gather_section_flow.to_deployment(
            name=f"gather-{key}",
            schedule=Cron(section.gather_cron, timezone="UTC"),
            parameters={"config": config, "section": key},
            tags=["gather", key],
            entrypoint_type=entrypoint_type,
        )
        for key, section in settings.sections.items()
    ]
    deployments += [
        edition_flow.to_deployment(
            name=f"edition-{key}",
            schedule=Cron(digest.schedule.cron, timezone=digest.schedule.timezone),
            parameters={"config": config, "digest": key},
            tags=["edition", key],
            entrypoint_type=entrypoint_type,
        )
        for key, digest in settings.digests.items()
    ]
    # Started by an edition run with delivery.shards > 1 (never scheduled): one shard each.
    deployments.append(
        deliver_shard_flow.to_deployment(
            name="deliver-shard",
            parameters={"config": config},
            tags=["deliver"],
            entrypoint_type=entrypoint_type,
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


# `digest deploy` ---------------------------------------------------------------------------

# The tag on every deployment `digest deploy` makes: it updates and removes only those.
MANAGED_TAG = "digest-managed"
POOL_TYPE = "process"


class DeployRefused(PermanentError):
    """`digest deploy` will not do what it was asked: a deployment of the same name that it did
    not make, one the server refuses."""


class PrefectServerError(TransientError):
    """The Prefect server did not answer, or answered with an error."""


@dataclass(frozen=True)
class Change:
    """One deployment's fate: ``create``, ``update`` (``what`` lists the fields that change,
    ``"field: before -> after"``), ``remove`` or ``keep`` (already as the config says)."""

    action: Literal["create", "update", "remove", "keep"]
    name: str  # <flow>/<deployment>, as Prefect names a deployment
    what: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployPlan:
    """What `digest deploy` does on the server: the pool (made when missing), then the
    changes, in this order (creates and updates by the config's order, then removals)."""

    pool: str
    pool_type: str | None  # None: the pool does not exist and will be made (POOL_TYPE)
    changes: tuple[Change, ...]
    deployments: tuple[RunnerDeployment, ...]  # the wanted ones, ready to apply
    remove_ids: tuple[UUID, ...]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def for_work_pool(
    deployments: list[RunnerDeployment], pool: str, config_on_workers: str | None = None
) -> list[RunnerDeployment]:
    """The deployments (built with :data:`BY_MODULE` entrypoints) as `digest deploy` registers
    them: on ``pool``, tagged :data:`MANAGED_TAG`, the version of the installed package, and the
    ``config`` parameter (where present) set to ``config_on_workers`` when given."""
    version = _package_version()
    for d in deployments:
        d.work_pool_name = pool
        d.tags = [*d.tags, MANAGED_TAG] if MANAGED_TAG not in d.tags else d.tags
        d.version = version
        if config_on_workers is not None and "config" in d.parameters:
            d.parameters = {**d.parameters, "config": config_on_workers}
    return deployments


def plan_deploy(
    settings: Settings, config_path: str, pool: str, *, config_on_workers: str | None = None
) -> DeployPlan:
    """Compare what the config wants on ``pool`` with what the server holds; change nothing."""
    built = build_deployments(settings, config_path, entrypoint_type=BY_MODULE)
    wanted = for_work_pool(built, pool, config_on_workers)
    with _prefect_client() as client:
        try:
            pool_type: str | None = client.read_work_pool(pool).type
        except ObjectNotFound:
            pool_type = None
        flow_names: dict[UUID, str] = {}
        changes: list[Change] = []
        for d in wanted:
            try:
                existing = client.read_deployment_by_name(d.full_name)
            except ObjectNotFound:
                changes.append(Change("create", d.full_name, _describe(d)))
                continue
            if MANAGED_TAG not in existing.tags:
                raise DeployRefused(
                    f"deployment {d.full_name} exists and was not made by `digest deploy` (no "
                    f"{MANAGED_TAG!r} tag): delete it (prefect deployment delete "
                    f"{d.full_name}) or tag it {MANAGED_TAG} for `digest deploy` to take over"
                )
            what = _differences(existing, d)
            d.paused = existing.paused  # one paused by hand stays paused
            changes.append(Change("update" if what else "keep", d.full_name, what))
        names = {d.full_name for d in wanted}
        remove: list[UUID] = []
        for existing in _managed(client):
            if existing.flow_id not in flow_names:
                flow_names[existing.flow_id] = client.read_flow(existing.flow_id).name
            name = f"{flow_names[existing.flow_id]}/{existing.name}"
            if name not in names:
                changes.append(Change("remove", name))
                remove.append(existing.id)
    return DeployPlan(pool, pool_type, tuple(changes), tuple(wanted), tuple(remove))


def apply_deploy(plan: DeployPlan) -> None:
    """Make the server match ``plan``: the pool (a ``process`` pool when missing), every
    wanted deployment created or updated (those already as wanted are left alone, so their
    scheduled runs stay), the managed ones the config no longer has deleted."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    fates = {c.name: c.action for c in plan.changes}
    with _prefect_client() as client:
        if plan.pool_type is None:
            client.create_work_pool(
                WorkPoolCreate(
                    name=plan.pool,
                    type=POOL_TYPE,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
        for d in plan.deployments:
            if fates.get(d.full_name) in ("create", "update"):
                try:
                    d.apply(
                        version_info=VersionInfo(type="prefect:simple", version=d.version or "")
                    )
                except DeploymentApplyError as e:
                    cause = e.__cause__
                    if isinstance(cause, PrefectHTTPStatusError) and cause.response.is_client_error:
                        raise DeployRefused(
                            f"deployment {d.full_name}: the Prefect server refused it: {e}"
                        ) from None
                    raise PrefectServerError(
                        f"deployment {d.full_name} not applied: {e}; the ones before it are "
                        "(run `digest deploy` again)"
                    ) from None
        for deployment_id in plan.remove_ids:
            with suppress(ObjectNotFound):  # removed meanwhile: as wanted
                client.delete_deployment(deployment_id)


def deploy_alerts(settings: Settings) -> UUID | None:
    """:func:`setup_alerts` for `digest deploy`, its failures as :class:`PrefectServerError`."""
    with server_errors():
        return setup_alerts(settings)


@contextmanager
def _prefect_client() -> Iterator[SyncPrefectClient]:
    with server_errors(), get_client(sync_client=True) as client:
        yield client


def api_url() -> str | None:
    """The Prefect server's API (PREFECT_API_URL, from the environment or the profile), if any."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


@contextmanager
def server_errors() -> Iterator[None]:
    """The Prefect client's failures as :class:`PrefectServerError`, naming the server."""
    url = api_url()
    try:
        yield
    except PrefectHTTPStatusError as e:
        raise PrefectServerError(
            f"the Prefect server at {url} answered HTTP {e.response.status_code}: "
            f"{e.response.text[:200]}"
        ) from None
    except (httpx.HTTPError, OSError) as e:
        raise PrefectServerError(
            f"cannot reach the Prefect server at {url} ({type(e).__name__}: {e or 'no answer'})"
        ) from None


def _managed(client: SyncPrefectClient) -> Iterator[Any]:
    """Every deployment on the server tagged :data:`MANAGED_TAG`, page by page."""
    only = DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG]))
    offset, page = 0, 200
    while True:
        found = client.read_deployments(deployment_filter=only, limit=page, offset=offset)
        yield from found
        if len(found) < page:
            return
        offset += page


def _schedules(schedules: Any) -> list[str]:
    """Schedules as people read them: ``0 7 * * MON (America/New_York)``."""
    texts = []
    for s in schedules or []:
        schedule = s.schedule
        if hasattr(schedule, "cron"):
            text = f"{schedule.cron} ({schedule.timezone or 'UTC'})"
        else:
            text = str(schedule.model_dump(mode="json", exclude_none=True))
        texts.append(text if getattr(s, "active", True) is not False else f"{text} inactive")
    return sorted(texts)


def _fields(d: Any) -> dict[str, Any]:
    """The fields `digest deploy` sets, of a wanted deployment or one read from the server."""
    return {
        "entrypoint": d.entrypoint,
        "work pool": d.work_pool_name,
        "parameters": dict(d.parameters),
        "schedules": _schedules(d.schedules),
        "tags": sorted(d.tags),
        "description": d.description,
        "version": d.version,
    }


def _describe(d: RunnerDeployment) -> tuple[str, ...]:
    f = _fields(d)
    return (
        f"schedules: {', '.join(f['schedules']) or 'none'}",
        f"entrypoint: {f['entrypoint']}",
        f"parameters: {f['parameters']}",
    )


def _differences(existing: Any, wanted: RunnerDeployment) -> tuple[str, ...]:
    before, after = _fields(existing), _fields(wanted)
    return tuple(
        f"{key}: {_text(before[key])} -> {_text(after[key])}"
        for key in after
        if before[key] != after[key]
    )


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"newsletter-digest {version('newsletter-digest')}"
    except PackageNotFoundError:
        return "newsletter-digest"
