"""The one preview path: an edition as an editor previews it, its links pointing at a harmless
preview token instead of a subscriber's.

The web editor shows :func:`preview`; ``digest preview`` writes :func:`preview_next`'s files;
an edition run with the outbox provider leaves :func:`write_preview`'s beside the messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.audience.tokens import preferences_url, unsubscribe_url
from digest.config import Settings
from digest.models import Edition, RenderedVariant
from digest.render.email import render_variant
from digest.render.personalise import personalise
from digest.steps.compose import ComposeOutcome, compose
from digest.steps.messages import sample_message
from digest.store import Store


def preview_bodies(settings: Settings, variant: RenderedVariant) -> tuple[str, str]:
    """The variant as an editor previews it (HTML, text): links point at a harmless preview
    token."""
    return personalise(
        variant,
        unsubscribe_url=unsubscribe_url(settings, "preview"),
        preferences_url=preferences_url(settings, "preview"),
        name="",
    )


def preview(settings: Settings, edition: Edition) -> tuple[str, str]:
    """The full edition (every section) as an editor previews it: HTML and text."""
    return preview_bodies(settings, render_variant(edition, settings))


def write_preview(settings: Settings, edition: Edition, variant: RenderedVariant) -> Path | None:
    """With the outbox provider, put ``index.html`` and ``digest.txt`` beside the messages."""
    if settings.delivery.provider != "outbox":
        return None
    from digest.delivery.outbox import write_previews

    html, text = preview_bodies(settings, variant)
    return write_previews(settings.outbox_path, edition.id, html, text) / "index.html"


@dataclass(frozen=True)
class Previewed:
    """What :func:`preview_next` did: the composition's outcome, and with an edition the HTML
    written; without one, whether the store has no articles at all (nothing gathered yet)."""

    outcome: ComposeOutcome
    html: str = ""
    store_empty: bool = False


def preview_next(
    settings: Settings, store: Store, digest_key: str, folder: Path, *, now: datetime
) -> Previewed:
    """Compose the next edition from stored articles (recording nothing) and write its preview
    to ``folder``: ``index.html``, ``digest.txt`` and ``sample.eml`` (a sample reader's copy)."""
    outcome = compose(settings, store, digest_key, now=now, record=False)
    if outcome.edition is None:
        return Previewed(outcome, store_empty=store.count_articles() == 0)
    edition = outcome.edition
    variant = render_variant(edition, settings)
    html, text = preview_bodies(settings, variant)
    msg = sample_message(settings, edition, variant, now=now)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(html, encoding="utf-8")
    (folder / "digest.txt").write_text(text, encoding="utf-8")
    (folder / "sample.eml").write_bytes(msg.raw)
    return Previewed(outcome, html)
