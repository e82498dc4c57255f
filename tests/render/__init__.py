"""Render tests. The fixed edition and settings here are plain values shared by the test files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from digest.config import Settings, parse_settings
from digest.models import Edition, EditionSection, Image, Teaser

NOW = datetime(2026, 4, 20, 11, 0, tzinfo=UTC)


def settings_dict(**render: Any) -> dict[str, Any]:
    """A small publication: one file source, three sections, one weekly digest."""
    sections = {
        "diplomacy-watch": "Diplomacy Watch",
        "qiosk": "QiOSK",
        "analysis": "Analysis",
    }
    return {
        "publication": {
            "name": "The Meridian Review",
            "url": "https://meridian.example.org",
            "from_email": "digest@meridian.example.org",
            "from_name": "The Meridian Review",
            "reply_to": "editors@meridian.example.org",
            "postal_address": "1200 Harbor Street, Suite 400\nBaltimore, MD 21230, USA",
            "links_base_url": "https://m.example.org",
            "unsubscribe_mailto": "unsubscribe@meridian.example.org",
        },
        "sources": {"feed": {"path": "feed.xml"}},
        "sections": {k: {"title": t, "sources": ["feed"]} for k, t in sections.items()},
        "digests": {
            "weekly": {
                "title": "The Weekly Dispatch",
                "sections": list(sections),
                "schedule": {"cron": "0 7 * * MON", "timezone": "America/New_York"},
            }
        },
        "render": {"utm_source": "meridian-weekly", **render},
    }


def make_settings(**render: Any) -> Settings:
    return parse_settings(settings_dict(**render), environ={})


def teaser(
    section: str,
    n: int,
    *,
    title: str | None = None,
    kicker: str = "",
    paragraphs: tuple[str, ...] | None = None,
    image: Image | None = None,
    full: bool = True,
    url: str | None = None,
) -> Teaser:
    return Teaser(
        article_id=f"{section}-{n}",
        section=section,
        url=url or f"https://meridian.example.org/{section}/story-{n}",
        kicker=kicker or section.replace("-", " ").title(),
        title=title or f"Story {n} of {section}",
        paragraphs=paragraphs if paragraphs is not None else (f"Lede of story {n}.",),
        image=image,
        published=NOW - timedelta(hours=n),
        full=full,
    )


def weekly_edition() -> Edition:
    """The golden edition: three sections, cards and headlines, non-ASCII, RTL, curly quotes,
    and an editor's note in Markdown (bold, a link, a list, raw HTML that must stay text)."""
    dw = (
        teaser(
            "diplomacy-watch",
            1,
            title="Diplomacy Watch: Talks resume in Geneva — “cautiously” hopeful",
            kicker="Diplomacy Watch",
            paragraphs=(
                "Negotiators from both delegations met for the first time since the winter "
                "recess. Officials described the session as “businesslike” and said the next "
                "round would focus on prisoner exchanges & grain corridors.",
                "A communiqué is expected on Friday; observers in Zürich and Kraków remain "
                "sceptical that it will go beyond procedure.",
            ),
            image=Image(
                url="https://cdn.meridian.example.org/img/geneva-talks.jpg",
                alt="Delegates seated around a long table in a conference hall",
                caption="Delegates at the opening session in Geneva.",
                credit="Photo: Ana Ferreira / Meridian",
                width=1200,
                height=675,
            ),
        ),
        teaser(
            "diplomacy-watch",
            2,
            title="Diplomacy Watch: A summit without the main party",
            kicker="Diplomacy Watch",
            paragraphs=(
                "Eighty delegations gathered for a peace conference that one of the two "
                "warring sides was not invited to, raising questions about what it can achieve.",
            ),
        ),
        teaser("diplomacy-watch", 3, title="Diplomacy Watch: The envoy’s long week", full=False),
        teaser("diplomacy-watch", 4, title="Diplomacy Watch: Notes from the corridor", full=False),
    )
    qiosk = (
        teaser(
            "qiosk",
            1,
            title="Panel urges a pause on transfers to two units",
            kicker="QiOSK",
            paragraphs=(
                "An internal review recommended suspending assistance to several units over "
                "credible allegations of abuses, according to documents seen by reporters.",
                "The department has not acted on the recommendation, which was made in December.",
            ),
            image=Image(
                url="https://cdn.meridian.example.org/img/press-briefing.jpg",
                alt="",
                caption="A spokesperson at the daily press briefing.",
                credit="Pool / Meridian",
                width=400,
            ),
        ),
        teaser(
            "qiosk",
            2,
            title="Why the phrase “السلام عليكم” opened the minister’s speech",
            kicker="QiOSK",
            paragraphs=(
                "The greeting, “السلام عليكم”, set the tone for an address that leaned on "
                "regional partnerships rather than on pressure.",
            ),
            url="https://meridian.example.org/qiosk/speech?ref=home&lang=en#top",
        ),
        teaser("qiosk", 3, title="Ελληνικά: Athens hosts a maritime forum", full=False),
    )
    analysis = (
        teaser(
            "analysis",
            1,
            title="Europe’s mixed messages on restraint",
            kicker="Analysis | Europe",
            paragraphs=(
                "The bloc’s statements were unanimous in form and divided in substance. "
                "That gap limits what its diplomats can do to bring about the de-escalation "
                "they all call for.",
                "Member states’ positions track the divisions that opened long before this "
                "crisis — and they are hardening.",
            ),
            image=Image(
                url="https://cdn.meridian.example.org/img/parliament.jpg",
                alt="The plenary chamber of a parliament, seen from the gallery",
                caption="",
                credit="Émile Durand",
                width=1600,
            ),
        ),
    )
    return Edition(
        id="weekly-2026-W17",
        digest="weekly",
        period="2026-W17",
        title="The Weekly Dispatch",
        subject="The Weekly Dispatch: Talks resume in Geneva — “cautiously” hopeful",
        preheader="7 new pieces from The Meridian Review this week",
        intro=(
            "This week: **two summits**, one report, and our "
            "[reading list on the talks](https://meridian.example.org/reading/geneva?from=digest)."
            "\n\n"
            "- Geneva: the first round since the winter recess\n"
            "- A peace conference without one of the parties\n"
            "\n"
            "As ever, reply to tell us what we missed <or got wrong> & we will read it."
        ),
        sections=(
            EditionSection(key="diplomacy-watch", title="Diplomacy Watch", teasers=dw),
            EditionSection(key="qiosk", title="QiOSK", teasers=qiosk),
            EditionSection(key="analysis", title="Analysis", teasers=analysis),
        ),
        created_at=NOW,
    )


