"""The gather flow: one section's sources fetched, parsed and stored, one task per source.

Its own module, apart from the edition's (``flows/pipeline.py``), so that a process that only
gathers (``digest gather``, a gather deployment's run) does not import rendering and delivery.
The tasks run on at most ``http.concurrency`` threads: each thread that allocates gets a heap
arena of its own, so a thread per source would hold memory for every source of the section at
once, where only ``http.concurrency`` of them are worked on at a time anyway.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import State, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from digest.config import Settings, load_settings
from digest.factory import open_store
from digest.models import Article
from digest.steps import gather, heap
from digest.store import Store
from flows.artifacts import gather_artifact
from flows.runs import retry_transient, run_now, run_parameters, run_time


def _gather_run_name() -> str:
    p = run_parameters()
    return f"gather-{p.get('section', '')}-{run_time(p.get('now')):%Y%m%dT%H%M%SZ}"


@task(
    name="fetch-source",
    cache_policy=NO_CACHE,
    retry_delay_seconds=[1, 10, 60],
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
)
def fetch_source(
    settings: Settings, store: Store | None, key: str, now: datetime
) -> gather.SourceReport:
    # The section's gather logs one line per source (digest.steps.gather.gather_section).
    return gather.fetch_source_for_section(settings, store, key, now=now)


def _gather(
    settings: Settings, store: Store | None, section: str, now: datetime
) -> tuple[gather.SectionGathered, list[Article]]:
    fetch = fetch_source.with_options(retries=settings.http.retries)
    # Every source is submitted at once; at most ``http.concurrency`` threads run them.
    with ThreadPoolTaskRunner[gather.SourceReport](settings.http.concurrency) as runner:

        def submit(key: str) -> gather.PendingReport:
            parameters = {"settings": settings, "store": store, "key": key, "now": now}
            return runner.submit(fetch, parameters)

        return gather.gather_section(
            settings, store, section, now=now, submit=submit, logger=get_run_logger()
        )


@flow(name="gather-section", log_prints=True, flow_run_name=_gather_run_name)
def gather_section_flow(
    config: str, section: str, now: datetime | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Fetch every source of one section, store new articles, report each source.

    A dry run records nothing and returns the parsed articles under ``found`` instead.
    """
    heap.tune()  # before the section's threads start
    settings = load_settings(config)
    store = None if dry_run else open_store(settings)
    try:
        gathered, found = _gather(settings, store, section, run_now(now))
    finally:
        if store:
            store.close()
    gather_artifact(gathered, dry_run=dry_run)
    result = asdict(gathered)
    if dry_run:
        result["found"] = [a.model_dump(mode="json") for a in found]
    if gathered.no_working_source:
        # Failed, so that the alert automation (failed runs) fires; the report goes with it.
        return Failed(message=gathered.problem(), data=result)  # type: ignore[return-value]
    return result


def gathered_result(state: State[Any]) -> dict[str, Any]:
    """What a gather flow run reported, from its final state: also when it failed because the
    section had no working source. Raises what stopped a run that reported nothing."""
    data = state.result(raise_on_failure=False)
    if isinstance(data, dict):
        return data
    state.result()  # raises the run's error
    raise RuntimeError(f"gather run ended {state.name} without a report")
