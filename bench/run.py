"""Run every benchmark under bench/ (every .py here but this one and the shared ``support``),
each in its own process.

Each benchmark measures its own baseline in the same run and prints, as its last line, one JSON
object with the figures and the ratio. This runner prints those lines and fails if one fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = 0
    for path in sorted(p for p in HERE.glob("*.py") if p.name not in ("run.py", "support.py")):
        print(f"== {path.name}", flush=True)
        proc = subprocess.run([sys.executable, str(path)], cwd=HERE.parent)
        failed += proc.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
