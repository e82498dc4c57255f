"""The edition page's edit form: what it shows of an edition (:func:`edit_form`) and what a post
of it asks (:func:`asked`), as the arguments of ``steps.compose.edit_changes``, the path
``digest edition edit`` takes too. Everything the command changes, the form changes: subject,
preheader, intro, pins (first in their section), exclusions and the sections' order.

A field the post leaves out changes nothing (but the articles' boxes: a box not ticked is not
pinned, or not left out, as HTML forms go). A subject or preheader equal to the edition's is no
change (so one made by the digest's template keeps following it); "the digest's own" brings the
template back. A mistake is a :class:`FormError`, whose message the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData

from digest.compose.editions import PREHEADER_MAX, SUBJECT_MAX, section_order
from digest.config import Settings
from digest.errors import DigestError, PermanentError
from digest.models import Edition, Overrides
from digest.steps.compose import resolve_article
from digest.store import Store
from digest.web.forms import form_text, form_texts

MAX_INTRO = 10_000
MAX_REF = 200
# The lines an editor may write over the digest's template: name -> (label, longest).
LINES = {"subject": ("subject", SUBJECT_MAX), "preheader": ("preheader", PREHEADER_MAX)}


class FormError(PermanentError):
    """What is wrong with a posted edit form, said for the editor (``message``)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """An article on the form: in the edition, or out of it by the editor's hand."""

    id: str
    title: str
    section: str
    excluded: bool
    pinned: bool


@dataclass(frozen=True, slots=True)
class Place:
    """A section of the digest and its position (1-based) in the edition."""

    key: str
    title: str
    position: int


@dataclass(frozen=True, slots=True)
class EditForm:
    """What the form shows: the edition's texts, the templates they come from, whether the
    editor set them (``own``: the ones that are the digest's), its articles and sections."""

    subject: str
    preheader: str
    intro: str
    templates: dict[str, str]
    own: frozenset[str]
    choices: tuple[Choice, ...]
    places: tuple[Place, ...]


def edit_form(settings: Settings, store: Store, edition: Edition) -> EditForm:
    overrides = store.overrides(edition.id)
    digest = settings.digests.get(edition.digest)
    return EditForm(
        subject=edition.subject,
        preheader=edition.preheader,
        intro=overrides.intro,
        templates={"subject": digest.subject, "preheader": digest.preheader} if digest else {},
        own=frozenset(k for k in LINES if not getattr(overrides, k)),
        choices=tuple(choices(store, edition, overrides)),
        places=tuple(places(settings, edition, overrides)),
    )


def choices(store: Store, edition: Edition, overrides: Overrides) -> list[Choice]:
    """The edition's articles, then those the editor left out or pinned that it does not show,
    each with its title."""
    pins = set(overrides.pinned)
    out = [
        Choice(t.article_id, t.title, t.section, False, t.article_id in pins)
        for t in edition.teasers
    ]
    shown = {c.id for c in out}
    gone = [i for i in dict.fromkeys([*overrides.excluded, *overrides.pinned]) if i not in shown]
    articles = store.articles_by_id(gone)
    for i in gone:
        article = articles.get(i)
        title, source = (article.title, article.source) if article else (i, "")
        out.append(Choice(i, title, source, i in overrides.excluded, i in pins))
    return out


def places(settings: Settings, edition: Edition, overrides: Overrides) -> list[Place]:
    """The digest's sections in the edition's order (the editor's, then as configured)."""
    digest = settings.digests.get(edition.digest)
    if digest is None:
        return []
    order = section_order(digest.sections, overrides.section_order)
    return [Place(k, settings.sections[k].title, n) for n, k in enumerate(order, 1)]


def asked(settings: Settings, store: Store, edition: Edition, fields: FormData) -> dict[str, Any]:
    """The changes a post of the form asks, as keyword arguments of ``edit_changes``; raises
    :class:`FormError` saying what is wrong."""
    form = edit_form(settings, store, edition)
    out: dict[str, Any] = {}
    defaults = set(form_texts(fields, "default"))
    for name, (label, longest) in LINES.items():
        if name in defaults:
            out[name] = ""  # the digest's template again
        elif name in fields:
            text = " ".join(form_text(fields, name).split())
            current = getattr(form, name)
            if not text and current:
                raise FormError(
                    f"The {label} is empty: write one, or tick “the digest’s own” to go back "
                    f"to its template ({form.templates.get(name, '')})."
                )
            if len(text) > longest:
                raise FormError(f"The {label} is longer than {longest} characters.")
            if text != current:
                out[name] = text
    if "intro" in fields:
        intro = form_text(fields, "intro").replace("\r\n", "\n").strip()
        if len(intro) > MAX_INTRO:
            raise FormError(f"The intro is longer than {MAX_INTRO} characters.")
        out["intro"] = intro
    out.update(_articles(settings, store, edition, form, fields))
    digest = settings.digests.get(edition.digest)
    order = _order(form.places, digest.sections if digest else [], fields)
    if order is not None:
        out["section_order"] = order
    return out


def _articles(
    settings: Settings, store: Store, edition: Edition, form: EditForm, fields: FormData
) -> dict[str, list[str]]:
    """Pins and exclusions from the boxes (only of articles the form showed) and the "pin
    another article" field (an id, or a unique prefix of 6+ characters)."""
    titles = {c.id: c.title for c in form.choices}
    pins = [i for i in dict.fromkeys(form_texts(fields, "pin")) if i in titles]
    drops = {i for i in form_texts(fields, "exclude") if i in titles}
    ref = form_text(fields, "pin_ref").strip()
    if ref:
        if len(ref) > MAX_REF:
            raise FormError(f"“{ref[:40]}…” is no article id: ids are shorter.")
        try:
            found = resolve_article(store, edition.digest, settings, ref)
        except DigestError as e:
            raise FormError(f"Pin another article: {e.message}.") from None
        pins += [found] if found not in pins else []
        titles.setdefault(found, found)
    both = [i for i in pins if i in drops]
    if both:
        raise FormError(f"“{titles[both[0]]}” ({both[0]}) is both pinned and left out: choose one.")
    return {
        "pin": [i for i in pins if not any(c.id == i and c.pinned for c in form.choices)],
        "unpin": [c.id for c in form.choices if c.pinned and c.id not in pins],
        "exclude": [c.id for c in form.choices if c.id in drops and not c.excluded],
        "include": [c.id for c in form.choices if c.excluded and c.id not in drops],
    }


def _order(shown: tuple[Place, ...], configured: list[str], fields: FormData) -> list[str] | None:
    """The sections' order the positions ask for: None when none was posted or the order
    stays, ``[]`` when it is the digest's own. A section moved to a taken position goes before
    the one there when it moved up, after it when it moved down."""
    if not shown or not any(f"position.{p.key}" in fields for p in shown):
        return None
    wanted: dict[str, int] = {}
    for p in shown:
        raw = form_text(fields, f"position.{p.key}").strip() or str(p.position)
        if not raw.isdigit() or not 1 <= int(raw) <= len(shown):
            raise FormError(
                f"The position of section “{p.title}” must be a whole number from 1 to "
                f"{len(shown)}."
            )
        wanted[p.key] = int(raw)

    def rank(p: Place) -> tuple[int, int, int]:
        n = wanted[p.key]
        moved = 0 if n < p.position else (2 if n > p.position else 1)
        return n, moved, p.position

    order = [p.key for p in sorted(shown, key=rank)]
    if order == [p.key for p in shown]:
        return None
    return [] if order == list(configured) else order
