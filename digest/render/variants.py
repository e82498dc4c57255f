"""Variants: an edition rendered for each set of sections its subscribers chose.

Each distinct set is compiled once (the full edition always); a subscriber whose chosen
sections have no news this time gets no variant at all. Pure: rendering only.
"""

from __future__ import annotations

from collections.abc import Iterable

from digest.config import Settings
from digest.models import Edition, RenderedVariant
from digest.render.email import render_variant


def variant_key(edition: Edition, chosen: frozenset[str] | None) -> frozenset[str] | None:
    """The set of this edition's sections a subscriber who chose ``chosen`` gets; None means
    all of them, an empty set that none of their chosen sections has news this time."""
    if chosen is None:
        return None
    present = {s.key for s in edition.sections}
    chosen = frozenset(chosen & present)
    return None if chosen == present else chosen


Variants = dict[frozenset[str] | None, RenderedVariant]


def render_variants(
    settings: Settings, edition: Edition, choices: Iterable[frozenset[str] | None]
) -> Variants:
    """Compile each distinct variant once (the full edition always); empty ones are skipped.

    ``choices`` are the subscribers' chosen sections (None: every section), repeats welcome.
    """
    keys: set[frozenset[str] | None] = {variant_key(edition, c) for c in choices}
    keys.add(None)
    return {k: render_variant(edition, settings, sections=k) for k in keys if k is None or k}


def variant_for(
    settings: Settings, edition: Edition, variants: Variants, key: frozenset[str] | None
) -> RenderedVariant:
    """The compiled variant ``key``, compiling it now if the audience changed since."""
    if key not in variants:
        variants[key] = render_variant(edition, settings, sections=key)
    return variants[key]
