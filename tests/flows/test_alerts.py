"""Alerts on failed runs: the automation is created once, however often it is set up, and a
failed run of one of the project's flows makes the server call the webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings
from digest.errors import ConfigError

pytestmark = pytest.mark.flows


class Receiver:
    """A webhook receiver on 127.0.0.1 recording the bodies of POSTs."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/digest"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The receiver; afterwards the alert automation is removed, so that no later test's
    failed run calls a webhook."""
    from prefect.client.orchestration import get_client

    from flows.alerts import DEFAULT_NAME

    server = Receiver()
    yield server
    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(name=DEFAULT_NAME):
            client.delete_automation(automation_id=automation.id)
    server.close()


def test_failed_run_calls_the_webhook_once_set_up(receiver: Receiver) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.alerts import DEFAULT_NAME, ensure_alert_automation

    first = ensure_alert_automation(receiver.url)
    second = ensure_alert_automation(receiver.url)
    assert first == second
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(name=DEFAULT_NAME)
    assert [a.id for a in found] == [first]
    automation = found[0]
    assert automation.enabled
    assert automation.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}

    # A run of a flow named as the project's run flow, failing.
    @flow(name="digest-run", flow_run_name="digest-run-alert-test", retries=0)
    def failing() -> None:
        raise RuntimeError("the feed server is down")

    state = failing(return_state=True)
    assert state.is_failed()

    deadline = time.monotonic() + 30
    while not receiver.posts and time.monotonic() < deadline:
        time.sleep(0.2)
    assert receiver.posts, "the webhook was not called within 30 s of the failed run"
    post = receiver.posts[0]
    assert post["path"] == "/hooks/digest"
    payload = json.loads(post["body"])
    assert payload["flow_run"] == "digest-run-alert-test"
    assert payload["flow_run_id"] == str(state.state_details.flow_run_id)
    assert payload["flow"] == "digest-run"
    assert payload["state"] == "Failed"
    assert "url" in payload


def test_alert_webhook_url_must_be_http(make_settings: Any) -> None:
    settings: Settings = make_settings({"alerts": {"webhook_url": "https://hooks.example.org/x"}})
    assert settings.alerts.webhook_url == "https://hooks.example.org/x"
    assert make_settings().alerts.webhook_url == ""
    with pytest.raises(ConfigError, match=r"alerts\.webhook_url"):
        make_settings({"alerts": {"webhook_url": "ftp://hooks.example.org/x"}})


def test_serve_sets_up_the_alerts_before_serving(
    example_config: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    import prefect
    from prefect.client.orchestration import get_client

    served: list[int] = []
    monkeypatch.setattr(
        prefect, "serve", lambda *deployments, **kw: served.append(len(deployments))
    )
    with example_config.open("a", encoding="utf-8") as f:
        f.write(f'\n[alerts]\nwebhook_url = "{receiver.url}"\n')

    out = CliRunner().invoke(app, ["serve", "--config", str(example_config)])
    assert out.exit_code == 0, out.output
    assert "Alerts:" in out.output
    assert served and served[0] > 0
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(name="newsletter-digest: failed runs")
    assert len(found) == 1
