"""The ``digest`` command. Prefect is imported only inside the commands that run flows, so
``digest --help`` and ``digest config check`` stay fast.

User errors (a bad config, a bad argument) exit with code 2 and a message naming the file and
key; failures of the outside world exit with 1 and say whether a retry helps.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from digest.config import Settings, json_schema, load_settings, reference_markdown
from digest.errors import ConfigError, DigestError
from digest.models import SubscriberStatus

if TYPE_CHECKING:
    from digest.store import Store

app = typer.Typer(
    help="Gather a publication's feeds, compose digest editions, render and deliver them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Check and describe the configuration.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Manage subscribers.", no_args_is_help=True)
edition_app = typer.Typer(
    help="Look at and change the current edition before it goes out.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(edition_app, name="edition")

out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="DIGEST_CONFIG",
        help="The publication's TOML file.",
        dir_okay=False,
    ),
]
DigestOpt = Annotated[
    str | None, typer.Option("--digest", "-d", help="Digest key; optional with one digest.")
]
NowOpt = Annotated[
    str | None,
    typer.Option(
        "--now", help="A fixed clock, ISO 8601 (e.g. 2026-11-30T12:00:00Z); UTC if naive."
    ),
]
DEFAULT_CONFIG = Path("config/example.toml")


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _settings(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as e:
        raise _fail(str(e), 2) from None


def _digest_key(settings: Settings, key: str | None, path: Path) -> str:
    if key is None:
        if len(settings.digests) == 1:
            return next(iter(settings.digests))
        raise _fail(
            f"{path}: several digests ({', '.join(settings.digests)}); choose one with --digest", 2
        )
    if key not in settings.digests:
        raise _fail(f"{path}: no digest {key!r} (digests: {', '.join(settings.digests)})", 2)
    return key


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    """The store for one command; a failure of the outside world exits 1 with its message."""
    from digest.factory import open_store

    try:
        store = open_store(settings)
    except DigestError as e:
        raise _fail(str(e), 1) from None
    try:
        yield store
    except DigestError as e:
        raise _fail(str(e), 1) from None
    finally:
        store.close()


def _now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"--now: {value!r} is not an ISO 8601 date and time", 2) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _quiet_prefect() -> None:
    # No telemetry from a command-line run unless the operator asks for it.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _print_summary(s: dict[str, Any]) -> None:
    if s.get("sections"):
        table = Table(title="Gathered", title_justify="left")
        for col in ("section", "articles", "new", "failed sources"):
            table.add_column(col)
        for sec in s["sections"]:
            table.add_row(
                sec["section"],
                str(sec["articles"]),
                str(sec["new"]),
                "; ".join(sec["failed"]) or "-",
            )
        out.print(table)
    if s.get("edition_id") is None:
        out.print(f"No edition: {s.get('message', '')}")
        return
    dry = " (dry run: nothing recorded, nothing sent)" if s.get("dry_run") else ""
    out.print(f"Edition      {s['edition_id']}  [{s.get('edition_status', '')}]{dry}")
    out.print(f"Items        {s['items']}")
    out.print(
        f"Recipients   {s['recipients']}  (skipped, no news in their sections: {s['skipped']})"
    )
    out.print(f"Submitted    {s['submitted']} in all, {s['submitted_now']} this run")
    exhausted = s.get("exhausted", 0)
    out.print(
        f"Failed       {s['transient'] + s['permanent'] + exhausted} "
        f"(transient {s['transient']}, permanent {s['permanent']}, out of attempts {exhausted})"
    )
    if s.get("suppressed"):
        out.print(f"Suppressed   {s['suppressed']} address(es) after a hard bounce")
    if s.get("elapsed"):
        rate = s["submitted_now"] / s["elapsed"] if s["elapsed"] else 0
        out.print(f"Elapsed      {s['elapsed']:.2f} s sending ({rate:.0f} messages/s)")
    for f in s.get("failures", [])[:10]:
        out.print(f"  failed: {f}")
    if s.get("preview"):
        out.print(f"Preview      {s['preview']}")


@app.command()
def run(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Gather and compose; record and send nothing.")
    ] = False,
) -> None:
    """The main job: gather, compose, render and deliver the current edition."""
    settings = _settings(config)
    key = _digest_key(settings, digest, config)
    when = _now(now)
    _quiet_prefect()
    from flows.pipeline import run_flow

    try:
        summary = run_flow(str(config), key, when, dry_run)
    except DigestError as e:
        raise _fail(str(e), 1) from None
    _print_summary(summary)
    # Transient failures need another run; permanent ones (bounces) are reported, not retried.
    if summary.get("transient"):
        out.print("Transient failures remain: run again to retry them once they are due.")
        raise typer.Exit(1)
    if summary.get("exhausted"):
        out.print("Some messages ran out of attempts: `digest edition retry` queues them again.")
        raise typer.Exit(1)


@app.command()
def gather(
    config: ConfigOpt = DEFAULT_CONFIG,
    section: Annotated[
        list[str] | None, typer.Option("--section", "-s", help="Only these sections.")
    ] = None,
    now: NowOpt = None,
) -> None:
    """Fetch the sources of every (or the named) section and store new articles."""
    settings = _settings(config)
    keys = section or list(settings.sections)
    unknown = [k for k in keys if k not in settings.sections]
    if unknown:
        raise _fail(f"{config}: no section {', '.join(map(repr, unknown))}", 2)
    _quiet_prefect()
    from flows.pipeline import gather_section_flow

    failed = False
    for key in keys:
        result = gather_section_flow(str(config), key, _now(now))
        out.print(f"{key}: {result['articles']} articles, {result['new']} new")
        for f in result["failed"]:
            failed = True
            out.print(f"  failed: {f}")
    if failed:
        raise typer.Exit(1)


@app.command()
def preview(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the files.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
) -> None:
    """Render the next edition from stored articles to index.html, digest.txt and sample.eml.
    Records nothing."""
    from digest.steps.preview import preview_next

    settings = _settings(config)
    key = _digest_key(settings, digest, config)
    when = _now(now) or datetime.now(UTC)
    with _store(settings) as store:
        done = preview_next(settings, store, key, out_dir, now=when)
    outcome, edition = done.outcome, done.outcome.edition
    if edition is None:
        out.print(f"Nothing to preview: {outcome.message}")
        if done.store_empty:
            out.print("The store has no articles yet: run `digest gather` first.")
        return
    out.print(
        f"Edition {edition.id} ({outcome.status}): {len(edition.teasers)} items, "
        f"HTML {len(done.html.encode()) / 1000:.1f} KB"
    )
    out.print(f"Subject: {edition.subject}")
    out.print(f"Wrote {out_dir / 'index.html'}, digest.txt and sample.eml")


@app.command()
def web(
    config: ConfigOpt = DEFAULT_CONFIG,
    host: Annotated[str | None, typer.Option(help="Address to listen on (web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (web.port).")] = None,
) -> None:
    """Run the web app: unsubscribe and preference pages, sign-up with double opt-in, and the
    providers' bounce and complaint webhooks. Put it behind HTTPS at `web.base_url`."""
    from digest.web.app import serve as serve_web

    settings = _settings(config)
    approver = None
    if os.environ.get("PREFECT_API_URL"):
        # Editors' decisions resume the edition run paused for them (flows/approval.py).
        from digest.web.editor import NoRunWaiting
        from flows.approval import ApprovalInput, NoPausedRun, resume_edition

        def approver(edition_id: str, decision: dict[str, Any]) -> str:
            try:
                return resume_edition(edition_id, ApprovalInput(**decision))
            except NoPausedRun as e:
                raise NoRunWaiting(str(e)) from None

    try:
        serve_web(
            settings,
            host=host or settings.web.host,
            port=port or settings.web.port,
            approver=approver,
        )
    except DigestError as e:
        raise _fail(str(e), 2) from None


