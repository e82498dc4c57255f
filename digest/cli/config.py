"""``digest config``: check a configuration file and describe every key."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from digest.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    config_app,
    out,
    settings_from,
)
from digest.config import json_schema, reference_markdown


@config_app.command("check")
def config_check(
    file: Annotated[Path | None, typer.Argument(help="The TOML file (default: --config).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Validate a configuration file; print every problem with its key path."""
    path = file or config
    settings = settings_from(path)
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
