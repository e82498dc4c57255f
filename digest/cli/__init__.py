"""The ``digest`` command, one module per command group; each command parses its input, calls
the steps (``digest.steps``) and prints what they return.

Prefect, the flows and the web app are imported only inside the commands that need them, so
``digest --help`` and ``digest config check`` stay fast. Importing the command modules
registers their commands on :data:`~digest.cli.common.app`; ``--help`` lists the top-level ones
in the order of their modules here (runs, serve, deploy, watch), then the groups.
"""

# Imported for their commands.
from digest.cli import config, edition, runs, serve  # noqa: F401

# isort: split
from digest.cli import deploy  # noqa: F401

# isort: split
from digest.cli import subscribers, watch  # noqa: F401
from digest.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