@app.command()
def serve(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Serve the gather and edition deployments on the schedules from the config."""
    settings = _settings(config)
    from flows.deployments import serve_config

    if settings.alerts.webhook_url:
        out.print("Alerts: failed or crashed runs call the webhook in [alerts] webhook_url.")
    serve_config(settings, str(config))


@app.command()
def sources(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Each source's health: last success, failures in a row, last error."""
    settings = _settings(config)
    with _store(settings) as store:
        states = {s.key: s for s in store.source_states()}
    table = Table(title="Sources", title_justify="left")
    for col in ("source", "sections", "last success", "failures", "last error"):
        table.add_column(col, overflow="fold")
    unhealthy = False
    for key in settings.sources:
        state = states.get(key)
        sections = ", ".join(k for k, sec in settings.sections.items() if key in sec.sources)
        if state is None:
            table.add_row(key, sections, "never fetched", "-", "-")
            continue
        unhealthy |= state.consecutive_failures > 0
        when = f"{state.last_success_at:%Y-%m-%d %H:%M} UTC" if state.last_success_at else "never"
        error = state.last_error or "-"
        if state.last_error and state.last_error_at:
            error = f"{state.last_error_at:%Y-%m-%d %H:%M} UTC: {state.last_error}"
        table.add_row(key, sections, when, str(state.consecutive_failures), error)
    out.print(table)
    if unhealthy:
        raise typer.Exit(1)


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes} min {secs:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def _print_flow_runs(limit: int) -> None:
    """The last runs of this project's flows on the Prefect server at PREFECT_API_URL."""
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        out.print("Flow runs: not shown (PREFECT_API_URL is not set).")
        return
    _quiet_prefect()
    from flows.monitoring import recent_runs

    try:
        runs = recent_runs(url, limit)
    except Exception as e:  # an unreachable server is a note, not a failure of the command
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        out.print(f"Flow runs: the Prefect API at {url} did not answer ({reason}).", soft_wrap=True)
        return
    if not runs:
        out.print(f"Flow runs: none yet on {url}.", soft_wrap=True)
        return
    out.print(f"Flow runs ({url})", soft_wrap=True)
    for r in runs:
        out.print(
            f"  {_when_text(r.started)}  {r.name}  [{r.state}]  {_duration_text(r.seconds)}"
            f"  ({r.flow})",
            soft_wrap=True,
        )


@app.command()
def status(
    config: ConfigOpt = DEFAULT_CONFIG,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="How many editions and flow runs.")
    ] = 5,
) -> None:
    """What operators watch: the last editions with their delivery counts, each source's
    health, and (with PREFECT_API_URL set) the last flow runs with state and duration."""
    settings = _settings(config)
    with _store(settings) as store:
        editions = store.last_editions(limit)
        counts = {e["id"]: store.delivery_counts(e["id"]) for e in editions}
        states = {s.key: s for s in store.source_states()}
    out.print("Editions" if editions else "Editions: none yet.")
    for e in editions:
        c = counts[e["id"]]
        # Recipients: every ledger row meant to be sent (all but the skipped ones).
        meant = c["pending"] + c["sending"] + c["submitted"] + c["failed"]
        out.print(
            f"  {e['id']}  [{e['status']}]  {_when_text(e['created_at'])}: {meant} recipients, "
            f"{c['submitted']} submitted, {c['failed']} failed, "
            f"{c['pending'] + c['sending']} pending",
            soft_wrap=True,
        )
    out.print("Sources")
    for key in settings.sources:
        state = states.get(key)
        if state is None:
            line = "never fetched"
        elif state.consecutive_failures:
            line = (
                f"FAILING ({state.consecutive_failures} in a row) since "
                f"{_when_text(state.last_error_at)}: {state.last_error}"
            )
        else:
            line = f"ok, last success {_when_text(state.last_success_at)}"
        out.print(f"  {key}: {line}", soft_wrap=True)
    _print_flow_runs(limit)


