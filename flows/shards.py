"""The fan-out of one edition's delivery over the work pool: the ``deliver-shard`` flow (one
shard, on any worker) and the edition flow's fan-out task that starts the shards with
``run_deployment`` and waits for the ledger (``digest.steps.shards``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from digest.config import Settings, load_settings
from digest.factory import open_store
from digest.models import Edition
from digest.render.variants import Variants
from digest.steps import shards
from digest.steps.ledger import DeliveryReport
from digest.store import Store
from flows.runs import run_now, run_parameters

# The deployment of the shard flow (flows/deployments.py): "<flow name>/<deployment name>".
SHARD_DEPLOYMENT = "deliver-shard/deliver-shard"


def _shard_run_name() -> str:
    p = run_parameters()
    return f"deliver-{p.get('edition_id', '')}-shard-{p.get('shard', '')}"


@flow(name="deliver-shard", log_prints=True, flow_run_name=_shard_run_name)
def deliver_shard_flow(
    config: str, edition_id: str, shard: int = 0, now: datetime | None = None
) -> dict[str, Any]:
    """Send part of an edition being fanned out, beside the other shards (see
    ``digest.steps.shards``); started by the edition flow on the work pool."""
    settings = load_settings(config)
    store = open_store(settings)
    when = run_now(now)
    logger = get_run_logger()
    try:
        report = shards.deliver_shard(settings, store, edition_id, shard, now=when, log=logger.info)
    finally:
        store.close()
    logger.info(report.summary())
    return asdict(report)


class ShardRuns:
    """The shard runs of one fan-out, started on the work pool and watched through the API."""

    def __init__(self, config: str, edition_id: str, now: datetime) -> None:
        self.config, self.edition_id, self.now = config, edition_id, now
        self.ids: list[UUID] = []

    def start(self, shard: int) -> None:
        run: FlowRun = run_deployment(  # type: ignore[assignment]
            SHARD_DEPLOYMENT,
            parameters={
                "config": self.config,
                "edition_id": self.edition_id,
                "shard": shard,
                "now": self.now.isoformat(),
            },
            timeout=0,
        )
        self.ids.append(run.id)

    def running(self) -> bool:
        """Whether any shard run has not reached a final state (a run whose worker died
        stays "running" here: the ledger's claim leases tell that one apart)."""
        with get_client(sync_client=True) as client:
            for run_id in self.ids:
                state = client.read_flow_run(run_id).state
                if state is None or not state.is_final():
                    return True
        return False


@task(name="fan-out", cache_policy=NO_CACHE)
def fan_out_task(
    config: str,
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Variants,
    now: datetime,
    owner: str,
) -> DeliveryReport:
    logger = get_run_logger()
    runs = ShardRuns(config, edition.id, now)
    return shards.fan_out(
        settings,
        store,
        edition,
        variants,
        now=now,
        owner=owner,
        start=runs.start,
        running=runs.running,
        log=logger.info,
    )


def fan_out_stage(config: str) -> Callable[..., DeliveryReport]:
    """The edition flow's fan-out stage for the configuration file ``config`` (which every
    shard run reads again, on its own worker): the fan-out task, called as a stage."""
    return partial(fan_out_task, config)
