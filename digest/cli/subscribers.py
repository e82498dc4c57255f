"""``digest subscribers``: import, export, list, add, remove and show subscribers."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    err,
    fail,
    out,
    progress_bars,
    settings_from,
    store_for,
    subscribers_app,
    when_text,
)
from digest.models import Subscriber, SubscriberStatus

StatusOpt = Annotated[
    list[SubscriberStatus] | None,
    typer.Option("--status", "-s", help="Only subscribers in this status (repeatable)."),
]


def _keys_text(keys: frozenset[str] | None) -> str:
    return "all" if keys is None else ", ".join(sorted(keys)) or "none"


def _lookup_address(email: str) -> str:
    """The address as the store keeps it, when it is a valid one; else as typed."""
    from digest.audience.addresses import InvalidAddress, normalise_email

    try:
        return normalise_email(email)
    except InvalidAddress:
        return email.strip()


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header naming email and, optionally, name, sections, digests "
            "(keys separated by ';'; empty: all).",
            dir_okay=False,
        ),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Add or update subscribers from a CSV; `export` writes one.

    New addresses are added as active. Running it again changes nothing. An address that is
    not active (unsubscribed, bounced, complained, paused, pending) stays as it is: an import
    never re-subscribes anyone, only double opt-in does. A row is one line with as many fields
    as the header; bad rows (a stray quote, a wrong number of fields, a bad address or name) are
    reported with their line and the others imported; the exit code is then 1."""
    from digest.steps.imports import KEEP, UnreadableList, import_subscribers_file

    settings = settings_from(config)
    with store_for(settings) as store, progress_bars():
        try:
            report = import_subscribers_file(
                store,
                file,
                known_sections=settings.sections,
                known_digests=settings.digests,
                now=datetime.now(UTC),
                source=f"import:{file.name}",
            )
        except (OSError, UnreadableList) as e:
            raise fail(f"{file}: cannot read: {e}", 2) from None
    for p in report.problems:
        # emoji=False: a line number of 100 is not Rich's ":100:" emoji.
        err.print(f"{file}:{p.line}: {p.message}", markup=False, emoji=False, soft_wrap=True)
    if report.rejected > len(report.problems):
        err.print(
            f"{file}: {report.rejected - len(report.problems)} more rejected line(s) not shown "
            f"(the first {KEEP} are)",
            markup=False,
            soft_wrap=True,
        )
    for s in report.skipped_rows:
        out.print(f"{file}:{s.line}: skipped: {s.message}", emoji=False, soft_wrap=True)
    if report.skipped > len(report.skipped_rows):
        out.print(
            f"{file}: {report.skipped - len(report.skipped_rows)} more skipped line(s) not shown",
            soft_wrap=True,
        )
    # Every data line is counted once: added, updated, unchanged, kept, skipped or rejected.
    summary = (
        f"{report.lines} data line(s): "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.kept} kept as they were (not active: not re-subscribed)"
    )
    if report.skipped:
        summary += f", {report.skipped} skipped (not active in the file)"
    out.print(f"{summary}, {report.rejected} rejected", soft_wrap=True)
    if report.rejected:
        raise typer.Exit(1)


@subscribers_app.command("export")
def subscribers_export(
    config: ConfigOpt = DEFAULT_CONFIG,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write to this file (default: stdout).", dir_okay=False),
    ] = None,
    status: StatusOpt = None,
) -> None:
    """Write subscribers as CSV, to stdout or a file.

    Columns: email,name,status,sections,digests,source,created_at,updated_at (sections and
    digests separated by ';', empty: all; times in UTC), one line per subscriber. A cell a
    spreadsheet would take for a formula (starting with =, +, -, @, tab or carriage return)
    gets a single quote in front (OWASP's advice); `import` reads it back as it was, taking
    only the active rows. The file holds personal data: it is created readable by its owner
    only."""
    from digest.audience.csv_import import export_lines

    settings = settings_from(config)
    with store_for(settings) as store:
        if out_file is None:
            sys.stdout.writelines(export_lines(store.export_subscribers(status or None)))
            return
        written = 0
        try:
            fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8", newline="") as f:
                for line in export_lines(store.export_subscribers(status or None)):
                    f.write(line)
                    written += 1
        except OSError as e:
            raise fail(f"{out_file}: cannot write: {e}", 2) from None
    out.print(f"Wrote {written - 1} subscriber(s) to {out_file}")


# Rows `list` reads and prints at a time: its memory is one page, however long the list.
LIST_PAGE = 500


def _subscriber_table(people: Sequence[Subscriber], *, title: str | None) -> Table:
    """One page of ``list`` as a table (the first with the title)."""
    table = Table(title=title, title_justify="left")
    # Addresses are what an operator scans for: kept whole where the width allows.
    widest = min(max((len(p.email) for p in people), default=5), 40)
    for col in ("id", "email", "name", "status", "sections", "digests", "source"):
        table.add_column(
            col,
            overflow="fold",
            no_wrap=col in ("id", "status"),
            min_width=widest if col == "email" else None,
        )
    for p in people:
        table.add_row(
            str(p.id),
            p.email,
            p.name or "-",
            p.status.value,
            _keys_text(p.sections),
            _keys_text(p.digests),
            p.source or "-",
        )
    return table


