"""`digest subscribers import` of N rows, on SQLite and on PostgreSQL, next to each database's
own bulk load of the same rows.

One generated list (``email,name,sections,digests``: a few domains, names with commas and
quotes, some section and digest choices, a handful of bad and duplicate lines), imported by the
command in a fresh store, as a subprocess: its rows/s (data lines over wall time, start to exit)
and its peak resident set (``VmHWM`` from ``/proc/<pid>/status``, sampled every 20 ms; not
``ru_maxrss``, which a child started by vfork inherits from this process). Then the same file
imported a second time (nothing changes: idempotence at size). With more than 100,000 rows, a
list of 100,000 is imported into a fresh store too, for its peak: the import's memory should
not depend on the list's length.

Baseline, in the same run, on a fresh migrated store of the same kind: the rows the import
wrote (the same columns, already normalised) loaded by the database's own bulk path, in one
transaction: ``COPY subscribers FROM STDIN`` on PostgreSQL, ``executemany`` of a plain
``INSERT`` on SQLite. Ratio: the import's rows/s over the baseline's.

PostgreSQL runs on the throwaway server the tests start (``tests/postgres.py``). Run:
``.venv/bin/python bench/import_rows.py`` (``--rows 50000`` for a short run, ``--stores sqlite``
for one store). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "config" / "example.toml"
SECTIONS = ("diplomacy-watch", "qiosk", "analysis")
DOMAINS = ("example.org", "Example.COM", "mail.example.net", "post.example.de", "ｅxample.io")
SMALL = 100_000
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def write_list(path: Path, rows: int) -> int:
    """The list; returns its data lines. Every 10,000th line is bad, every 10,000th (offset)
    lists an address again."""
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,sections,digests\n")
        for i in range(1, rows + 1):
            domain = DOMAINS[i % len(DOMAINS)]
            if i % 10_000 == 5_000:
                f.write(f'bad{i}@{domain},"Unclosed {i},,\n')
            elif i % 10_000 == 7_000:
                f.write(f"reader{i - 1}@{domain},Again,,\n")
            else:
                name = f'"Lima, Ana ""{i}"""' if i % 7 == 0 else f"Reader {i}"
                sections = ";".join(SECTIONS[: i % 4]) if i % 3 else ""
                digest = "weekly" if i % 5 == 0 else ""
                f.write(f"reader{i}@{domain},{name},{sections},{digest}\n")
    return rows


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_import(list_path: Path, env: dict[str, str]) -> dict[str, float]:
    """The import command as a subprocess: wall seconds, peak RSS (MB), exit code, output."""
    cmd = [sys.executable, "-m", "digest.cli", "subscribers", "import", str(list_path)]
    cmd += ["--config", str(CONFIG)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _hwm_kb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    summary = out.decode().strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode not in (0, 1) or "data line(s)" not in summary:
        sys.exit(f"import failed ({proc.returncode}): {err.decode()[-2000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mb": peak[0] / 1024,
        "summary": summary,  # type: ignore[dict-item]
    }


def staged_rows(list_path: Path) -> list[tuple[object, ...]]:
    """The rows the import writes, as the subscribers table holds them (for the baseline)."""
    from digest.audience.csv_import import CsvReader, CsvRow

    reader = CsvReader(known_sections=SECTIONS, known_digests=("weekly",))
    seen: set[str] = set()
    rows: list[tuple[object, ...]] = []
    with list_path.open(encoding="utf-8") as f:
        for r in reader.rows(f):
            if isinstance(r, CsvRow) and r.importable and r.key not in seen:
                seen.add(r.key)
                rows.append(
                    (
                        r.email,
                        r.key,
                        secrets.randbits(62) or 1,
                        r.name,
                        "active",
                        json.dumps(None if r.sections is None else sorted(r.sections)),
                        json.dumps(None if r.digests is None else sorted(r.digests)),
                        "import:list.csv",
                        NOW.replace(tzinfo=None),
                        NOW.replace(tzinfo=None),
                    )
                )
    return rows


COLUMNS = (
    "email, email_key, token_id, name, status, sections, digests, source, created_at, updated_at"
)


def baseline(url: str, rows: list[tuple[object, ...]]) -> float:
    """Seconds the database's own bulk load of ``rows`` takes, in one transaction."""
    from digest.store import Store

    store = Store.open(url)
    try:
        with store.engine.connect() as c:
            raw: Any = c.connection.driver_connection
            started = time.perf_counter()
            if c.dialect.name == "postgresql":
                with (
                    raw.cursor() as cur,
                    cur.copy(f"COPY subscribers ({COLUMNS}) FROM STDIN") as cp,
                ):
                    for row in rows:
                        cp.write_row(row)
            else:
                marks = ", ".join("?" * 10)
                raw.executemany(
                    f"INSERT INTO subscribers ({COLUMNS}) VALUES ({marks})",
                    [(*r[:8], str(r[8]), str(r[9])) for r in rows],
                )
            raw.commit()
            return time.perf_counter() - started
    finally:
        store.close()


@contextlib.contextmanager
def store_url(kind: str, folder: Path) -> Iterator[tuple[str, Callable[[str], str]]]:
    """Yields the store's name and a function making a fresh database URL of that kind."""
    if kind == "sqlite":
        yield "sqlite", lambda name: f"sqlite:///{folder / name}.db"
        return
    from tests import postgres

    with postgres.server() as base:
        yield "postgresql", lambda name: postgres.create_database(base, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    results: dict[str, object] = {"rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        list_path = folder / "list.csv"
        lines = write_list(list_path, args.rows)
        size_mb = list_path.stat().st_size / 1e6
        print(f"list: {lines} data lines, {size_mb:.0f} MB", file=sys.stderr)
        rows = staged_rows(list_path)
        small_path = None
        if args.rows > SMALL:
            small_path = folder / "small.csv"
            write_list(small_path, SMALL)
        for kind in args.stores.split(","):
            with store_url(kind, folder) as (name, make_url):
                url = make_url(f"ours_{uuid.uuid4().hex[:8]}")
                env = {
                    **os.environ,
                    "PYTHONPATH": str(ROOT),
                    "DIGEST__DATA_DIR": str(folder / f"data-{name}"),
                    "DIGEST__STORE__URL": url,
                }
                small = None
                if small_path is not None:
                    small_env = {
                        **env,
                        "DIGEST__STORE__URL": make_url(f"small_{uuid.uuid4().hex[:8]}"),
                    }
                    small = run_import(small_path, small_env)["peak_rss_mb"]
                first = run_import(list_path, env)
                again = run_import(list_path, env)
                base_seconds = baseline(make_url(f"base_{uuid.uuid4().hex[:8]}"), rows)
                ours = lines / first["seconds"]
                base = len(rows) / base_seconds
                results[name] = {
                    "import_rows_per_s": round(ours),
                    "import_seconds": round(first["seconds"], 1),
                    "import_peak_rss_mb": round(first["peak_rss_mb"], 1),
                    "import_peak_rss_mb_at_100000": small and round(small, 1),
                    "again_rows_per_s": round(lines / again["seconds"]),
                    "again_peak_rss_mb": round(again["peak_rss_mb"], 1),
                    "baseline": "COPY" if name == "postgresql" else "executemany INSERT",
                    "baseline_rows_per_s": round(base),
                    "ratio": round(ours / base, 3),
                }
                print(f"{name}: {first['summary']}", file=sys.stderr)
                print(f"{name} again: {again['summary']}", file=sys.stderr)
                print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
