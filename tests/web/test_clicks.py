"""Click analytics: edition links through signed redirects (``/c/<token>``), refused when forged
or altered (no open redirect), scanners not counted, repeats counted once, counts exact under
concurrent clicks on a real server, and the stats editors read (page, ``digest stats``)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import URLSafeSerializer
from pydantic import SecretStr
from typer.testing import CliRunner

from digest.cli import app as cli
from digest.config import Settings
from digest.delivery.memory import MemoryProvider
from digest.models import (
    Edition,
    EditionAction,
    EditionStatus,
    SendResult,
    SendStatus,
    SubscriberStatus,
)
from digest.render import render_variant
from digest.render.clicks import SALT, ClickTarget, click_token, read_click_token
from digest.steps.compose import compose
from digest.store import Store
from digest.web.app import create_app
from tests.conftest import _deep_update, article, base_config, draft_to, write_toml
from tests.servers import serve_app
from tests.web.conftest import BASE, KEY, OLD_KEY, Clock, web_overrides

ARTICLES = [article(n) for n in (3, 5, 7)]
READER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}
LINK = re.compile(r'href="(' + re.escape(BASE) + r'/c/[^"]+)"')


def overrides() -> dict[str, Any]:
    data = web_overrides()
    data["digests"]["weekly"] = {"click_tracking": True}
    return data


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(overrides(), DIGEST__SECRET_KEY=KEY, DIGEST__OLD_SECRET_KEYS=OLD_KEY)


@pytest.fixture
def edition(settings: Settings, store: Store, clock: Clock) -> Edition:
    store.save_articles(ARTICLES, now=clock())
    outcome = compose(settings, store, "weekly", now=clock())
    assert outcome.edition is not None
    return outcome.edition


def send(store: Store, edition: Edition, clock: Clock, recipients: int = 4) -> None:
    """The edition sent to ``recipients`` subscribers now (the clock's time)."""
    from digest.models import NewSubscriber

    ids = []
    for n in range(recipients):
        sub, _ = store.add_subscriber(
            NewSubscriber(email=f"r{n}@example.org"),
            status=SubscriberStatus.ACTIVE,
            source="test",
            now=clock(),
            cause="test",
        )
        ids.append(sub.id)
    draft_to(store, edition.id, EditionStatus.SENDING, now=clock())
    store.create_deliveries(edition.id, ids, now=clock())
    claimed = store.claim_batch(edition.id, recipients, now=clock())
    store.mark_results(
        {c.delivery_id: SendResult(key="k", status=SendStatus.SUBMITTED) for c in claimed},
        now=clock(),
    )
    store.change_edition_status(edition.id, EditionAction.FINISH, now=clock())


def links(settings: Settings, edition: Edition) -> list[str]:
    """The article links of the rendered email, in order, each once (a card links its title,
    image and "Keep reading")."""
    html = render_variant(edition, settings).html
    return list(dict.fromkeys(unescape(h) for h in LINK.findall(html)))


def path(url: str) -> str:
    return urlsplit(url).path


# The apps of the running test: their recorders are flushed before counts are read.
APPS: list[FastAPI] = []


@pytest.fixture(autouse=True)
def _flushed() -> Iterator[None]:
    yield
    for a in APPS:
        a.state.click_recorder.close()
    APPS.clear()


@pytest.fixture
def app(settings: Settings, store: Store, clock: Clock, provider: MemoryProvider) -> FastAPI:
    return recorded(create_app(settings, store, clock=clock, provider_factory=lambda: provider))


def recorded(app: FastAPI) -> FastAPI:
    APPS.append(app)
    return app


def counts(store: Store, edition: Edition) -> dict[str, tuple[int, int]]:
    """(clicks, filtered) per article, once every click submitted is written."""
    for a in APPS:
        assert a.state.click_recorder.flush(20)
    return {c.article_id: (c.clicks, c.filtered) for c in store.click_counts(edition.id)}


@pytest.fixture
def sent(store: Store, edition: Edition, clock: Clock) -> Edition:
    send(store, edition, clock)
    clock.advance(minutes=5)  # past the scanner window
    return edition


# Links -------------------------------------------------------------------------------------------
def test_article_links_are_signed_redirects_that_keep_their_utm(
    settings: Settings, edition: Edition
) -> None:
    found = links(settings, edition)
    assert len(found) == len(ARTICLES)
    targets = [
        read_click_token(settings.verifying_keys, path(u).removeprefix("/c/")) for u in found
    ]
    assert all(t is not None for t in targets)
    by_article = {t.article_id: t for t in targets if t}
    assert set(by_article) == {a.id for a in ARTICLES}
    for a in ARTICLES:
        target = by_article[a.id]
        assert target.edition_id == edition.id
        assert target.url.startswith(a.url)
        query = parse_qs(urlsplit(target.url).query)
        assert query["utm_campaign"] == [edition.id]
        assert query["utm_source"] == ["newsletter"]
    # Nothing personal in the links: the same for every recipient of the variant.
    assert links(settings, edition) == found


def test_without_click_tracking_links_go_straight_to_the_article(
    make_settings: Callable[..., Settings], edition: Edition
) -> None:
    plain = make_settings(web_overrides(), DIGEST__SECRET_KEY=KEY)
    html = render_variant(edition, plain).html
    assert "/c/" not in html
    assert all(a.url in unescape(html) for a in ARTICLES)


def test_a_click_redirects_to_the_utm_link_at_once(
    client: TestClient, settings: Settings, sent: Edition
) -> None:
    url = links(settings, sent)[0]
    r = client.get(path(url), headers=READER, follow_redirects=False)
    assert r.status_code == 302
    target = read_click_token(KEY, path(url).removeprefix("/c/"))
    assert target is not None
    assert r.headers["location"] == target.url
    assert "utm_medium=email" in r.headers["location"]
    assert r.headers["cache-control"] == "no-store"


# Forgery and open redirects -----------------------------------------------------------------------
def _evil_tokens(edition: Edition) -> dict[str, str]:
    target = ClickTarget("https://evil.example/phish", edition.id, ARTICLES[0].id, "qiosk")
    good = click_token(KEY, ClickTarget("https://x.example/a", edition.id, "a", "qiosk"))
    payload, sig = good.rsplit(".", 1)
    swapped = click_token("another key", target).rsplit(".", 1)[0] + "." + sig
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + sig
    unsub = URLSafeSerializer(KEY, salt="newsletter-digest.unsubscribe.v1").dumps(
        ["https://evil.example/", edition.id, "a", "qiosk"]
    )
    return {
        "another key": click_token("another key", target),
        "another payload, the signature kept": swapped,
        "one character changed": flipped,
        "the signature cut off": payload,
        "another purpose's salt": str(unsub),
        "a protocol-relative target": click_token(
            KEY, ClickTarget("//evil.example/x", edition.id, "a", "qiosk")
        ),
        "a javascript: target": click_token(
            KEY, ClickTarget("javascript:alert(1)", edition.id, "a", "qiosk")
        ),
        "a wrong payload shape": str(URLSafeSerializer(KEY, salt=SALT).dumps({"url": "x"})),
        "too long": "A" * 5000,
    }


@pytest.mark.parametrize(
    "case",
    [
        "another key",
        "another payload, the signature kept",
        "one character changed",
        "the signature cut off",
        "another purpose's salt",
        "a protocol-relative target",
        "a javascript: target",
        "a wrong payload shape",
        "too long",
    ],
)
def test_a_forged_or_altered_token_redirects_nowhere(
    client: TestClient, store: Store, sent: Edition, case: str
) -> None:
    r = client.get(f"/c/{_evil_tokens(sent)[case]}", headers=READER, follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert "evil.example" not in r.text
    assert counts(store, sent) == {}


@pytest.mark.parametrize(
    "raw", ["/c//evil.example", "/c/%2F%2Fevil.example", "/c/https:%2F%2Fevil.example", "/c/"]
)
def test_open_redirect_attempts_are_refused(client: TestClient, raw: str) -> None:
    r = client.get(raw, headers=READER, follow_redirects=False)
    assert r.status_code in (400, 404)
    assert "evil.example" not in r.headers.get("location", "")
    assert not r.headers.get("location", "").startswith(("http", "//"))


def test_links_signed_with_an_old_key_still_work(client: TestClient, sent: Edition) -> None:
    target = ClickTarget("https://news.example/a?utm_source=newsletter", sent.id, "a", "qiosk")
    r = client.get(f"/c/{click_token(OLD_KEY, target)}", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == target.url


# What counts ------------------------------------------------------------------------------------
def test_a_readers_click_counts_once_per_link(
    client: TestClient, store: Store, settings: Settings, sent: Edition
) -> None:
    first, second = links(settings, sent)[:2]
    for _ in range(3):
        assert client.get(path(first), headers=READER, follow_redirects=False).status_code == 302
    client.get(path(second), headers=READER, follow_redirects=False)
    other = {"User-Agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15"}
    client.get(path(first), headers=other, follow_redirects=False)
    got = counts(store, sent)
    a_first = read_click_token(KEY, path(first).removeprefix("/c/"))
    a_second = read_click_token(KEY, path(second).removeprefix("/c/"))
    assert a_first and a_second
    assert got[a_first.article_id] == (2, 0)
    assert got[a_second.article_id] == (1, 0)


def test_nothing_about_the_visitor_is_stored_but_a_salted_hash(
    client: TestClient, store: Store, settings: Settings, sent: Edition
) -> None:
    import sqlalchemy as sa

    client.get(path(links(settings, sent)[0]), headers=READER, follow_redirects=False)
    assert counts(store, sent)
    with store.engine.connect() as c:
        rows = c.execute(sa.text("SELECT day, visitor FROM click_visitors")).all()
    assert len(rows) == 1
    _day, visitor = rows[0]
    assert re.fullmatch(r"[0-9a-f]{64}", visitor)
    assert "testclient" not in visitor and "Firefox" not in visitor


def test_the_day_s_hashes_go_the_next_day(
    client: TestClient, store: Store, settings: Settings, sent: Edition, clock: Clock
) -> None:
    import sqlalchemy as sa

    url = path(links(settings, sent)[0])
    client.get(url, headers=READER, follow_redirects=False)
    assert counts(store, sent)
    clock.advance(days=1)
    client.get(url, headers=READER, follow_redirects=False)
    assert counts(store, sent)
    with store.engine.connect() as c:
        days = c.execute(sa.text("SELECT DISTINCT day FROM click_visitors")).scalars().all()
    assert days == [clock().date().isoformat()]
    # A new day, a new salt: the same reader the next day is a new click (documented).
    assert sum(c for c, _ in counts(store, sent).values()) == 2


@pytest.mark.parametrize(
    "how",
    [
        "HEAD",
        "Barracuda",
        "Mimecast",
        "Proofpoint",
        "bot",
        "preview",
        "scanner",
        "within the window",
        "before sending",
    ],
)
def test_scanners_and_prefetchers_are_not_counted(
    client: TestClient, store: Store, settings: Settings, edition: Edition, clock: Clock, how: str
) -> None:
    if how != "before sending":
        send(store, edition, clock)
        clock.advance(seconds=5 if how == "within the window" else 300)
    url = path(links(settings, edition)[0])
    agents = {
        "Barracuda": "Barracuda Sentinel (EE)",
        "Mimecast": "Mozilla/5.0 Mimecast-URL-Protect",
        "Proofpoint": "Proofpoint URL Defense",
        "bot": "Mozilla/5.0 (compatible; Googlebot/2.1)",
        "preview": "Mozilla/5.0 Outlook-Preview",
        "scanner": "SafeLink Scanner 1.0",
    }
    headers = {"User-Agent": agents.get(how, READER["User-Agent"])}
    method = "HEAD" if how == "HEAD" else "GET"
    r = client.request(method, url, headers=headers, follow_redirects=False)
    assert r.status_code == 302  # a scanner still gets its redirect
    assert list(counts(store, edition).values()) == [(0, 1)]


def test_the_scanner_window_is_a_setting(
    make_settings: Callable[..., Settings], store: Store, edition: Edition, clock: Clock
) -> None:
    data = overrides()
    data["analytics"] = {"scanner_window_seconds": 0, "scanner_agents": ["corp-gateway"]}
    settings = make_settings(data, DIGEST__SECRET_KEY=KEY)
    send(store, edition, clock)
    app = recorded(create_app(settings, store, clock=clock))
    url = path(links(settings, edition)[0])
    with TestClient(app) as c:
        c.get(url, headers={"User-Agent": "corp-gateway/2"}, follow_redirects=False)
        c.get(url, headers={"User-Agent": "Googlebot"}, follow_redirects=False)  # not listed now
    assert list(counts(store, edition).values()) == [(1, 1)]


# Concurrency, on a real server ------------------------------------------------------------------
@pytest.fixture
def served(app: FastAPI) -> Iterator[str]:
    with serve_app(app) as url:
        yield url


def test_concurrent_clicks_are_counted_exactly(
    served: str, store: Store, settings: Settings, sent: Edition
) -> None:
    url = served
    paths = [path(u) for u in links(settings, sent)]
    readers = 12

    def reader(n: int) -> list[int]:
        agent = {"User-Agent": f"Mozilla/5.0 reader-{n}"}
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as c:
            # Each reader clicks every link twice: the second click is a repeat.
            return [c.get(p, headers=agent).status_code for p in paths * 2]

    with ThreadPoolExecutor(max_workers=readers) as pool:
        answers = [s for got in pool.map(reader, range(readers)) for s in got]
    assert set(answers) == {302}
    assert counts(store, sent) == {a.id: (readers, 0) for a in ARTICLES}


# What editors see --------------------------------------------------------------------------------
def _click(client: TestClient, settings: Settings, edition: Edition, article_id: str, n: int):
    url = next(
        path(u)
        for u in links(settings, edition)
        if (t := read_click_token(KEY, path(u).removeprefix("/c/"))) and t.article_id == article_id
    )
    for i in range(n):
        client.get(url, headers={"User-Agent": f"reader {i}"}, follow_redirects=False)


@pytest.fixture
def clicked(client: TestClient, store: Store, settings: Settings, sent: Edition) -> Edition:
    _click(client, settings, sent, ARTICLES[0].id, 1)
    _click(client, settings, sent, ARTICLES[2].id, 3)
    client.head(path(links(settings, sent)[0]))
    assert sum(c + f for c, f in counts(store, sent).values()) == 5  # written
    return sent


def test_digest_stats_prints_articles_ranked_and_section_rates(
    tmp_path: Path, clicked: Edition, settings: Settings
) -> None:
    config = write_toml(
        tmp_path / "pub.toml", _deep_update(base_config(tmp_path / "var"), overrides())
    )
    result = CliRunner().invoke(cli, ["stats", clicked.id, "--config", str(config)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 by readers, 1 not counted" in out
    assert "4 recipients" in out
    ranked = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and "(" in line]
    assert ranked[:3] == ["3", "1", "0"]
    assert out.index(ARTICLES[2].title) < out.index(ARTICLES[0].title)
    rates = [line for line in out.splitlines() if re.search(r": \d+, \d+\.\d%$", line)]
    assert any(line.endswith(": 4, 100.0%") for line in rates), out
    missing = CliRunner().invoke(cli, ["stats", "weekly-1999-W01", "--config", str(config)])
    assert missing.exit_code == 2
    assert "no edition 'weekly-1999-W01'" in missing.output
    assert "Traceback" not in missing.output


def test_the_editors_page_shows_the_clicks(
    settings: Settings, store: Store, clock: Clock, clicked: Edition
) -> None:
    web = settings.web.model_copy(update={"editor_token": SecretStr("s3cret")})
    app = recorded(
        create_app(
            settings.model_copy(update={"web": web}),
            store,
            clock=clock,
            provider_factory=MemoryProvider,
        )
    )
    with TestClient(app, base_url=BASE, headers={"Authorization": "Bearer s3cret"}) as c:
        page = c.get(f"/editions/{clicked.id}").text
    block = page[page.index('id="clicks-title"') :]
    assert "4 by readers from 4 recipients; 1 not counted" in block
    assert block.index(ARTICLES[2].title) < block.index(ARTICLES[0].title)
    assert "100.0%" in block


def test_the_redirect_is_answered_before_the_click_is_written(
    served: str,
    store: Store,
    settings: Settings,
    sent: Edition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 302 goes out first: a write held up (a locked database) never holds the reader."""
    url = served
    release = threading.Event()
    writes: list[str] = []
    real = Store.record_clicks

    def held(self: Store, *a: Any, **k: Any) -> int:
        writes.append("started")
        release.wait(20)
        return real(self, *a, **k)

    monkeypatch.setattr(Store, "record_clicks", held)
    link = path(links(settings, sent)[0])
    started = time.monotonic()
    first = httpx.get(url + link, headers=READER, trust_env=False, timeout=5)
    second = httpx.get(url + link, headers={"User-Agent": "another"}, trust_env=False, timeout=5)
    elapsed = time.monotonic() - started
    assert (first.status_code, second.status_code) == (302, 302)
    assert elapsed < 5
    assert not release.is_set()
    release.set()
    assert list(counts(store, sent).values()) == [(2, 0)]


def test_a_click_that_cannot_be_written_still_redirects(
    client: TestClient,
    store: Store,
    settings: Settings,
    sent: Edition,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed write loses its batch's count (logged), not the redirect nor the recorder."""
    real = Store.record_clicks
    failures = [RuntimeError("database is locked")]

    def flaky(self: Store, *a: Any, **k: Any) -> int:
        if failures:
            raise failures.pop()
        return real(self, *a, **k)

    monkeypatch.setattr(Store, "record_clicks", flaky)
    url = path(links(settings, sent)[0])
    r = client.get(url, headers=READER, follow_redirects=False)
    assert r.status_code == 302
    assert counts(store, sent) == {}
    client.get(url, headers=READER, follow_redirects=False)
    assert list(counts(store, sent).values()) == [(1, 0)]


def test_click_tracking_is_off_by_default(make_settings: Callable[..., Settings]) -> None:
    plain = make_settings({})
    assert not any(d.click_tracking for d in plain.digests.values())
    assert timedelta(seconds=plain.analytics.scanner_window_seconds) == timedelta(seconds=60)
