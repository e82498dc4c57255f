"""Editions: pick what no earlier edition carried, per section, and lay it out as teasers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from datetime import datetime, timedelta

import regex

from digest.compose.periods import edition_id, period_key
from digest.compose.teasers import make_teaser
from digest.config import Settings
from digest.errors import NothingNew
from digest.models import Article, Edition, EditionSection, Overrides, Teaser
from digest.text import single_line

SUBJECT_MAX = 120
PREHEADER_MAX = 140


class _Fields(dict[str, str]):
    """Template fields; an unknown ``{name}`` stays as written instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, fields: Mapping[str, str]) -> str:
    """``template`` with its ``{field}`` names filled; text that is not a valid template (an
    editor's "Save 50% {today") is used as written."""
    try:
        return template.format_map(_Fields(fields))
    except (ValueError, IndexError, AttributeError):
        return template


_NAME_SEPARATOR = r"(?:\s*[:|·]\s*|\s+[–—-]\s+)"


def without_names(title: str, names: Sequence[str]) -> str:
    """``title`` without the names it opens with ("Diplomacy Watch: Talks resume" → "Talks
    resume" when "Diplomacy Watch" is a section's name); never empty."""
    changed = True
    while changed:
        changed = False
        for name in names:
            if not name:
                continue
            head = regex.match(rf"{regex.escape(name)}{_NAME_SEPARATOR}(?=\S)", title, regex.I)
            if head:
                title, changed = title[head.end() :], True
    return title


def name_once(text: str, names: Sequence[str]) -> str:
    """``text`` without a part ("A: B: C") that repeats one of ``names`` already said."""
    folded = {n.casefold() for n in names if n}
    parts = regex.split(rf"({_NAME_SEPARATOR})", text)
    kept: list[str] = []
    for i in range(0, len(parts), 2):
        part = parts[i]
        said = "".join(kept).casefold()
        if i and part.strip().casefold() in folded and part.strip().casefold() in said:
            continue
        kept += [parts[i - 1], part] if i else [part]
    return "".join(kept).strip()


def section_order(configured: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The editor's order first (keys the digest has), then the rest as configured."""
    first = [k for k in dict.fromkeys(wanted) if k in configured]
    return first + [k for k in configured if k not in first]


def compose_edition(
    candidates: Mapping[str, Sequence[Article]],
    *,
    history: Set[str],
    settings: Settings,
    digest_key: str,
    now: datetime,
    overrides: Overrides | None = None,
    created_at: datetime | None = None,
    last_edition_at: datetime | None = None,
) -> Edition:
    """The edition of ``digest_key`` for the period containing ``now``.

    ``candidates`` maps each section key to the articles that belong to it; ``history`` holds
    the ids that earlier editions of this digest carried, which are never repeated. Sections
    come in the digest's order (or the editor's); an article in two sections goes to the
    first. In each section pinned articles come first, in the editor's order, even if an
    earlier edition carried them; then the newest. Excluded articles never appear. Raises
    NothingNew when fewer than ``min_items`` remain.
    """
    digest = settings.digests[digest_key]
    edits = overrides or Overrides()
    oldest = now - timedelta(days=digest.max_age_days) if digest.max_age_days else None
    period = period_key(now, digest.period, digest.schedule.timezone, digest.schedule.cron)
    pins = {article_id: rank for rank, article_id in enumerate(edits.pinned)}
    excluded = set(edits.excluded)
    placed: set[str] = set()
    sections: list[EditionSection] = []
    total = 0
    for key in section_order(digest.sections, edits.section_order):
        if total >= digest.max_items:
            break
        section = settings.sections[key]
        pinned = sorted(
            (
                a
                for a in candidates.get(key, ())
                if a.id in pins and a.id not in placed and a.id not in excluded
            ),
            key=lambda a: pins[a.id],
        )
        fresh = [
            a
            for a in candidates.get(key, ())
            if a.id not in history
            and a.id not in placed
            and a.id not in excluded
            and a.id not in pins
            and a.published <= now
            and (oldest is None or a.published >= oldest)
        ]
        # Newest first; the id breaks ties so the order never depends on the input's order.
        fresh.sort(key=lambda a: (a.published, a.id), reverse=True)
        # Pins come first but the caps still hold: a pin can push out the newest, not add.
        cap = min(digest.max_per_section, digest.max_items - total)
        pinned = pinned[:cap]
        chosen = [*pinned, *fresh[: cap - len(pinned)]]
        if not chosen:
            continue
        teasers = tuple(
            make_teaser(
                a,
                section_key=key,
                section=section,
                max_paragraphs=settings.render.paragraphs,
                budget=settings.render.teaser_chars,
                full=i < digest.cards_per_section,
                pinned=a.id in pins,
            )
            for i, a in enumerate(chosen)
        )
        placed.update(a.id for a in chosen)
        total += len(teasers)
        sections.append(EditionSection(key=key, title=section.title, teasers=teasers))

    if total < digest.min_items:
        since = f" since {last_edition_at:%Y-%m-%d %H:%M %Z}" if last_edition_at else ""
        raise NothingNew(
            f"digest {digest_key!r}, period {period}: nothing new{since} "
            f"({total} new item(s), min_items={digest.min_items}); no edition, no email"
        )

    lead: Teaser = sections[0].teasers[0]
    # Subjects never name the digest, the publication or the lead's section twice.
    names = (digest.title, settings.publication.name, sections[0].title)
    fields = {
        "digest": digest.title,
        "publication": settings.publication.name,
        "lead_title": without_names(lead.title, names),
        "period": period,
        "count": str(total),
    }
    return Edition(
        id=edition_id(digest_key, period),
        digest=digest_key,
        period=period,
        title=digest.title,
        subject=single_line(
            name_once(fill(edits.subject or digest.subject, fields), names), SUBJECT_MAX
        ),
        preheader=single_line(fill(edits.preheader or digest.preheader, fields), PREHEADER_MAX),
        intro=edits.intro.strip(),
        sections=tuple(sections),
        created_at=created_at or now,
    )
