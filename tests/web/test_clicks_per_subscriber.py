"""Per-subscriber click analytics on ``digest web``: ``/c/<token>/<reader>`` redirects and
records which subscriber clicked (once per article), a reader part altered to name someone else
is refused, unique clickers are exact under concurrent clicks on a real server, scanners still
do not count, and editors see only the number of clickers (page and ``digest stats``)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from digest.cli import app as cli
from digest.config import Settings
from digest.models import (
    Edition,
)
from digest.render import render_variant
from digest.render.clicks import reader_part
from digest.render.personalise import READER
from digest.steps.compose import compose
from digest.store import Store
from digest.web.app import create_app
from tests.conftest import _deep_update, base_config, write_toml
from tests.servers import serve_app
from tests.web import test_clicks as clicks
from tests.web.conftest import BASE, KEY, OLD_KEY, Clock, web_overrides
from tests.web.test_clicks import ARTICLES, LINK

AGENT = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}


def overrides(per_subscriber: bool = True) -> dict[str, Any]:
    data = web_overrides()
    data["digests"]["weekly"] = {"click_tracking": True}
    data["analytics"] = {"per_subscriber": per_subscriber}
    return data


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(overrides(), DIGEST__SECRET_KEY=KEY, DIGEST__OLD_SECRET_KEYS=OLD_KEY)


# The recorders of the running test's apps, flushed before counts are read and closed after.
APPS = clicks.APPS
_flushed = clicks._flushed
app = clicks.app


@pytest.fixture
def sent(settings: Settings, store: Store, clock: Clock) -> tuple[Edition, list[int]]:
    """An edition sent to 12 subscribers five minutes ago, and their ids."""
    store.save_articles(ARTICLES, now=clock())
    edition = compose(settings, store, "weekly", now=clock()).edition
    assert edition is not None
    clicks.send(store, edition, clock, recipients=12)
    ids = [s.id for s in store.active_subscribers()]
    clock.advance(minutes=5)
    return edition, ids


def personal_links(settings: Settings, edition: Edition, sid: int) -> list[str]:
    """The paths of subscriber ``sid``'s article links, in order, each once."""
    html = render_variant(edition, settings).html
    found = list(dict.fromkeys(unescape(h) for h in LINK.findall(html)))
    assert found and all(u.endswith(READER) for u in found)
    part = reader_part(KEY, edition.id, sid)
    return [urlsplit(u.replace(READER, part)).path for u in found]


def counts(store: Store, edition: Edition) -> dict[str, tuple[int, int, int]]:
    """(clicks, filtered, clickers) per article, once every click submitted is written."""
    for a in APPS:
        assert a.state.click_recorder.flush(20)
    return {
        c.article_id: (c.clicks, c.filtered, c.clickers) for c in store.click_counts(edition.id)
    }


def test_a_personal_link_redirects_and_records_its_subscriber_once(
    client: TestClient, store: Store, settings: Settings, sent: tuple[Edition, list[int]]
) -> None:
    edition, (ann, bob, *_) = sent
    first = personal_links(settings, edition, ann)[0]
    r = client.get(first, headers=AGENT, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].startswith(ARTICLES[0].url[:30])
    client.get(first, headers={"User-Agent": "Mozilla/5.0 another device"})
    client.get(personal_links(settings, edition, bob)[0], headers=AGENT)
    (article_id,) = counts(store, edition)
    assert counts(store, edition)[article_id][2] == 2  # Ann and Bob
    assert [(e, a) for e, a, _ in store.subscriber_clicks(ann)] == [(edition.id, article_id)]


def test_a_reader_part_naming_another_subscriber_is_refused(
    client: TestClient, store: Store, settings: Settings, sent: tuple[Edition, list[int]]
) -> None:
    edition, (ann, bob, *_) = sent
    mine = personal_links(settings, edition, ann)[0]
    token, part = mine.removeprefix("/c/").split("/")
    signature = part.split(".")[1]
    forged = {
        "another subscriber's id": f"/c/{token}/{bob}.{signature}",
        "a signature cut short": f"/c/{token}/{ann}.{signature[:-2]}",
        "another edition's part": f"/c/{token}{reader_part(KEY, 'weekly-2026-W01', ann)}",
        "another key": f"/c/{token}{reader_part('another key', edition.id, ann)}",
        "no signature": f"/c/{token}/{bob}",
    }
    for case, url in forged.items():
        r = client.get(url, headers=AGENT, follow_redirects=False)
        assert r.status_code == 400, case
        assert "location" not in r.headers, case
    assert counts(store, edition) == {}
    assert store.subscriber_clicks(bob) == [] and store.subscriber_clicks(ann) == []
    # Signed with the key before a rotation: still good.
    old = f"/c/{token}{reader_part(OLD_KEY, edition.id, ann)}"
    assert client.get(old, headers=AGENT, follow_redirects=False).status_code == 302
    assert counts(store, edition)  # written
    assert len(store.subscriber_clicks(ann)) == 1


