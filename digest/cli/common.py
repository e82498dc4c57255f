"""What every command shares: the ``digest`` app and its command groups, the consoles, the
common options, and reading them (settings, digest key, clock, store).

User errors (a bad config, a bad argument) exit with code 2 and a message naming the file and
key; failures of the outside world exit with 1 and say whether a retry helps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup, TyperOption

from digest.config import Settings, load_settings
from digest.errors import ConfigError, DigestError, StoreUnusable

if TYPE_CHECKING:
    from digest.store import Store


class _FlagsWithoutType:
    """Help without a ``<bool>`` type beside each flag: a flag takes no value, so Typer's type
    column (``<str>``, ``<file>``) has nothing to say about it."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    pass


class _Group(_FlagsWithoutType, TyperGroup):
    pass


class _Typer(typer.Typer):
    """The ``digest`` app and its groups: commands and groups whose flags show no type."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    help="Gather a publication's feeds, compose digest editions, render and deliver them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = _Typer(help="Check and describe the configuration.", no_args_is_help=True)
subscribers_app = _Typer(help="Manage subscribers.", no_args_is_help=True)
edition_app = _Typer(
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


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def settings_from(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as e:
        raise fail(str(e), 2) from None


def digest_key(settings: Settings, key: str | None, path: Path) -> str:
    if key is None:
        if len(settings.digests) == 1:
            return next(iter(settings.digests))
        raise fail(
            f"{path}: several digests ({', '.join(settings.digests)}); choose one with --digest", 2
        )
    if key not in settings.digests:
        raise fail(f"{path}: no digest {key!r} (digests: {', '.join(settings.digests)})", 2)
    return key


@contextmanager
def store_for(settings: Settings) -> Iterator[Store]:
    """The store for one command; a store the settings put where none can be (a data_dir
    that cannot be made, a file that is not a database) exits 2, a failure of the outside
    world 1, each with its message."""
    from digest.factory import open_store

    try:
        store = open_store(settings)
    except StoreUnusable as e:
        raise fail(str(e), 2) from None
    except DigestError as e:
        raise fail(str(e), 1) from None
    try:
        yield store
    except DigestError as e:
        raise fail(str(e), 1) from None
    finally:
        store.close()


def check_store(settings: Settings) -> None:
    """Open (and migrate) the store once before flows start, so that a store that cannot be
    opened is one line and its exit code (``store_for``), not a failed flow run."""
    with store_for(settings):
        pass


def parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--now: {value!r} is not an ISO 8601 date and time", 2) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def quiet_prefect() -> None:
    # No telemetry from a command-line run unless the operator asks for it.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


STARTING_SERVER = (
    "Starting a temporary Prefect server (it takes some seconds)… set PREFECT_API_URL to use yours."
)


@contextmanager
def flows_api() -> Iterator[None]:
    """Around a command that runs flows: no telemetry unless asked, and a Prefect API. Without
    PREFECT_API_URL that is a temporary server which dies with this command, even a killed one
    (flows/temporary_api.py), announced on stderr; one that cannot start exits 1 with why.
    Meanwhile the steps' progress shows on stderr when it is a terminal."""
    quiet_prefect()
    from flows.temporary_api import ApiServerError, temporary_api

    try:
        with (
            temporary_api(starting=lambda: err.print(STARTING_SERVER, soft_wrap=True)),
            progress_bars(),
        ):
            yield
    except ApiServerError as e:
        raise fail(str(e), 1) from None


@contextmanager
def progress_bars() -> Iterator[None]:
    """A progress bar on stderr per long step running in this process (a section's gather, a
    delivery or an import with its rate), only when stderr is a terminal: nothing in logs, CI
    or tests."""
    if not err.is_terminal:
        yield
        return
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from digest.steps.progress import Progress as Step
    from digest.steps.progress import listening

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        console=err,
        transient=True,
    )
    tasks: dict[str, tuple[Any, float]] = {}

    def show(e: Step) -> None:
        if e.task not in tasks:
            tasks[e.task] = (bars.add_task(e.task, total=e.total, extra=""), time.monotonic())
        task, started = tasks[e.task]
        extra = [e.note] if e.note else []
        if e.task.startswith(("deliver", "import")):
            seconds = time.monotonic() - started
            extra.append(f"{e.done / seconds:.0f}/s" if seconds > 0 else "")
        if e.failed:
            extra.append(f"{e.failed} failed")
        bars.update(task, completed=e.done, total=e.total, extra=", ".join(x for x in extra if x))

    with bars, listening(show):
        yield


def when_text(value: datetime | None) -> str:
    return "-" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