@subscribers_app.command("list")
def subscribers_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    status: StatusOpt = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Show at most this many subscribers."),
    ] = None,
    after: Annotated[
        int | None,
        typer.Option(
            "--after",
            min=0,
            help="Start after this id (the last one a previous page showed).",
        ),
    ] = None,
) -> None:
    """Subscribers with their status, choices and source, oldest first; a count per status at
    the end (of every subscriber in the statuses asked for, whatever --limit and --after).

    Read and printed 500 rows at a time: a long list starts at once, in little memory.
    Page through it with --limit and --after."""
    statuses = status or None
    shown, last, more = 0, 0, False
    settings = settings_from(config)
    with store_for(settings) as store:
        size = LIST_PAGE if limit is None else min(LIST_PAGE, limit)
        for people in store.subscriber_pages(statuses, size=size, after=after):
            people = people if limit is None else people[: limit - shown]
            out.print(_subscriber_table(people, title=None if shown else "Subscribers"))
            shown, last = shown + len(people), people[-1].id
            if limit is not None and shown >= limit:
                more = any(store.subscriber_pages(statuses, size=1, after=last))
                break
        counts = store.subscriber_counts(statuses)
    if more:
        out.print(f"Shown: {shown}, up to id {last}; the next ones: --after {last}")
    total = sum(counts.values())
    per_status = ", ".join(f"{counts[s]} {s.value}" for s in SubscriberStatus if counts.get(s))
    out.print(f"{total} subscriber(s)" + (f": {per_status}" if per_status else ""))


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    name: Annotated[str, typer.Option("--name", "-n", help="The person's name.")] = "",
    section: Annotated[
        list[str] | None,
        typer.Option("--section", "-s", help="A section they receive (repeatable; none: all)."),
    ] = None,
    digest: Annotated[
        list[str] | None,
        typer.Option("--digest", "-d", help="A digest they receive (repeatable; none: all)."),
    ] = None,
) -> None:
    """Add one subscriber, active at once: you vouch for their consent.

    The source is "operator" and no confirmation email is sent: add only people who asked for
    the digest. An address already known is shown with its status and not changed: an
    unsubscribed, bounced or complained one is never revived here; only double opt-in (the
    sign-up form) does that. Exit code 1 when the address is known but not active."""
    from digest.audience.csv_import import InvalidSubscriber, new_subscriber
    from digest.models import SUPPRESSED

    settings = settings_from(config)
    try:
        person = new_subscriber(
            email,
            name=name,
            sections=section,
            digests=digest,
            known_sections=settings.sections,
            known_digests=settings.digests,
        )
    except InvalidSubscriber as e:
        raise fail(str(e), 2) from None
    with store_for(settings) as store:
        found, added = store.add_subscriber(
            person,
            status=SubscriberStatus.ACTIVE,
            source="operator",
            now=datetime.now(UTC),
            cause="added by an operator",
        )
    if added:
        out.print(
            f"Added {found.email} (id {found.id}), active; sections {_keys_text(found.sections)}"
            f", digests {_keys_text(found.digests)}",
            soft_wrap=True,
        )
        return
    out.print(
        f"{found.email} is already a subscriber (id {found.id}, {found.status.value}); "
        "nothing changed.",
        soft_wrap=True,
    )
    if found.status is not SubscriberStatus.ACTIVE:
        why = "suppressed, " if found.status in SUPPRESSED else ""
        out.print(
            f"It is {why}not mailed, and an operator cannot re-subscribe it: only the person "
            "can, through double opt-in.",
            soft_wrap=True,
        )
        raise typer.Exit(1)


@subscribers_app.command("remove")
def subscribers_remove(
    email: Annotated[str, typer.Argument(help="The address.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why; kept in the audit trail.")
    ] = "",
) -> None:
    """Unsubscribe an address: no more digests.

    The change, with its reason, is recorded in the
    subscriber's audit trail (`digest subscribers show`); nothing about them is deleted. A
    bounced or complained address stays suppressed as it is."""
    from digest.models import SUPPRESSED

    settings = settings_from(config)
    address = _lookup_address(email)
    cause = "removed by an operator" + (f": {reason.strip()}" if reason.strip() else "")
    with store_for(settings) as store:
        person = store.subscriber_by_email(address)
        if person is None:
            raise fail(f"no subscriber with the address {address!r}", 1)
        if person.status in SUPPRESSED:
            out.print(
                f"{person.email} is {person.status.value} (suppressed: never mailed); "
                "left as it is.",
                soft_wrap=True,
            )
            return
        changed = store.set_subscriber_status(
            person.id,
            SubscriberStatus.UNSUBSCRIBED,
            now=datetime.now(UTC),
            cause=cause,
            only_from=person.status,
        )
    if not changed:
        out.print(f"{person.email} is already unsubscribed; nothing changed.", soft_wrap=True)
        return
    out.print(f"{person.email}: {person.status.value} → unsubscribed ({cause})", soft_wrap=True)


@subscribers_app.command("show")
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The address.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """One subscriber and the audit trail of their status: when, from what to what, why."""
    settings = settings_from(config)
    address = _lookup_address(email)
    with store_for(settings) as store:
        person = store.subscriber_by_email(address)
        if person is None:
            raise fail(f"no subscriber with the address {address!r}", 1)
        events = store.subscriber_events(person.id)
        created, updated = store.subscriber_times([person.id]).get(person.id, (None, None))
    for label, value in (
        ("Subscriber", f"{person.id}  {person.email}"),
        ("Name", person.name or "-"),
        ("Status", person.status.value),
        ("Sections", _keys_text(person.sections)),
        ("Digests", _keys_text(person.digests)),
        ("Source", person.source or "-"),
        ("Added", when_text(created)),
        ("Changed", when_text(updated)),
    ):
        out.print(f"{label:<11}{value}", soft_wrap=True)
    out.print("History")
    if not events:
        out.print("  (no recorded changes)")
    for e in events:
        old = e["old_status"] or "(new)"
        out.print(
            f"  {when_text(e['at'])}  {old} → {e['new_status']}  {e['cause']}", soft_wrap=True
        )
