"""Composition from plain values: no store, no clock, no network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.compose.editions import compose_edition, fill
from digest.compose.periods import period_key
from digest.compose.teasers import kicker_for, lede, make_teaser
from digest.config import SectionSettings, load_settings
from digest.errors import NothingNew
from digest.gather.feeds import parse_feed
from digest.gather.sections import in_section
from digest.models import Overrides
from tests.conftest import ROOT, article

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def test_period_keys_follow_the_digest_timezone() -> None:
    # Monday 02:00 UTC is still Sunday in New York: ISO week 48, not 49.
    monday_utc = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    assert period_key(monday_utc, "weekly", "America/New_York") == "2026-W48"
    assert period_key(monday_utc, "weekly", "UTC") == "2026-W49"
    assert period_key(monday_utc, "daily", "America/New_York") == "2026-11-29"
    assert period_key(monday_utc, "monthly", "Asia/Tokyo") == "2026-11"
    with pytest.raises(ValueError):
        period_key(monday_utc.replace(tzinfo=None), "daily", "UTC")


def test_kicker_rules() -> None:
    section = SectionSettings(
        title="Analysis", sources=["analysis"], kicker="Analysis | {category}"
    )
    assert kicker_for(article(1, categories=("Analysis", "Middle East")), section) == (
        "Analysis | Middle East"
    )
    assert kicker_for(article(1, categories=("Analysis",)), section) == "Analysis"
    plain = SectionSettings(title="QiOSK", sources=["qiosk"])
    assert kicker_for(article(1), plain) == "QiOSK"


def test_lede_skips_furniture_and_keeps_budget() -> None:
    a = article(
        1,
        summary_html=(
            "<p>Follow us on social</p><p>Cap</p><p>Shutterstock_645187786-scaled</p>"
            "<p>The real first paragraph.</p><p>The second one.</p><p>The third.</p>"
            "<p>The post Item appeared first on The Meridian Review.</p>"
        ),
    )
    assert lede(a, max_paragraphs=2, budget=450, skip=("Cap",)) == (
        "The real first paragraph.",
        "The second one.",
    )
    long = article(2, summary_html="<p>" + "Word " * 200 + "</p>")
    (only,) = lede(long, max_paragraphs=2, budget=100)
    assert len(only) <= 100 and only.endswith("…")


def test_lede_falls_back_to_content() -> None:
    a = article(1, summary_html="", content_html="<p>From the body.</p>")
    assert lede(a, max_paragraphs=2, budget=450) == ("From the body.",)


def test_teaser_alt_defaults_to_title() -> None:
    section = SectionSettings(title="QiOSK", sources=["qiosk"])
    t = make_teaser(
        article(3, title="Talks resume"),
        section_key="qiosk",
        section=section,
        max_paragraphs=2,
        budget=450,
    )
    assert t.image is not None and t.image.alt == "Talks resume"
    headline = make_teaser(
        article(3), section_key="qiosk", section=section, max_paragraphs=2, budget=450, full=False
    )
    assert headline.image is None and headline.paragraphs == ()


def test_compose_orders_caps_and_dedupes(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        {"digests": {"weekly": {"max_per_section": 3, "cards_per_section": 2, "max_items": 5}}}
    )
    qiosk = [article(n) for n in range(1, 6)]
    shared = article(9, source="analysis", categories=("Analysis", "Europe"))
    edition = compose_edition(
        {"diplomacy-watch": [shared], "qiosk": qiosk, "analysis": [shared, article(8)]},
        history={qiosk[4].id},
        settings=settings,
        digest_key="weekly",
        now=NOW,
    )
    assert edition.id == "weekly-2026-W49"
    assert [s.key for s in edition.sections] == ["diplomacy-watch", "qiosk", "analysis"]
    # The shared article goes to the first section only; history is never repeated.
    assert edition.sections[0].teasers[0].article_id == shared.id
    assert shared.id not in [t.article_id for t in edition.sections[2].teasers]
    assert qiosk[4].id not in edition.article_ids
    # Newest first, capped per section, cards then headlines, capped overall.
    q = edition.sections[1].teasers
    assert [t.article_id for t in q] == [qiosk[3].id, qiosk[2].id, qiosk[1].id]
    assert [t.full for t in q] == [True, True, False]
    assert len(edition.teasers) == 5
    assert edition.subject == f"The Weekly Dispatch: {shared.title}"


def test_compose_skips_future_and_old_articles(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings({"digests": {"weekly": {"max_age_days": 7}}})
    future = article(1, published=datetime(2026, 12, 5, tzinfo=UTC))
    old = article(2, published=datetime(2026, 11, 1, tzinfo=UTC))
    fresh = article(3, published=datetime(2026, 11, 28, tzinfo=UTC))
    edition = compose_edition(
        {"qiosk": [future, old, fresh]},
        history=set(),
        settings=settings,
        digest_key="weekly",
        now=NOW,
    )
    assert edition.article_ids == (fresh.id,)


def test_nothing_new_says_since_when(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    a = article(1)
    with pytest.raises(NothingNew, match=r"since 2026-11-23.*no edition"):
        compose_edition(
            {"qiosk": [a]},
            history={a.id},
            settings=settings,
            digest_key="weekly",
            now=NOW,
            last_edition_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        )


def test_compose_is_deterministic(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    items = [article(n) for n in range(10)]
    one = compose_edition(
        {"qiosk": items}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    two = compose_edition(
        {"qiosk": list(reversed(items))},
        history=set(),
        settings=settings,
        digest_key="weekly",
        now=NOW,
    )
    assert one == two


def test_subject_template_fields_and_control_chars(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        {"digests": {"weekly": {"subject": "{publication} · {count} · {nope} · {lead_title}"}}}
    )
    edition = compose_edition(
        {"qiosk": [article(1, title="Evil\r\nBcc: x@example.org")]},
        history=set(),
        settings=settings,
        digest_key="weekly",
        now=NOW,
    )
    assert edition.subject == "The Meridian Review · 1 · {nope} · Evil Bcc: x@example.org"
    assert fill("{a}-{b}", {"a": "1"}) == "1-{b}"


def test_cron_periods_open_at_the_scheduled_time() -> None:
    cron = "0 7 * * MON,THU"
    tz = "America/New_York"
    at_seven = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 07:00 in New York, a Monday
    assert period_key(at_seven, "cron", tz, cron) == "2026-11-30T0700"
    just_before = datetime(2026, 11, 30, 11, 59, tzinfo=UTC)
    assert period_key(just_before, "cron", tz, cron) == "2026-11-26T0700"
    wednesday = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
    assert period_key(wednesday, "cron", tz, cron) == "2026-11-30T0700"
    with pytest.raises(ValueError):
        period_key(wednesday, "cron", tz)


def test_editor_overrides(make_settings) -> None:  # type: ignore[no-untyped-def]
    from digest.models import Overrides

    settings = make_settings(
        {"digests": {"weekly": {"max_per_section": 3, "cards_per_section": 1}}}
    )
    qiosk = [article(n) for n in range(1, 7)]
    analysis = [article(20, source="analysis", categories=("Europe",))]
    old = qiosk[0]  # the oldest, and an earlier edition carried it
    edits = Overrides(
        intro="A **short** note.",
        subject="Special: {lead_title}",
        preheader="Hand-picked",
        pinned=(old.id, qiosk[2].id),
        excluded=(qiosk[5].id,),
        section_order=("analysis",),
    )
    edition = compose_edition(
        {"qiosk": qiosk, "analysis": analysis},
        history={old.id},
        settings=settings,
        digest_key="weekly",
        now=NOW,
        overrides=edits,
    )
    assert [s.key for s in edition.sections] == ["analysis", "qiosk"]
    q = edition.sections[1].teasers
    # Pinned first in the editor's order (even one carried before), then the newest; the
    # excluded one never; the cap still holds; only the first is a card.
    assert [t.article_id for t in q] == [old.id, qiosk[2].id, qiosk[4].id]
    assert [t.pinned for t in q] == [True, True, False]
    assert [t.full for t in q] == [True, False, False]
    assert edition.subject == f"Special: {analysis[0].title}"
    assert edition.preheader == "Hand-picked" and edition.intro == "A **short** note."


def test_composition_golden(make_settings) -> None:  # type: ignore[no-untyped-def]
    """The whole edition for fixture articles, against tests/data/golden/edition.json.

    After an intended change, rewrite it with UPDATE_GOLDENS=1 and read the diff.
    """
    import json
    import os

    from tests.conftest import ROOT

    settings = make_settings({"digests": {"weekly": {"max_per_section": 3}}})
    fixtures = json.loads((ROOT / "tests" / "data" / "compose" / "articles.json").read_text())
    from digest.models import Article

    articles = [Article.model_validate(a) for a in fixtures]
    by_section: dict[str, list[Article]] = {}
    for a in articles:
        by_section.setdefault(a.source, []).append(a)
    edition = compose_edition(
        by_section, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    got = json.dumps(edition.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    golden = ROOT / "tests" / "data" / "golden" / "edition.json"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")


def test_subjects_never_repeat_a_name(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    lead = article(5, source="diplomacy-watch", title="Diplomacy Watch: Ceasefire talks resume")
    edition = compose_edition(
        {"diplomacy-watch": [lead]}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    assert edition.subject == "The Weekly Dispatch: Ceasefire talks resume"
    assert edition.preheader == "1 new pieces, starting with Ceasefire talks resume"
    # The digest's own name in the lead's title, or twice in an editor's template.
    own = article(6, title="The Weekly Dispatch — a year of talks")
    again = compose_edition(
        {"qiosk": [own]},
        history=set(),
        settings=settings,
        digest_key="weekly",
        now=NOW,
        overrides=Overrides(subject="{digest}: {publication} | {digest}: {lead_title}"),
    )
    assert again.subject == "The Weekly Dispatch: The Meridian Review: a year of talks"


def test_example_publication_names_each_thing_once() -> None:
    """The bundled demo: section heading, kicker and title no longer say "Diplomacy Watch"
    three times in a row, nor the subject twice."""
    settings = load_settings(ROOT / "config" / "example.toml", environ={})
    candidates = {}
    for key, section in settings.sections.items():
        found = []
        for src in section.sources:
            body = settings.resolve(settings.sources[src].path).read_bytes()
            found += parse_feed(
                body, source=src, url="https://meridian.example.org/", now=NOW
            ).articles
        candidates[key] = [a for a in found if in_section(a, section)]
    edition = compose_edition(
        candidates, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    first = edition.sections[0]
    assert first.title == "Diplomacy Watch"
    card = first.teasers[0]
    assert "Diplomacy Watch" not in card.kicker + card.title
    assert card.kicker == "Africa" and card.title == "Ceasefire talks resume in Doha"
    assert edition.subject == "The Weekly Dispatch: Ceasefire talks resume in Doha"
