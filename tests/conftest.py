"""Shared fixtures. Prefect's settings are fixed here, before anything imports Prefect."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="digest-tests-prefect-")
os.environ.update(
    {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(Path(_PREFECT_HOME) / "storage"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
)
# Rich fixes a console's width at creation when COLUMNS is set, and a parallel test worker
# inherits COLUMNS=80 and LINES=24: the tests give each command the width they need.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
# Tests never read a developer's own overrides.
for _name in [n for n in os.environ if n.startswith("DIGEST__") or n == "DIGEST_CONFIG"]:
    del os.environ[_name]

from digest.config import Settings, parse_settings  # noqa: E402
from digest.models import Article, EditionAction, EditionStatus, Image  # noqa: E402
from tests.servers import FeedServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "config" / "sample"
CORPORA = ROOT.parent / "shared" / "corpora"
# The actions that take a draft to each status (through the store's compare-and-set, as the
# steps do), for tests that need an edition in one.
ACTIONS_TO = {
    EditionStatus.DRAFT: (),
    EditionStatus.APPROVED: (EditionAction.APPROVE,),
    EditionStatus.SENDING: (EditionAction.APPROVE, EditionAction.START_SENDING),
    EditionStatus.SENT: (
        EditionAction.APPROVE,
        EditionAction.START_SENDING,
        EditionAction.FINISH,
    ),
    EditionStatus.REJECTED: (EditionAction.REJECT,),
    EditionStatus.AWAITING_APPROVAL: (EditionAction.ASK,),
    EditionStatus.SKIPPED: (EditionAction.ASK, EditionAction.SKIP),
}


def draft_to(store: Any, edition_id: str, status: EditionStatus, *, now: datetime) -> None:
    """Take the draft ``edition_id`` to ``status`` by the allowed actions."""
    for action in ACTIONS_TO[status]:
        store.change_edition_status(edition_id, action, now=now)


def base_config(data_dir: Path) -> dict[str, Any]:
    """A small publication with the three sample feeds as file sources."""
    return {
        "data_dir": str(data_dir),
        "publication": {
            "name": "The Meridian Review",
            "url": "https://meridian.example.org",
            "from_email": "digest@meridian.example.org",
            "postal_address": "1200 Harbor Street, Baltimore, MD 21230, USA",
            "unsubscribe_mailto": "unsubscribe@meridian.example.org",
        },
        "sources": {
            "diplomacy-watch": {"path": str(SAMPLE / "diplomacy-watch.xml")},
            "qiosk": {"path": str(SAMPLE / "qiosk.xml")},
            "analysis": {"path": str(SAMPLE / "analysis.atom")},
        },
        "sections": {
            "diplomacy-watch": {
                "title": "Diplomacy Watch",
                "sources": ["diplomacy-watch"],
                "title_prefix": "Diplomacy Watch:",
            },
            "qiosk": {"title": "QiOSK", "sources": ["qiosk"]},
            "analysis": {
                "title": "Analysis",
                "sources": ["analysis"],
                "kicker": "Analysis | {category}",
            },
        },
        "digests": {
            "weekly": {
                "title": "The Weekly Dispatch",
                "sections": ["diplomacy-watch", "qiosk", "analysis"],
                "schedule": {"cron": "0 7 * * MON", "timezone": "America/New_York"},
                "max_age_days": 0,
            }
        },
    }


def _deep_update(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


@pytest.fixture(scope="session")
def pg_base() -> Iterator[str]:
    """A PostgreSQL server for the session, started on first use."""
    from tests import postgres

    if not postgres.available():
        if os.environ.get("DIGEST_TEST_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL server binaries are required here (apt-get install postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with postgres.server() as url:
        yield url


@pytest.fixture(scope="session")
def spamassassin() -> str:
    """The path of Debian's ``spamassassin``; the test skips without it, unless
    DIGEST_TEST_REQUIRE_SPAMASSASSIN is set (as in CI), where its absence fails."""
    path = shutil.which("spamassassin")
    if path is None:
        if os.environ.get("DIGEST_TEST_REQUIRE_SPAMASSASSIN"):
            pytest.fail("spamassassin is required here (apt-get install spamassassin)")
        pytest.skip("spamassassin not installed (apt-get install spamassassin)")
    return path


@pytest.fixture(scope="session")
def pg_template(pg_base: str) -> str:
    """A PostgreSQL database migrated to the newest schema once for the session, copied for
    each test: migrating every test's database took most of its setup."""
    from digest.store import Store
    from tests.postgres import create_database

    name = "digest_template"
    Store.open(create_database(pg_base, name)).close()
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on each backend the store supports: an empty SQLite file (the store
    migrates it when opened), a PostgreSQL database already at the newest schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    from tests.postgres import database

    base = request.getfixturevalue("pg_base")
    with database(base, template=request.getfixturevalue("pg_template")) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend, for the tests of the migrations themselves."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    from tests.postgres import database

    with database(request.getfixturevalue("pg_base")) as url:
        yield url


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[FeedServer]:
    """The sample feeds served on 127.0.0.1 (a copy under tmp_path, which a test may change)."""
    root = tmp_path / "site"
    shutil.copytree(SAMPLE, root)
    server = FeedServer(root)
    yield server
    server.close()


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    """The bundled example publication, laid out as in the repository, its data in tmp_path."""
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(ROOT / "config" / "example.toml", folder / "example.toml")
    (folder / "sample").symlink_to(SAMPLE)
    return folder / "example.toml"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(overrides: dict[str, Any] | None = None, **env: str) -> Settings:
        data = _deep_update(base_config(tmp_path / "var"), overrides or {})
        return parse_settings(data, source="test.toml", base_dir=tmp_path, environ=env)

    return make


def article(n: int, **kw: Any) -> Article:
    """A plain article for unit tests; ``n`` orders them (higher is newer)."""
    fields: dict[str, Any] = {
        "id": f"a{n:020d}",
        "source": "qiosk",
        "url": f"https://meridian.example.org/qiosk/item-{n}",
        "title": f"Item {n}",
        "published": datetime(2026, 11, 1, tzinfo=UTC).replace(day=1 + n % 28, hour=n % 24),
        "summary_html": f"<p>First paragraph of item {n}.</p><p>Second paragraph.</p>",
        "image": Image(url=f"https://images.example.org/{n}.jpg", caption="Cap", credit="Cred"),
        "categories": ("News",),
    }
    fields.update(kw)
    return Article(**fields)


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            scalars.append(f"{json.dumps(k)} = {json.dumps(v)}")
    out = []
    if prefix and scalars:
        out.append(f"[{prefix}]")
    out.extend(scalars)
    for k, v in tables:
        out.append(_toml(v, f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)))
    return "\n".join(out) + "\n"


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """Write a settings mapping as TOML (JSON strings and arrays are valid TOML values)."""
    path.write_text(_toml(data), encoding="utf-8")
    return path
