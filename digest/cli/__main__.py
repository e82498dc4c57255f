"""``python -m digest.cli``: the ``digest`` command."""

from digest.cli import main

main()
