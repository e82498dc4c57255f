"""``digest edition``: look at the current edition, change it before it goes out, and queue again
its messages that ran out of attempts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    DigestOpt,
    NowOpt,
    digest_key,
    edition_app,
    fail,
    out,
    parse_now,
    settings_from,
    store_for,
    when_text,
)
from digest.models import edition_state


def _show_edition(edition: Any, overrides: Any) -> None:
    out.print(f"Edition    {edition.id}  [{edition_state(edition.status)}]")
    out.print(f"Subject    {edition.subject}")
    out.print(f"Preheader  {edition.preheader}")
    if edition.intro:
        out.print("Intro")
        for line in edition.intro.splitlines():
            out.print(f"  {line}")
    for section in edition.sections:
        out.print(f"\n{section.title} ({section.key})")
        for t in section.teasers:
            mark = "pinned " if t.pinned else ("card   " if t.full else "link   ")
            out.print(f"  {mark}{t.article_id}  {t.title}")
    if overrides.excluded:
        out.print(f"\nExcluded   {', '.join(overrides.excluded)}")
    if overrides.section_order:
        out.print(f"Order      {', '.join(overrides.section_order)}")


@edition_app.command("show")
def edition_show(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
) -> None:
    """Show the current period's edition as it stands (or would be composed now)."""
    from digest.steps.compose import compose

    settings = settings_from(config)
    key = digest_key(settings, digest, config)
    with store_for(settings) as store:
        # Looking records nothing: the draft is composed as it would be, not stored.
        when = parse_now(now) or datetime.now(UTC)
        outcome = compose(settings, store, key, now=when, record=False)
        if outcome.edition is None:
            out.print(f"No edition: {outcome.message}")
            return
        _show_edition(outcome.edition, store.overrides(outcome.edition.id))


@edition_app.command("list")
def edition_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: Annotated[
        str | None, typer.Option("--digest", "-d", help="Only this digest's editions.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many editions.")] = 20,
) -> None:
    """The last editions, newest first, with their state and when each was made and sent."""
    settings = settings_from(config)
    if digest is not None and digest not in settings.digests:
        known = ", ".join(sorted(settings.digests)) or "none"
        raise fail(f"no digest {digest!r} in {config} (configured: {known})", 2)
    with store_for(settings) as store:
        rows = store.last_editions(limit, digest=digest)
    if not rows:
        out.print("No editions yet.")
        return
    for e in rows:
        sent = f", sent {when_text(e['sent_at'])}" if e["sent_at"] else ""
        out.print(
            f"{e['id']}  [{edition_state(e['status'])}]  made {when_text(e['created_at'])}{sent}",
            soft_wrap=True,
        )


@edition_app.command("retry")
def edition_retry(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
) -> None:
    """Queue again the current edition's messages that ran out of attempts; the next
    `digest run` sends them (nobody who already got the edition gets it twice)."""
    from digest.steps.compose import retry_exhausted

    settings = settings_from(config)
    key = digest_key(settings, digest, config)
    when = parse_now(now) or datetime.now(UTC)
    with store_for(settings) as store:
        done = retry_exhausted(settings, store, key, now=when)
    if done.edition is None:
        raise fail(f"No edition to retry: {done.message}", 1)
    out.print(f"Edition {done.edition.id}: {done.queued} message(s) queued again.")


@edition_app.command("edit")
def edition_edit(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
    intro: Annotated[str | None, typer.Option(help="Intro note, Markdown ('' clears).")] = None,
    intro_file: Annotated[
        Path | None, typer.Option(help="Read the intro note (Markdown) from a file.")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Subject ('' restores the template).")] = None,
    preheader: Annotated[str | None, typer.Option(help="Preheader ('' restores it).")] = None,
    pin: Annotated[list[str] | None, typer.Option(help="Article id (or prefix) to pin.")] = None,
    unpin: Annotated[list[str] | None, typer.Option(help="Article id to unpin.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Article id (or prefix) to leave out.")
    ] = None,
    include: Annotated[list[str] | None, typer.Option(help="Undo an exclusion.")] = None,
    section_order: Annotated[
        str | None, typer.Option(help="Section keys, comma-separated ('' restores).")
    ] = None,
) -> None:
    """Change the current edition: intro, subject, preheader, pins, exclusions, order."""
    from digest.steps.compose import compose, edit_changes, edit_edition

    settings = settings_from(config)
    key = digest_key(settings, digest, config)
    when = parse_now(now) or datetime.now(UTC)
    if intro is not None and intro_file is not None:
        raise fail("give --intro or --intro-file, not both", 2)
    if intro_file is not None:
        try:
            intro = intro_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise fail(f"{intro_file}: cannot read: {e}", 2) from None
    order = None
    if section_order is not None:
        order = [k.strip() for k in section_order.split(",") if k.strip()]
    with store_for(settings) as store:
        current = compose(settings, store, key, now=when)
        if current.edition is None:
            raise fail(f"No edition to edit: {current.message}", 1)
        changes = edit_changes(
            settings,
            store,
            current.edition,
            intro=intro,
            subject=subject,
            preheader=preheader,
            pin=pin or (),
            unpin=unpin or (),
            exclude=exclude or (),
            include=include or (),
            section_order=order,
        )
        if not changes:
            raise fail("nothing to change: give at least one option (see --help)", 2)
        outcome = edit_edition(settings, store, key, changes, now=when)
        assert outcome.edition is not None
        _show_edition(outcome.edition, store.overrides(outcome.edition.id))
