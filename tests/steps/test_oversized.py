"""One item cannot stop an edition: over-long fields are capped at gather, and an item that
still cannot fit the HTML budget is dropped from the edition (with a warning naming it) while
the others go out."""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.models import Image, NewSubscriber
from digest.steps import gather
from digest.steps.compose import compose
from digest.steps.edition import run_edition
from digest.store import Store
from digest.text import graphemes
from tests.conftest import article
from tests.servers import FeedServer

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
READERS = ["one@example.org", "two@example.org"]


def _item(n: int, title: str, *, extra: str = "") -> str:
    return (
        f"<item><title>{title}</title><link>https://news.example.org/{n}</link>"
        f"<guid>big-{n}</guid><pubDate>Fri, 27 Nov 2026 1{n}:00:00 +0000</pubDate>"
        f"<description>&lt;p&gt;{'A sentence of the lede. ' * 8}&lt;/p&gt;</description>"
        f"{extra}</item>"
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[FeedServer]:
    root = tmp_path / "site"
    root.mkdir()
    word = "Megabyte "
    huge_title = word * (1_000_000 // len(word))  # a 1 MB title
    extra = (
        f"<author>{'Writer ' * 30_000}</author><category>{'Topic ' * 30_000}</category>"
        '<media:content url="https://news.example.org/big.jpg" medium="image">'
        f"<media:description>{'Caption words. ' * 20_000}</media:description>"
        f"<media:credit>{'Credit ' * 20_000}</media:credit></media:content>"
    )
    (root / "big.xml").write_text(
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        "<title>Big</title>"
        + _item(1, "An ordinary headline")
        + _item(2, huge_title, extra=extra)
        + _item(3, "Another ordinary headline")
        + "</channel></rss>",
        encoding="utf-8",
    )
    server = FeedServer(root)
    yield server
    server.close()


def _settings(make_settings, tmp_path: Path, sources: dict) -> object:  # type: ignore[no-untyped-def]
    return make_settings(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'digest.db'}"},
            "delivery": {"provider": "outbox", "retry": {"wait": 0}},
            "sources": sources,
            "digests": {"weekly": {"max_age_days": 0}},
        }
    )


def test_a_megabyte_title_is_capped_at_gather_and_the_edition_goes_out(
    make_settings, tmp_path: Path, site: FeedServer
) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(
        make_settings,
        tmp_path,
        {"qiosk": {"url": f"{site.base}/big.xml", "path": "", "local": True, "fetch_pages": False}},
    )
    store = Store.open(settings.database_url)
    store.import_subscribers([NewSubscriber(email=e) for e in READERS], now=NOW)
    report = gather.fetch_source(settings, store, "qiosk", now=NOW)
    assert report.status == "updated" and report.entries == 3
    big = next(a for a in report.articles if a.title.startswith("Megabyte"))
    # The documented caps (digest.gather.feeds.normalise): titles 300 graphemes, names and
    # credits 200, categories 100, captions and alt text 500.
    assert len(graphemes(big.title)) <= 300 and big.title.endswith("…")
    assert big.title.removesuffix("…").endswith("Megabyte")  # cut at a word
    assert all(len(a) <= 200 for a in big.authors)
    assert all(len(c) <= 100 for c in big.categories)
    assert big.image is not None
    assert len(big.image.caption) <= 500 and len(big.image.credit) <= 200
    assert store.articles_by_id([big.id])[big.id].title == big.title

    done = run_edition(settings, store, "weekly", NOW)
    store.close()
    summary = done.summary
    assert done.failure is None and summary.edition_status == "sent", summary
    assert summary.items == 3 and summary.submitted == len(READERS)
    emls = sorted((settings.outbox_path / summary.edition_id).glob("*.eml"))
    assert len(emls) == len(READERS)
    message = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    assert big.title in html and "Megabyte " * 100 not in html


def test_an_item_that_cannot_fit_is_dropped_and_the_others_go_out(
    make_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    # Stored before the caps (or too big some other way): a 200 KB link alone is over the
    # 90 KB budget, whatever else the edition holds.
    settings = _settings(make_settings, tmp_path, {})
    store = Store.open(settings.database_url)
    store.import_subscribers([NewSubscriber(email=e) for e in READERS], now=NOW)
    huge_url = "https://news.example.org/" + "x" * 200_000
    monster = article(5, url=huge_url, image=Image(url=huge_url, alt="A picture"))
    store.save_articles([article(1), article(2), monster, article(3)], now=NOW)

    with caplog.at_level(logging.WARNING):
        outcome = compose(settings, store, "weekly", now=NOW)
    assert outcome.edition is not None
    ids = {t.article_id for t in outcome.edition.teasers}
    assert ids == {article(1).id, article(2).id, article(3).id}
    assert len(outcome.warnings) == 1
    warning = outcome.warnings[0]
    assert monster.id in warning and huge_url[:60] in warning and "budget" in warning
    assert len(warning) < 500  # names the URL, does not print 200 KB of it

    done = run_edition(settings, store, "weekly", NOW)
    store.close()
    summary = done.summary
    assert done.failure is None and summary.edition_status == "sent", summary
    assert summary.items == 3 and summary.submitted == len(READERS)
