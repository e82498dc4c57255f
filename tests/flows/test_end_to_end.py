"""The whole path with real parts: feeds over HTTP on 127.0.0.1, Prefect flows in the test
harness, SQLite, the outbox (and SMTP in test_smtp_flow.py)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import Settings, parse_settings
from digest.models import DeliveryStatus, NewSubscriber
from digest.store import Store
from tests.conftest import SAMPLE, base_config, write_toml
from tests.servers import FeedServer

pytestmark = pytest.mark.flows

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # Monday, ISO week 49 in New York
NEXT_WEEK = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def write_config(
    tmp_path: Path, server: FeedServer, extra_sources: dict[str, str] | None = None
) -> Path:
    data = base_config(tmp_path / "var")
    data["sources"] = {
        "diplomacy-watch": {"url": f"{server.base}/diplomacy-watch.xml", "local": True},
        "qiosk": {"url": f"{server.base}/qiosk.xml", "local": True},
        "analysis": {"url": f"{server.base}/analysis.atom", "local": True},
    }
    for key, path in (extra_sources or {}).items():
        data["sources"][key] = {"url": f"{server.base}{path}", "local": True}
        data["sections"]["qiosk"]["sources"].append(key)
    data["http"] = {"retries": 1, "read_timeout": 0.5, "total_timeout": 1.5}
    # Room for every sample article, so that the next period has only what is new.
    data["digests"]["weekly"].update({"max_per_section": 12, "max_items": 40})
    return write_toml(tmp_path / "pub.toml", data)


def settings_of(path: Path) -> Settings:
    import tomllib

    return parse_settings(tomllib.loads(path.read_text()), base_dir=path.parent, environ={})


def add_subscribers(settings: Settings) -> list[NewSubscriber]:
    from digest.audience.csv_import import parse_subscribers_csv

    people, problems = parse_subscribers_csv(
        (SAMPLE / "subscribers.csv").read_text(encoding="utf-8"),
        known_sections=settings.sections,
    )
    assert not problems
    store = Store.open(settings.database_url)
    store.import_subscribers(people, now=NOW)
    store.close()
    return people


def emls(settings: Settings, edition_id: str) -> list[Path]:
    return sorted((settings.outbox_path / edition_id).glob("*.eml"))


def test_run_twice_then_next_week(tmp_path: Path, feed_server: FeedServer) -> None:
    from flows.pipeline import run_flow

    cfg = write_config(tmp_path, feed_server)
    settings = settings_of(cfg)
    people = add_subscribers(settings)

    first = run_flow(str(cfg), "weekly", NOW)
    assert first["edition_id"] == "weekly-2026-W49"
    assert first["edition_status"] == "sent"
    by_section = {s["section"]: s for s in first["sections"]}
    assert by_section["diplomacy-watch"]["articles"] == 10  # two items lack the prefix
    assert by_section["qiosk"]["articles"] == 12 and by_section["analysis"]["articles"] == 10
    assert first["items"] == 32
    assert first["submitted"] == first["submitted_now"] == first["recipients"]
    assert first["transient"] == first["permanent"] == 0
    files = emls(settings, first["edition_id"])
    assert len(files) == first["recipients"] == len(people) - first["skipped"]
    folder = settings.outbox_path / first["edition_id"]
    assert (folder / "index.html").is_file() and (folder / "digest.txt").is_file()

    # Every copy parses, is personal, and carries what spam filters and clients need.
    seen_to = set()
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        seen_to.add(msg["To"].addresses[0].addr_spec)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "https://" in msg["List-Unsubscribe"]
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        html = msg.get_body(("html",)).get_content()
        assert "%%" not in html and "1200 Harbor Street" in html
    assert len(seen_to) == len(files)

    # Same period again: no second edition, nothing sent twice, and no feed re-parsed.
    before = {p.name: p.stat().st_mtime_ns for p in files}
    second = run_flow(str(cfg), "weekly", NOW)
    assert second["edition_id"] == first["edition_id"]
    assert second["submitted_now"] == 0 and second["submitted"] == first["submitted"]
    assert {p.name: p.stat().st_mtime_ns for p in emls(settings, first["edition_id"])} == before
    assert sum(1 for path, status in feed_server.requests if status == 304) == 3

    # One new article in the next period: a new edition carrying only that article.
    feed = feed_server.root / "qiosk.xml"
    item = (
        "<item><title>Oslo hosts a new round of Sudan talks</title>"
        "<link>https://meridian.example.org/qiosk/oslo-sudan-talks</link>"
        '<guid isPermaLink="false">meridian-9001</guid>'
        "<pubDate>Fri, 04 Dec 2026 10:00:00 +0000</pubDate>"
        "<description>&lt;p&gt;Envoys met in Oslo on Friday.&lt;/p&gt;</description></item>"
    )
    text = feed.read_text(encoding="utf-8")
    feed.write_text(text.replace("<item>", item + "<item>", 1), encoding="utf-8")
    third = run_flow(str(cfg), "weekly", NEXT_WEEK)
    assert third["edition_id"] == "weekly-2026-W50"
    assert third["items"] == 1
    store = Store.open(settings.database_url)
    edition = store.edition("weekly-2026-W50")
    store.close()
    assert edition is not None
    assert [t.title for t in edition.teasers] == ["Oslo hosts a new round of Sudan talks"]
    # Subscribers who chose other sections get nothing this week.
    assert third["recipients"] == sum(
        1 for p in people if p.sections is None or "qiosk" in p.sections
    )


def test_failing_feeds_do_not_stop_the_others(tmp_path: Path, feed_server: FeedServer) -> None:
    from flows.pipeline import run_flow

    cfg = write_config(
        tmp_path,
        feed_server,
        {"broken": "/broken.xml", "malformed": "/malformed.xml", "slow": "/slow.xml"},
    )
    settings = settings_of(cfg)
    add_subscribers(settings)
    result = run_flow(str(cfg), "weekly", NOW)
    (qiosk,) = [s for s in result["sections"] if s["section"] == "qiosk"]
    failed = {f.split(":")[0]: f for f in qiosk["failed"]}
    assert set(failed) == {"broken", "malformed", "slow"}
    assert "HTTP 500" in failed["broken"] and "/broken.xml" in failed["broken"]
    assert re.search(r"time|deadline", failed["slow"], re.IGNORECASE)
    assert qiosk["articles"] == 12
    assert result["edition_status"] == "sent" and result["submitted"] > 0
    # A 500 is transient: tried again once (retries = 1) before giving up.
    assert [s for p, s in feed_server.requests if p == "/broken.xml"] == [500, 500]
    store = Store.open(settings.database_url)
    state = store.source_state("broken")
    counts = store.delivery_counts(result["edition_id"])
    store.close()
    assert state is not None and state.consecutive_failures == 1 and "500" in state.last_error
    assert counts[DeliveryStatus.SUBMITTED.value] == result["recipients"]

    # The health table names each failing source and why; the command says so by its code.
    from typer.testing import CliRunner

    from digest.cli import app

    health = CliRunner().invoke(app, ["sources", "--config", str(cfg)])
    assert health.exit_code == 1
    text = " ".join(health.output.split())
    for key in ("broken", "malformed", "slow"):
        assert key in text
    assert "500" in text and "never fetched" not in text


def test_dry_run_records_nothing(tmp_path: Path, feed_server: FeedServer) -> None:
    from flows.pipeline import run_flow

    cfg = write_config(tmp_path, feed_server)
    settings = settings_of(cfg)
    add_subscribers(settings)
    result = run_flow(str(cfg), "weekly", NOW, True)
    assert result["dry_run"] and result["edition_id"] == "weekly-2026-W49"
    assert result["submitted_now"] == result["recipients"] > 0
    store = Store.open(settings.database_url)
    assert store.count_articles() == 0 and store.edition("weekly-2026-W49") is None
    store.close()
    assert not settings.outbox_path.exists() or not any(settings.outbox_path.iterdir())


def test_rejected_and_sent_editions_send_nothing_more(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    from digest.errors import EditionStateError
    from digest.models import EditionAction
    from flows.pipeline import run_flow

    cfg = write_config(tmp_path, feed_server)
    settings = settings_of(cfg)
    add_subscribers(settings)
    first = run_flow(str(cfg), "weekly", NOW)
    assert first["edition_status"] == "sent"
    sent_files = len(emls(settings, first["edition_id"]))

    # Someone subscribes after the edition went out: they wait for the next one.
    store = Store.open(settings.database_url)
    store.import_subscribers([NewSubscriber(email="late@example.org")], now=NOW)
    again = run_flow(str(cfg), "weekly", NOW)
    assert again["submitted_now"] == 0 and len(emls(settings, first["edition_id"])) == sent_files

    # A sent edition is past deciding: a late rejection is refused, and runs send nothing more.
    # (A rejected edition's runs: tests/flows/test_approval.py.)
    with pytest.raises(EditionStateError, match="is sent; it can no longer be changed"):
        store.change_edition_status(first["edition_id"], EditionAction.REJECT, now=NOW)
    later = run_flow(str(cfg), "weekly", NOW)
    store.close()
    assert later["edition_status"] == "sent" and later["submitted_now"] == 0
    assert len(emls(settings, first["edition_id"])) == sent_files