StatusOpt = Annotated[
    list[SubscriberStatus] | None,
    typer.Option("--status", "-s", help="Only subscribers in this status (repeatable)."),
]


def _keys_text(keys: frozenset[str] | None) -> str:
    return "all" if keys is None else ", ".join(sorted(keys)) or "none"


def _when_text(value: datetime | None) -> str:
    return "-" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _subscriber_times(
    store: Store, ids: list[int] | None = None
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """When each subscriber (or those of ``ids``) was added and last changed."""
    return store.subscriber_times(ids)


def _lookup_address(email: str) -> str:
    """The address as the store keeps it, when it is a valid one; else as typed."""
    from digest.audience.csv_import import InvalidSubscriber, normalise_email

    try:
        return normalise_email(email)
    except InvalidSubscriber:
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
    never re-subscribes anyone, only double opt-in does. Bad rows are reported with their line
    and the others imported; the exit code is then 1."""
    from digest.audience.csv_import import read_subscribers_csv

    settings = _settings(config)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"{file}: cannot read: {e}", 2) from None
    rows = read_subscribers_csv(
        text, known_sections=settings.sections, known_digests=settings.digests
    )
    for p in rows.problems:
        err.print(f"{file}:{p.line}: {p.message}", markup=False, soft_wrap=True)
    for s in rows.skipped:
        out.print(f"{file}:{s.line}: skipped: {s.message}", soft_wrap=True)
    with _store(settings) as store:
        counts = store.import_subscribers(
            rows.people, now=datetime.now(UTC), source=f"import:{file.name}"
        )
    unchanged = len(rows.people) - counts.added - counts.updated - counts.kept_unsubscribed
    summary = (
        f"{counts.added} added, {counts.updated} updated, {unchanged} unchanged, "
        f"{counts.kept_unsubscribed} kept as they were (not active: not re-subscribed)"
    )
    if rows.skipped:
        summary += f", {len(rows.skipped)} skipped (not active in the file)"
    out.print(f"{summary}, {len(rows.problems)} rejected", soft_wrap=True)
    if rows.problems:
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
    digests separated by ';', empty: all; times in UTC). `import` reads it back, taking only the
    active rows. The file holds personal data: it is created readable by its owner only."""
    from digest.audience.csv_import import export_csv

    settings = _settings(config)
    with _store(settings) as store:
        people = store.subscribers(status or None)
        text = export_csv(people, _subscriber_times(store))
    if out_file is None:
        sys.stdout.write(text)
        return
    try:
        fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise _fail(f"{out_file}: cannot write: {e}", 2) from None
    out.print(f"Wrote {len(people)} subscriber(s) to {out_file}")


@subscribers_app.command("list")
def subscribers_list(config: ConfigOpt = DEFAULT_CONFIG, status: StatusOpt = None) -> None:
    """Subscribers with their status, choices and source; a count per status at the end."""
    from collections import Counter

    settings = _settings(config)
    with _store(settings) as store:
        people = store.subscribers(status or None)
    table = Table(title="Subscribers", title_justify="left")
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
    if people:
        out.print(table)
    counts = Counter(p.status for p in people)
    per_status = ", ".join(f"{counts[s]} {s.value}" for s in SubscriberStatus if counts[s])
    out.print(f"{len(people)} subscriber(s)" + (f": {per_status}" if per_status else ""))


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

    settings = _settings(config)
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
        raise _fail(str(e), 2) from None
    with _store(settings) as store:
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

    settings = _settings(config)
    address = _lookup_address(email)
    cause = "removed by an operator" + (f": {reason.strip()}" if reason.strip() else "")
    with _store(settings) as store:
        person = store.subscriber_by_email(address)
        if person is None:
            raise _fail(f"no subscriber with the address {address!r}", 1)
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
    settings = _settings(config)
    address = _lookup_address(email)
    with _store(settings) as store:
        person = store.subscriber_by_email(address)
        if person is None:
            raise _fail(f"no subscriber with the address {address!r}", 1)
        events = store.subscriber_events(person.id)
        created, updated = _subscriber_times(store, [person.id]).get(person.id, (None, None))
    for label, value in (
        ("Subscriber", f"{person.id}  {person.email}"),
        ("Name", person.name or "-"),
        ("Status", person.status.value),
        ("Sections", _keys_text(person.sections)),
        ("Digests", _keys_text(person.digests)),
        ("Source", person.source or "-"),
        ("Added", _when_text(created)),
        ("Changed", _when_text(updated)),
    ):
        out.print(f"{label:<11}{value}", soft_wrap=True)
    out.print("History")
    if not events:
        out.print("  (no recorded changes)")
    for e in events:
        old = e["old_status"] or "(new)"
        out.print(
            f"  {_when_text(e['at'])}  {old} → {e['new_status']}  {e['cause']}", soft_wrap=True
        )


def _show_edition(edition: Any, overrides: Any) -> None:
    out.print(f"Edition    {edition.id}  [{edition.status.value}]")
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

    settings = _settings(config)
    key = _digest_key(settings, digest, config)
    with _store(settings) as store:
        # Looking records nothing: the draft is composed as it would be, not stored.
        when = _now(now) or datetime.now(UTC)
        outcome = compose(settings, store, key, now=when, record=False)
        if outcome.edition is None:
            out.print(f"No edition: {outcome.message}")
            return
        _show_edition(outcome.edition, store.overrides(outcome.edition.id))


@edition_app.command("retry")
def edition_retry(
    config: ConfigOpt = DEFAULT_CONFIG,
    digest: DigestOpt = None,
    now: NowOpt = None,
) -> None:
    """Queue again the current edition's messages that ran out of attempts; the next
    `digest run` sends them (nobody who already got the edition gets it twice)."""
    from digest.steps.compose import retry_exhausted

    settings = _settings(config)
    key = _digest_key(settings, digest, config)
    when = _now(now) or datetime.now(UTC)
    with _store(settings) as store:
        done = retry_exhausted(settings, store, key, now=when)
    if done.edition is None:
        raise _fail(f"No edition to retry: {done.message}", 1)
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

    settings = _settings(config)
    key = _digest_key(settings, digest, config)
    when = _now(now) or datetime.now(UTC)
    if intro is not None and intro_file is not None:
        raise _fail("give --intro or --intro-file, not both", 2)
    if intro_file is not None:
        try:
            intro = intro_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"{intro_file}: cannot read: {e}", 2) from None
    order = None
    if section_order is not None:
        order = [k.strip() for k in section_order.split(",") if k.strip()]
    with _store(settings) as store:
        current = compose(settings, store, key, now=when)
        if current.edition is None:
            raise _fail(f"No edition to edit: {current.message}", 1)
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
            raise _fail("nothing to change: give at least one option (see --help)", 2)
        outcome = edit_edition(settings, store, key, changes, now=when)
        assert outcome.edition is not None
        _show_edition(outcome.edition, store.overrides(outcome.edition.id))


@config_app.command("check")
def config_check(
    file: Annotated[Path | None, typer.Argument(help="The TOML file (default: --config).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Validate a configuration file; print every problem with its key path."""
    path = file or config
    settings = _settings(path)
    out.print(
        f"{path}: OK — {len(settings.sources)} sources, {len(settings.sections)} sections, "
        f"{len(settings.digests)} digest(s), provider {settings.delivery.provider}"
    )


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the configuration."""
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@config_app.command("reference")
def config_reference() -> None:
    """Print the Markdown reference of every key (docs/configuration.md)."""
    sys.stdout.write(reference_markdown())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
