"""The public archive (``/archive``, ``/archive/<digest>``) and its Atom feeds (``.atom``): only
editions that went out, newest first, each linking its web version, addresses from the public
base URL, and validators that answer a repeat with a 304."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from html.parser import HTMLParser

import feedparser
import pytest
from fastapi.testclient import TestClient

from digest.models import Article, Edition, EditionAction, EditionStatus
from digest.render.personalise import TOKENS
from digest.store import Store
from digest.web import archive
from tests.conftest import draft_to
from tests.render import weekly_edition
from tests.web.conftest import BASE, START

Save = Callable[..., Edition]
HTML = {"accept": "text/html"}


class Page(HTMLParser):
    """The links of a page (``a`` hrefs) and its ``link`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href") or "")
        elif tag == "link":
            self.links.append(dict(attrs))


def parsed(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def views(html: str) -> list[str]:
    """The web versions a page links, in order."""
    return [h for h in parsed(html).hrefs if "/v/" in h]


@pytest.fixture
def save(store: Store) -> Save:
    """Store the golden edition as ``edition_id`` of ``digest``, ``status``, gone out at ``at``."""
    base = weekly_edition()
    store.save_articles(
        [
            Article(
                id=t.article_id, source=t.section, url=t.url, title=t.title, published=t.published
            )
            for t in base.teasers
        ],
        now=START,
    )

    def _save(
        edition_id: str,
        status: EditionStatus = EditionStatus.SENT,
        *,
        at: datetime = START,
        subject: str = "",
    ) -> Edition:
        digest, _, period = edition_id.partition("-")
        edition = base.model_copy(
            update={
                "id": edition_id,
                "digest": digest,
                "period": period,
                "subject": subject or f"Subject of {edition_id}",
                "created_at": at,
            }
        )
        store.save_edition(edition, now=at)
        if status is not EditionStatus.DRAFT:
            draft_to(store, edition_id, status, now=at)
        return edition

    return _save


def test_the_archive_lists_sent_editions_newest_first(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17", at=START)
    save("briefing-2026-12-01", at=START + timedelta(days=1))
    save("weekly-2026-W18", at=START + timedelta(days=7))
    r = client.get("/archive", headers=HTML)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert views(r.text) == [
        f"{BASE}/v/weekly-2026-W18",
        f"{BASE}/v/briefing-2026-12-01",
        f"{BASE}/v/weekly-2026-W17",
    ]
    # Title, date, digest and the lead titles of each.
    assert "Subject of weekly-2026-W18" in r.text
    assert '<time datetime="2026-11-30T12:00:00+00:00">30 November 2026</time>' in r.text
    assert "The Morning Briefing" in r.text
    assert "Panel urges a pause on transfers to two units" in r.text
    # The feed is announced to readers and browsers.
    feeds = [link for link in parsed(r.text).links if link.get("rel") == "alternate"]
    assert feeds == [
        {
            "rel": "alternate",
            "type": "application/atom+xml",
            "title": "Archive",
            "href": f"{BASE}/archive.atom",
        }
    ]


def test_a_digest_has_its_own_archive(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17")
    save("briefing-2026-12-01", at=START + timedelta(days=1))
    r = client.get("/archive/weekly", headers=HTML)
    assert r.status_code == 200
    assert views(r.text) == [f"{BASE}/v/weekly-2026-W17"]
    assert f'href="{BASE}/archive/weekly.atom"' in r.text
    assert "/archive/briefing" in parsed(r.text).hrefs
    for path in ("/archive/nope", "/archive/nope.atom", "/archive/..%2Fv"):
        missing = client.get(path, headers=HTML)
        assert missing.status_code == 404, path
        assert "Page not found" in missing.text


@pytest.mark.parametrize(
    "status",
    [
        EditionStatus.DRAFT,
        EditionStatus.AWAITING_APPROVAL,
        EditionStatus.SKIPPED,
        EditionStatus.APPROVED,
        EditionStatus.REJECTED,
        EditionStatus.SENDING,
    ],
)
def test_what_did_not_go_out_is_never_listed(
    client: TestClient, save: Save, status: EditionStatus
) -> None:
    save("weekly-2026-W17")
    save("weekly-2026-W18", status, subject="Not yet out", at=START + timedelta(days=7))
    for path in ("/archive", "/archive/weekly"):
        page = client.get(path).text
        assert views(page) == [f"{BASE}/v/weekly-2026-W17"], path
        assert "Not yet out" not in page
    for path in ("/archive.atom", "/archive/weekly.atom"):
        body = client.get(path).text
        assert "weekly-2026-W18" not in body and "Not yet out" not in body, path
        assert [e.link for e in feedparser.parse(body).entries] == [f"{BASE}/v/weekly-2026-W17"]


def test_an_edition_sending_again_stays_listed_with_its_first_date(
    client: TestClient, store: Store, save: Save
) -> None:
    # Sent, then messages out of attempts queued again (sending again), then sent again.
    save("weekly-2026-W17")
    later = START + timedelta(days=3)
    store.change_edition_status("weekly-2026-W17", EditionAction.REOPEN, now=later)
    assert views(client.get("/archive").text) == [f"{BASE}/v/weekly-2026-W17"]
    store.change_edition_status("weekly-2026-W17", EditionAction.FINISH, now=later)
    [sent] = store.sent_editions(["weekly"], limit=10)
    assert sent.sent_at == START
    assert feedparser.parse(client.get("/archive.atom").text).entries[0].updated == (
        "2026-11-30T12:00:00Z"
    )


def test_no_personal_link_appears(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17")
    for path in ("/archive", "/archive/weekly", "/archive.atom", "/archive/weekly.atom"):
        body = client.get(path).text
        for token in TOKENS:
            assert token not in body, path
        assert "/u/" not in body and "/p/" not in body and "/confirm/" not in body, path


def test_the_feed_is_atom_with_one_entry_per_sent_edition(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17", subject="Talks <resume> & “hope”")
    save("briefing-2026-12-01", at=START + timedelta(days=1))
    r = client.get("/archive.atom")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(r.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.id == f"{BASE}/archive.atom"
    assert feed.feed.title == "The Meridian Review"
    assert feed.feed.updated == "2026-12-01T12:00:00Z"
    links = {(link.rel, link.href) for link in feed.feed.links}
    assert links == {("self", f"{BASE}/archive.atom"), ("alternate", f"{BASE}/archive")}
    newest, oldest = feed.entries
    assert newest.id == "tag:meridian.example.org,2026-12-01:digest/briefing-2026-12-01"
    assert oldest.id == "tag:meridian.example.org,2026-11-30:digest/weekly-2026-W17"
    assert oldest.title == "Talks <resume> & “hope”"
    assert oldest.link == f"{BASE}/v/weekly-2026-W17"
    assert oldest.updated == "2026-11-30T12:00:00Z"
    assert oldest.summary.startswith("Diplomacy Watch: Talks resume in Geneva")
    assert "Panel urges a pause" in oldest.summary
    assert [t.term for t in newest.tags] == ["The Morning Briefing"]
    # A digest's own feed: its editions, its own id and links.
    one = feedparser.parse(client.get("/archive/briefing.atom").content)
    assert one.feed.id == f"{BASE}/archive/briefing.atom"
    assert one.feed.title == "The Morning Briefing · The Meridian Review"
    assert [e.id for e in one.entries] == [newest.id]


def test_an_empty_feed_is_still_valid(client: TestClient) -> None:
    feed = feedparser.parse(client.get("/archive.atom").content)
    assert not feed.bozo
    assert feed.entries == []
    assert feed.feed.updated == "2026-11-30T12:00:00Z"
    assert "No editions yet." in client.get("/archive").text


def test_the_host_header_never_makes_an_address(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17")
    evil = {"host": "attacker.example", "x-forwarded-host": "attacker.example"}
    for path in ("/archive", "/archive.atom", "/archive/weekly", "/archive/weekly.atom"):
        body = client.get(path, headers=evil).text
        assert "attacker" not in body, path
        assert BASE in body, path


def test_a_repeat_gets_a_304(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17")
    first = client.get("/archive.atom")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert modified == "Mon, 30 Nov 2026 12:00:00 GMT"
    assert first.headers["cache-control"] == "public, max-age=300"
    again = client.get("/archive.atom", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/archive.atom", headers={"if-modified-since": modified}).status_code == 304
    # If-None-Match decides when both are sent.
    both = {"if-none-match": '"other"', "if-modified-since": modified}
    assert client.get("/archive.atom", headers=both).status_code == 200
    page = client.get("/archive")
    repeat = client.get("/archive", headers={"if-none-match": page.headers["etag"]})
    assert repeat.status_code == 304
    # A new edition out: the validators change.
    save("weekly-2026-W18", at=START + timedelta(days=7))
    changed = client.get("/archive.atom", headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert len(feedparser.parse(changed.content).entries) == 2


def test_many_editions_are_paged(
    client: TestClient, save: Save, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "PER_PAGE", 2)
    monkeypatch.setattr(archive, "FEED_ENTRIES", 3)
    for day in range(5):
        save(f"briefing-2026-12-0{day + 1}", at=START + timedelta(days=day))
    first = client.get("/archive")
    assert views(first.text) == [f"{BASE}/v/briefing-2026-12-05", f"{BASE}/v/briefing-2026-12-04"]
    assert "/archive?page=2" in parsed(first.text).hrefs
    second = client.get("/archive?page=2").text
    assert views(second) == [f"{BASE}/v/briefing-2026-12-03", f"{BASE}/v/briefing-2026-12-02"]
    assert {"/archive", "/archive?page=3"} <= set(parsed(second).hrefs)
    third = client.get("/archive/briefing?page=3").text
    assert views(third) == [f"{BASE}/v/briefing-2026-12-01"]
    assert "/archive/briefing?page=2" in parsed(third).hrefs
    for page in ("4", "0", "-1", "x", "9" * 40):
        r = client.get(f"/archive?page={page}", headers=HTML)
        assert r.status_code == 404, page
        assert "Page not found" in r.text
    assert len(feedparser.parse(client.get("/archive.atom").content).entries) == 3


def test_the_web_version_names_its_digests_feed(client: TestClient, save: Save) -> None:
    save("weekly-2026-W17")
    page = client.get("/v/weekly-2026-W17").text
    assert {
        "rel": "alternate",
        "type": "application/atom+xml",
        "href": f"{BASE}/archive/weekly.atom",
    } in parsed(page).links