LONG_PARAGRAPH = (
    "Negotiators met again this week as the talks entered their third month; both sides said "
    "that progress on the humanitarian file was real but fragile, and that the harder questions "
    "of sequencing, guarantees and verification remained open. Observers noted the tone had "
    "changed, and that the delegations were now working from a single draft text."
)


def long_edition(cards: int, *, edition_id: str = "weekly-2026-W18") -> Edition:
    """``cards`` full teasers with images and two long paragraphs, spread over three sections."""
    keys = ("diplomacy-watch", "qiosk", "analysis")
    per: dict[str, list[Teaser]] = {k: [] for k in keys}
    for i in range(cards):
        key = keys[i % 3]
        n = len(per[key]) + 1
        per[key].append(
            teaser(
                key,
                n,
                title=f"A fairly long headline number {i + 1} about talks, trade and the region",
                kicker="Analysis | Middle East",
                paragraphs=(LONG_PARAGRAPH, LONG_PARAGRAPH[:200]),
                image=Image(
                    url=f"https://cdn.meridian.example.org/img/photo-{i + 1}.jpg",
                    alt=f"Photo {i + 1}",
                    caption="A caption that describes the scene in a sentence or so.",
                    credit="Photographer Name / Agency",
                    width=1200,
                ),
            )
        )
    titles = {"diplomacy-watch": "Diplomacy Watch", "qiosk": "QiOSK", "analysis": "Analysis"}
    return Edition(
        id=edition_id,
        digest="weekly",
        period=edition_id.removeprefix("weekly-"),
        title="The Weekly Dispatch",
        subject="The Weekly Dispatch",
        preheader=f"{cards} new pieces",
        sections=tuple(
            EditionSection(key=k, title=titles[k], teasers=tuple(per[k])) for k in keys if per[k]
        ),
        created_at=NOW,
    )
