"""A throwaway PostgreSQL server for the store's tests: initdb in a temp folder, listening on
127.0.0.1 only, stopped at the end of the session. Needs the server binaries (Debian's
``postgresql`` package; ``.ci/run`` installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _bin_dir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def available() -> bool:
    return _bin_dir() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server() -> Iterator[str]:
    """Start a server; yield the base URL (``postgresql+psycopg://digest@127.0.0.1:PORT``)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    data = root / "data"
    # initdb refuses to run as root: run the server as the packaged `postgres` user then.
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "digest",
            "--no-sync",
        ],
        **run,  # type: ignore[call-overload]
    )
    # A throwaway server: nothing it writes needs to survive a crash.
    options = (
        f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off "
        "-c synchronous_commit=off"
    )
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        **run,  # type: ignore[call-overload]
    )
    try:
        yield f"postgresql+psycopg://digest@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(base_url: str, name: str, *, template: str = "") -> str:
    """A new database on the server, empty or a copy of ``template``; returns its URL.

    The default strategy (WAL_LOG), not FILE_COPY: FILE_COPY forces a checkpoint per copy, which
    measured slower on a busy machine for databases this small."""
    import sqlalchemy as sa

    source = f' TEMPLATE "{template}"' if template else ""
    engine = sa.create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"{source}'))
    engine.dispose()
    return f"{base_url}/{name}"


def drop_database(base_url: str, name: str) -> None:
    """Drop ``name``, ending whatever connections a test left open to it."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@contextmanager
def database(base_url: str, *, template: str = "") -> Iterator[str]:
    """A database of its own for one test (see ``create_database``), dropped afterwards: a
    session's hundreds of databases would otherwise fill the data folder until the end."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(base_url, name, template=template)
    try:
        yield url
    finally:
        drop_database(base_url, name)


def table_stat(engine: Any, table: str, figure: str) -> int:
    """A figure of ``pg_stat_user_tables`` for ``table`` (e.g. ``seq_scan``, or an expression
    over its columns) as it stands now: the statistics are flushed first."""
    with engine.begin() as c:
        c.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    with engine.begin() as c:
        c.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        return int(
            c.exec_driver_sql(
                f"SELECT {figure} FROM pg_stat_user_tables WHERE relname = %s", (table,)
            ).scalar_one()
        )
