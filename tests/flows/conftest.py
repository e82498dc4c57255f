"""Flow tests: one Prefect test harness for the session, feeds served on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tests.servers import FeedServer


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Heartbeats only matter to a long-lived server watching for crashed runs; off in tests.
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[FeedServer]:
    root = tmp_path / "site"
    shutil.copytree(SAMPLE, root)
    server = FeedServer(root)
    yield server
    server.close()