def test_scanners_do_not_make_clickers(
    client: TestClient, store: Store, settings: Settings, sent: tuple[Edition, list[int]]
) -> None:
    edition, (ann, *_) = sent
    url = personal_links(settings, edition, ann)[0]
    assert client.head(url, headers=AGENT, follow_redirects=False).status_code == 302
    client.get(url, headers={"User-Agent": "Proofpoint URL Defense"}, follow_redirects=False)
    assert [v for v in counts(store, edition).values()] == [(0, 2, 0)]
    assert store.subscriber_clicks(ann) == []


def test_unique_clickers_are_exact_under_concurrent_clicks(
    app: FastAPI, store: Store, settings: Settings, sent: tuple[Edition, list[int]]
) -> None:
    edition, ids = sent
    paths = {sid: personal_links(settings, edition, sid) for sid in ids}

    def reader(sid: int) -> list[int]:
        answers = []
        # Two devices per subscriber, each clicking every link twice.
        for device in ("phone", "laptop"):
            agent = {"User-Agent": f"Mozilla/5.0 reader-{sid}-{device}"}
            with httpx.Client(base_url=url, trust_env=False, timeout=30) as c:
                answers += [c.get(p, headers=agent).status_code for p in paths[sid] * 2]
        return answers

    with serve_app(app) as url, ThreadPoolExecutor(max_workers=len(ids)) as pool:
        answers = [s for got in pool.map(reader, ids) for s in got]
    assert set(answers) == {302}
    # Clicks count each device once; clickers each subscriber once.
    assert counts(store, edition) == {a.id: (2 * len(ids), 0, len(ids)) for a in ARTICLES}
    assert all(len(store.subscriber_clicks(sid)) == len(ARTICLES) for sid in ids)


def test_turned_off_after_sending_the_links_work_and_name_no_one(
    make_settings: Callable[..., Settings],
    settings: Settings,
    store: Store,
    clock: Clock,
    sent: tuple[Edition, list[int]],
) -> None:
    edition, (ann, *_) = sent
    url = personal_links(settings, edition, ann)[0]
    off = make_settings(overrides(False), DIGEST__SECRET_KEY=KEY)
    app = create_app(off, store, clock=clock)
    APPS.append(app)
    with TestClient(app) as c:
        assert c.get(url, headers=AGENT, follow_redirects=False).status_code == 302
    assert [v for v in counts(store, edition).values()] == [(1, 0, 0)]
    assert store.subscriber_clicks(ann) == []


def test_editors_see_unique_clickers_never_who(
    tmp_path: Path,
    client: TestClient,
    settings: Settings,
    store: Store,
    clock: Clock,
    sent: tuple[Edition, list[int]],
) -> None:
    edition, ids = sent
    for sid in ids[:3]:
        client.get(personal_links(settings, edition, sid)[-1], headers=AGENT)
    client.get(personal_links(settings, edition, ids[0])[0], headers=AGENT)
    client.get(personal_links(settings, edition, ids[0])[0], headers={"User-Agent": "other"})
    assert sorted(v[2] for v in counts(store, edition).values()) == [1, 3]

    config = write_toml(
        tmp_path / "pub.toml", _deep_update(base_config(tmp_path / "var"), overrides())
    )
    result = CliRunner().invoke(
        cli, ["stats", edition.id, "--config", str(config)], env={"DIGEST__SECRET_KEY": KEY}
    )
    assert result.exit_code == 0, result.output
    assert "clicks, unique clickers" in result.output
    rows = [line.split()[:2] for line in result.output.splitlines() if "(qiosk, " in line]
    assert sorted(rows) == [["0", "0"], ["2", "1"], ["3", "3"]]
    assert "@example.org" not in result.output

    web = settings.web.model_copy(update={"editor_token": SecretStr("s3cret")})
    editor = create_app(settings.model_copy(update={"web": web}), store, clock=clock)
    APPS.append(editor)
    with TestClient(editor, base_url=BASE, headers={"Authorization": "Bearer s3cret"}) as c:
        page = c.get(f"/editions/{edition.id}").text
    block = page[
        page.index('id="clicks-title"') : page.index("</section>", page.index("clicks-title"))
    ]
    assert "Unique clickers" in block
    assert "<td>3</td><td>3</td>" in block
    assert "@example.org" not in block and "r0@" not in page
