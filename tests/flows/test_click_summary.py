"""The click summary: a Prefect artifact per edition, made once, a day after it was sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from digest.config import load_settings
from digest.render.clicks import ClickTarget
from digest.steps.compose import compose
from digest.steps.stats import Visitors, record_click
from digest.store import Store
from tests.conftest import _deep_update, base_config, write_toml
from tests.web.conftest import Clock
from tests.web.test_clicks import ARTICLES, overrides, send

pytestmark = pytest.mark.flows


def test_an_edition_gets_its_click_summary_once_a_day_after_sending(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.artifacts import artifact_key
    from flows.pipeline import click_summaries_flow

    config = write_toml(
        tmp_path / "pub.toml", _deep_update(base_config(tmp_path / "var"), overrides())
    )
    settings = load_settings(config)
    clock = Clock()
    store = Store.open(settings.database_url)
    try:
        store.save_articles(ARTICLES, now=clock())
        edition = compose(settings, store, "weekly", now=clock()).edition
        assert edition is not None
        send(store, edition, clock)
        sent = clock()
        teaser = edition.teasers[0]
        target = ClickTarget(teaser.url, edition.id, teaser.article_id, teaser.section)
        visitors = Visitors()
        for n in range(3):
            counted = record_click(
                settings,
                store,
                target,
                method="GET",
                agent=f"reader {n}",
                client="192.0.2.1",
                now=sent + timedelta(hours=2),
                visitors=visitors,
            )
            assert counted
    finally:
        store.close()

    assert click_summaries_flow(str(config), sent + timedelta(hours=23)) == []
    assert click_summaries_flow(str(config), sent + timedelta(hours=25)) == [edition.id]
    assert click_summaries_flow(str(config), sent + timedelta(hours=26)) == []  # once

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key("clicks", edition.id)])
            )
        )
    assert len(found) == 1
    markdown = str(found[0].data)
    assert "3 clicks by readers" in markdown
    assert f"| 3 | {teaser.title} |" in markdown
