"""The artifacts an editor follows from Prefect's UI to the editors' page: the approval
artifact and the edition's summary link the edition's page at the web app's address, which
falls back (as for every link in an email) from ``web.base_url`` to
``publication.links_base_url``, then to ``publication.url``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from digest.config import Settings
from digest.models import Edition
from digest.steps.compose import compose
from digest.steps.edition import RunSummary
from digest.store import Store
from tests.conftest import article

pytestmark = pytest.mark.flows
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def _edition(settings: Settings) -> Edition:
    store = Store.open(settings.database_url)
    try:
        store.save_articles([article(n) for n in (3, 5, 7)], now=NOW)
        outcome = compose(settings, store, "weekly", now=NOW)
    finally:
        store.close()
    assert outcome.edition is not None
    return outcome.edition


def _in_a_flow(make: Callable[[], None]) -> None:
    """``make`` run as a flow, as the pipeline makes its artifacts."""
    from prefect import flow

    flow(name="artifact-test")(make)()


def _markdown(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, key
    data = found[0].data
    assert isinstance(data, str)
    return data


@pytest.mark.parametrize(
    ("publication", "web", "base"),
    [
        ({"links_base_url": "https://m.example.org/news"}, {}, "https://m.example.org/news"),
        ({}, {"base_url": "https://desk.example.org"}, "https://desk.example.org"),
        ({}, {}, "https://meridian.example.org"),
    ],
)
def test_the_approval_artifact_links_the_editors_page(
    make_settings: Callable[..., Settings],
    publication: dict[str, Any],
    web: dict[str, Any],
    base: str,
) -> None:
    from flows.artifacts import approval_artifact, artifact_key

    settings = make_settings({"publication": publication, "web": web})
    edition = _edition(settings)
    _in_a_flow(lambda: approval_artifact(settings, edition, 12_345))
    markdown = _markdown(artifact_key("approval", edition.id))
    page = f"{base}/editions/{edition.id}"
    assert f"Review: [{page}]({page})" in markdown
    assert edition.subject in markdown and "12345 bytes" in markdown


def test_the_edition_summary_links_its_preview_without_web_base_url(
    make_settings: Callable[..., Settings],
) -> None:
    from flows.artifacts import artifact_key, edition_artifact

    settings = make_settings({"publication": {"links_base_url": "https://m.example.org/news"}})
    assert not settings.web.base_url
    edition = _edition(settings)
    summary = RunSummary(digest="weekly", edition_id=edition.id, items=len(edition.teasers))
    _in_a_flow(lambda: edition_artifact(settings, edition, summary, 12_345))
    markdown = _markdown(artifact_key("edition", edition.id))
    page = f"https://m.example.org/news/editions/{edition.id}"
    assert f"Preview: [{page}]({page})" in markdown
