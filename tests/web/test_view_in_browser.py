"""The web version of an edition (``/v/<edition id>``, "View in browser" in the email): public
only once the edition went out, per variant (``?s=``), without personal tokens, with a policy
of its own that allows the email's inline styles and still no script."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from digest.models import Article, Edition, EditionStatus
from digest.render.personalise import TOKENS
from digest.store import Store
from tests.conftest import draft_to
from tests.render import weekly_edition
from tests.web.conftest import BASE, START

EDITION = "weekly-2026-W17"
HTML = {"accept": "text/html"}


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href") or "")


def hrefs(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    parser.close()
    return parser.hrefs


@pytest.fixture
def save(store: Store) -> Callable[..., Edition]:
    """Store ``weekly_edition()`` (under ``edition_id``) with ``status``."""

    def _save(status: EditionStatus, edition_id: str = EDITION) -> Edition:
        edition = weekly_edition().model_copy(update={"id": edition_id})
        store.save_articles(
            [
                Article(
                    id=t.article_id,
                    source=t.section,
                    url=t.url,
                    title=t.title,
                    published=t.published,
                )
                for t in edition.teasers
            ],
            now=START,
        )
        store.save_edition(edition, now=START)
        if status is not EditionStatus.DRAFT:
            draft_to(store, edition_id, status, now=START)
        return edition

    return _save


def titles(edition: Edition, section: str | None = None) -> list[str]:
    return [t.title for s in edition.sections if section in (None, s.key) for t in s.teasers]


def escaped(text: str) -> str:
    # The titles as the email's HTML carries them (autoescape; quotes in text are left alone).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_sent_edition_is_served_without_tokens(
    client: TestClient, save: Callable[..., Edition]
) -> None:
    edition = save(EditionStatus.SENT)
    r = client.get(f"/v/{EDITION}", headers=HTML)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    body = r.text
    for title in titles(edition):
        assert escaped(title) in body, title
    assert "%%" not in body
    for token in TOKENS:
        assert token not in body
    # The personal links lead to the sign-up page; the greeting is the neutral one.
    links = hrefs(body)
    assert links.count(f"{BASE}/subscribe") == 2
    assert not any("/u/" in h or "/p/" in h for h in links)
    assert '<p class="p" style="display: block;margin: 0 0 12px;">Hello,</p>' in body
    # The page is the web version: it does not link to itself.
    assert "View in browser" not in body
    assert not any("/v/" in h for h in links)


def test_sending_edition_is_served(client: TestClient, save: Callable[..., Edition]) -> None:
    save(EditionStatus.SENDING)
    assert client.get(f"/v/{EDITION}").status_code == 200


@pytest.mark.parametrize(
    "status", [EditionStatus.DRAFT, EditionStatus.APPROVED, EditionStatus.REJECTED]
)
def test_edition_that_did_not_go_out_is_not_found(
    client: TestClient, save: Callable[..., Edition], status: EditionStatus
) -> None:
    edition = save(status)
    r = client.get(f"/v/{EDITION}", headers=HTML)
    assert r.status_code == 404
    assert "Page not found" in r.text
    for title in titles(edition):
        assert escaped(title) not in r.text
    # Nothing was rendered for it either.
    assert client.get(f"/v/{EDITION}?s=qiosk").status_code == 404


def test_unknown_edition_is_not_found(client: TestClient, save: Callable[..., Edition]) -> None:
    save(EditionStatus.SENT)
    for path in ("/v/weekly-2026-W18", "/v/" + "x" * 300, "/v/weekly-2026-W17x"):
        r = client.get(path, headers=HTML)
        assert r.status_code == 404, path
        assert "Page not found" in r.text


@pytest.mark.parametrize(
    "query", ["s=nope", "s=qiosk,nope", "s=QIOSK", "s=qiosk%2C..%2Fetc", "s=" + "q," * 600]
)
def test_unknown_section_is_not_found(
    client: TestClient, save: Callable[..., Edition], query: str
) -> None:
    save(EditionStatus.SENT)
    r = client.get(f"/v/{EDITION}?{query}", headers=HTML)
    assert r.status_code == 404
    assert "Page not found" in r.text


def test_section_variant_shows_only_its_sections(
    client: TestClient, save: Callable[..., Edition]
) -> None:
    edition = save(EditionStatus.SENT)
    body = client.get(f"/v/{EDITION}?s=qiosk,analysis").text
    for title in titles(edition, "qiosk") + titles(edition, "analysis"):
        assert escaped(title) in body, title
    for title in titles(edition, "diplomacy-watch"):
        assert escaped(title) not in body, title
    assert "More from Diplomacy Watch" not in body
    assert "%%" not in body


def test_every_section_is_the_full_edition(
    app: FastAPI, client: TestClient, save: Callable[..., Edition]
) -> None:
    save(EditionStatus.SENT)
    full = client.get(f"/v/{EDITION}").text
    assert client.get(f"/v/{EDITION}?s=analysis,diplomacy-watch,qiosk").text == full
    assert client.get(f"/v/{EDITION}?s=").text == full
    assert len(app.state.web_versions) == 1


def test_variants_are_rendered_once(
    app: FastAPI, client: TestClient, save: Callable[..., Edition], monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.web.public as web_public

    save(EditionStatus.SENT)
    calls: list[frozenset[str] | None] = []
    render = web_public.render_variant

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(kw.get("sections"))
        return render(*args, **kw)

    monkeypatch.setattr(web_public, "render_variant", counting)
    first = client.get(f"/v/{EDITION}?s=qiosk,analysis").text
    # The same variant however its keys are ordered or repeated.
    assert client.get(f"/v/{EDITION}?s=analysis,qiosk,qiosk").text == first
    client.get(f"/v/{EDITION}")
    client.get(f"/v/{EDITION}")
    assert calls == [frozenset({"analysis", "qiosk"}), None]


def test_headers_allow_inline_styles_and_no_script(
    client: TestClient, save: Callable[..., Edition]
) -> None:
    save(EditionStatus.SENT)
    r = client.get(f"/v/{EDITION}")
    policy = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
    assert policy["script-src"] == ["'none'"]
    assert policy["default-src"] == ["'none'"]
    assert policy["style-src"] == ["'unsafe-inline'"]
    assert policy["img-src"] == ["https:"]
    assert policy["frame-ancestors"] == ["'self'"]
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert r.headers["cache-control"] == "public, max-age=300"
    # The app's other headers are still there.
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-robots-tag"] == "noindex, nofollow"
    # The email's styles are what the policy allows: a <style> block and style attributes.
    assert "<style" in r.text and ' style="' in r.text
    assert "<script" not in r.text


def test_other_pages_keep_the_app_policy(client: TestClient, save: Callable[..., Edition]) -> None:
    save(EditionStatus.SENT)
    page = client.get("/subscribe")
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    # So does the 404 of the route itself.
    missing = client.get("/v/weekly-2026-W18", headers=HTML)
    assert "unsafe-inline" not in missing.headers["content-security-policy"]
    assert missing.headers["cache-control"] == "no-store"


def test_head_answers_like_get(client: TestClient, save: Callable[..., Edition]) -> None:
    save(EditionStatus.SENT)
    r = client.head(f"/v/{EDITION}")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
