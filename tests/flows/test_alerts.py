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

    # Only this run's alert counts: a failed run of an earlier test may still be on its way.
    def this_run() -> list[dict[str, Any]]:
        return [p for p in receiver.posts if b'"digest-run-alert-test"' in p["body"]]

    deadline = time.monotonic() + 60
    while not this_run() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert this_run(), "the webhook was not called within 60 s of the failed run"
    post = this_run()[0]
    assert post["path"] == "/hooks/digest"
    payload = json.loads(post["body"])
    assert payload["flow_run"] == "digest-run-alert-test"
    assert payload["flow_run_id"] == str(state.state_details.flow_run_id)
    assert payload["flow"] == "digest-run"
    assert payload["state"] == "Failed"
    # A line for people in the field Slack-compatible hooks read, with the error and a link to
    # the run: the server's UI URL, or (a server that has none) the one this process knows.
    link = payload["url"]
    assert link.startswith("http://127.0.0.1:")
    assert link.endswith(f"/runs/flow-run/{payload['flow_run_id']}")
    assert payload["text"] == (
        "newsletter-digest: flow run digest-run-alert-test (digest-run) failed: "
        f"{payload['message']} {link}"
    )
    assert "RuntimeError: the feed server is down" in payload["message"]


def test_alert_webhook_url_must_be_http(make_settings: Any) -> None:
    settings: Settings = make_settings({"alerts": {"webhook_url": "https://hooks.example.org/x"}})
    assert settings.alerts.webhook_url == "https://hooks.example.org/x"
    assert make_settings().alerts.webhook_url == ""
    with pytest.raises(ConfigError, match=r"alerts\.webhook_url"):
        make_settings({"alerts": {"webhook_url": "ftp://hooks.example.org/x"}})
    assert make_settings().alerts.format == "slack"
    with pytest.raises(ConfigError, match=r"alerts\.format"):
        make_settings({"alerts": {"format": "irc"}})


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
        f.write(f'\n[alerts]\nwebhook_url = "{receiver.url}"\nformat = "teams"\n')

    out = CliRunner().invoke(app, ["serve", "--config", str(example_config)])
    assert out.exit_code == 0, out.output
    assert "Alerts:" in out.output and "(teams format; links to runs at http://" in out.output
    assert served and served[0] > 0
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(name="newsletter-digest: failed runs")
    assert len(found) == 1
    assert '"@type": "MessageCard"' in found[0].actions[0].payload  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def failed_run() -> dict[str, Any]:
    """A failed run of the project's gather flow with an error a chat would take as markup,
    as the automation's template sees it: the server's own models of the run and its flow."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.server.schemas.core import Flow, FlowRun

    @flow(name="gather-section", flow_run_name="gather-qiosk-20261130T140000Z", retries=0)
    def failing() -> None:
        raise RuntimeError("section 'qiosk': no working source <!channel> @everyone & more")

    state = failing(return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        flow_ = client.read_flow(run.flow_id)
    return {
        "flow_run": FlowRun.model_validate(run.model_dump()),
        "flow": Flow.model_validate(flow_.model_dump()),
    }


def _render_and_post(template: str, context: dict[str, Any], receiver: Receiver) -> Any:
    """Render ``template`` as the server does when the automation fires (Prefect's sandboxed
    user templates, with its event filters such as ``ui_url``), POST it with the Webhook block
    the automation uses, and return the JSON the receiver got."""
    from prefect.blocks.webhook import Webhook
    from prefect.server.events.actions import CallWebhook as ServerCallWebhook
    from prefect.server.utilities.user_templates import render_user_template_sync
    from prefect.types import SecretDict
    from prefect.utilities.asyncutils import run_coro_as_sync

    ServerCallWebhook._register_filters_if_needed()
    body = render_user_template_sync(template, context)
    block = Webhook(
        method="POST", url=receiver.url, headers=SecretDict({"Content-Type": "application/json"})
    )
    before = len(receiver.posts)
    run_coro_as_sync(block.call(payload=body))
    assert len(receiver.posts) == before + 1
    return json.loads(receiver.posts[-1]["body"])


@pytest.mark.parametrize("alert_format", ["slack", "json", "discord", "teams"])
def test_each_format_carries_the_line_where_the_chat_reads_it(
    alert_format: str, failed_run: dict[str, Any], receiver: Receiver
) -> None:
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    from flows.alerts import payload_template

    run = failed_run["flow_run"]
    link = f"https://prefect.example.org/runs/flow-run/{run.id}"
    with temporary_settings(updates={PREFECT_UI_URL: "https://prefect.example.org"}):
        sent = _render_and_post(payload_template(alert_format), failed_run, receiver)
    error = "section 'qiosk': no working source <!channel> @everyone & more"
    line = f"newsletter-digest: flow run {run.name} (gather-section) failed: "
    if alert_format == "slack":
        assert sent["text"].startswith(line) and sent["text"].endswith(f" {link}")
        # Slack's markup characters are escaped: no <!channel> notifies anyone.
        assert "&lt;!channel&gt; @everyone &amp; more" in sent["text"]
        assert "<" not in sent["text"]
    if alert_format in ("slack", "json"):
        assert sent["url"] == link and sent["flow_run_id"] == str(run.id)
        assert sent["flow"] == "gather-section" and sent["state"] == "Failed"
        assert error in sent["message"]
    if alert_format == "json":
        assert sent["text"] == f"{line}{sent['message']} {link}"
    if alert_format == "discord":
        assert sent["content"].startswith(line) and error in sent["content"]
        assert sent["content"].endswith(f" {link}") and len(sent["content"]) <= 2000
        assert sent["allowed_mentions"] == {"parse": []}
    if alert_format == "teams":
        assert sent["@type"] == "MessageCard" and sent["title"].endswith("gather-section failed")
        assert sent["text"].startswith(line) and error in sent["text"]
        (action,) = sent["potentialAction"]
        assert action["targets"][0]["uri"] == link


def test_without_a_ui_url_the_alert_says_where_to_set_one(
    failed_run: dict[str, Any], receiver: Receiver
) -> None:
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    from flows.alerts import payload_template

    with temporary_settings(updates={PREFECT_UI_URL: ""}):
        slack = _render_and_post(payload_template("slack"), failed_run, receiver)
        teams = _render_and_post(payload_template("teams"), failed_run, receiver)
    assert slack["url"] is None
    # A server without a UI URL links to the UI `digest serve` knew; one with its own, to that.
    ours = "https://prefect.example.org:4200"
    run_id = failed_run["flow_run"].id
    with temporary_settings(updates={PREFECT_UI_URL: ""}):
        fallback = _render_and_post(payload_template("slack", ours), failed_run, receiver)
    assert fallback["url"] == f"{ours}/runs/flow-run/{run_id}"
    assert fallback["text"].endswith(f" {ours}/runs/flow-run/{run_id}")
    with temporary_settings(updates={PREFECT_UI_URL: "https://ui.example.org"}):
        own = _render_and_post(payload_template("slack", ours), failed_run, receiver)
    assert own["url"] == f"https://ui.example.org/runs/flow-run/{run_id}"
    assert slack["text"].endswith(
        "(no link to the run: set PREFECT_UI_URL where the Prefect server runs)"
    )
    assert "potentialAction" not in teams


def test_a_long_error_is_cut_to_one_readable_line(
    failed_run: dict[str, Any], receiver: Receiver
) -> None:
    from flows.alerts import MESSAGE_CHARS, payload_template

    run = failed_run["flow_run"].model_copy(deep=True)
    run.state.message = "Traceback:\n" + "line of a traceback\n" * 200
    sent = _render_and_post(payload_template("discord"), {**failed_run, "flow_run": run}, receiver)
    assert "\n" not in sent["content"] and "…" in sent["content"]
    assert len(sent["content"]) < MESSAGE_CHARS + 200
