"""The approval gate: an edition run of a digest with ``approval = "required"`` pauses in the
Prefect test harness until an editor decides (or the time is up). The run goes in a thread;
the test decides through the API as the web app would."""

from __future__ import annotations

import email
import email.policy
import threading
import time
import tomllib
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings, parse_settings
from digest.models import EditionAction, EditionStatus
from digest.store import Store
from tests.conftest import SAMPLE, base_config, write_toml

pytestmark = pytest.mark.flows

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
EDITION = "weekly-2026-W49"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.approval

    monkeypatch.setattr(flows.approval, "POLL_SECONDS", 1)


def setup(tmp_path: Path, **digest: Any) -> tuple[Path, Settings]:
    from digest.audience.csv_import import parse_subscribers_csv

    data = base_config(tmp_path / "var")
    data["digests"]["weekly"].update({"approval": "required", **digest})
    cfg = write_toml(tmp_path / "pub.toml", data)
    settings = parse_settings(tomllib.loads(cfg.read_text()), base_dir=tmp_path, environ={})
    people, problems = parse_subscribers_csv(
        (SAMPLE / "subscribers.csv").read_text(encoding="utf-8"),
        known_sections=settings.sections,
    )
    assert not problems
    with _store(settings) as store:
        store.import_subscribers(people, now=NOW)
    return cfg, settings


def _store(settings: Settings) -> closing[Store]:
    return closing(Store.open(settings.database_url))


class Run:
    """The digest run in a thread, as a worker would run it."""

    def __init__(self, cfg: Path) -> None:
        from flows.pipeline import run_flow

        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = run_flow(str(cfg), "weekly", NOW)
            except BaseException as e:
                self.error = e

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait_paused(self, timeout: float = 60) -> str:
        from flows.approval import paused_run_id

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run_id = paused_run_id(EDITION)
            if run_id is not None:
                return str(run_id)
            assert self.thread.is_alive(), f"the run ended without pausing: {self.error!r}"
            time.sleep(0.2)
        raise AssertionError("the run never paused")

    def outcome(self, timeout: float = 60) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def emls(settings: Settings) -> list[Path]:
    return sorted((settings.outbox_path / EDITION).glob("*.eml"))


def run_state(run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None
    return state.type.value


def run_note(run_id: str) -> Any:
    """The edition summary a run that delivered nothing left (``flows.artifacts.note_artifact``)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        notes = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["edition-weekly-2026-w49"]))
        )
    (note,) = [a for a in notes if str(a.flow_run_id) == run_id]
    return note


def test_approve_with_changes_sends_the_edited_edition(tmp_path: Path) -> None:
    from flows.approval import ApprovalInput, NoPausedRun, resume_edition

    cfg, settings = setup(tmp_path, max_per_section=12, max_items=40)
    with pytest.raises(NoPausedRun):
        resume_edition(EDITION, ApprovalInput(decision="approve"))
    run = Run(cfg)
    paused = run.wait_paused()
    with _store(settings) as store:
        draft = store.edition(EDITION)
    # While the run waits for the decision, the edition is awaiting approval.
    assert draft is not None and draft.status is EditionStatus.AWAITING_APPROVAL
    assert not emls(settings)  # nothing goes out while the editor decides
    dropped = draft.teasers[0].article_id
    decision = ApprovalInput(
        decision="approve", subject="Edited subject", excluded=[dropped[:8]], editor="ana"
    )
    assert resume_edition(EDITION, decision) == paused

    result = run.outcome()
    assert result["edition_status"] == "sent"
    assert result["message"] == "approved by ana"
    assert result["submitted"] == result["recipients"] > 0
    assert result["items"] == len(draft.teasers) - 1
    files = emls(settings)
    assert len(files) == result["recipients"]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Edited subject"
    with _store(settings) as store:
        sent = store.edition(EDITION)
        assert store.overrides(EDITION).excluded == (dropped,)
    assert sent is not None and sent.status is EditionStatus.SENT
    assert dropped not in {t.article_id for t in sent.teasers}
    assert run_state(paused) == "COMPLETED"


def test_reject_sends_nothing(tmp_path: Path) -> None:
    from digest.errors import EditionStateError
    from digest.steps.compose import approve
    from flows.approval import ApprovalInput, resume_edition
    from flows.pipeline import run_flow

    cfg, settings = setup(tmp_path)
    run = Run(cfg)
    run.wait_paused()
    resume_edition(EDITION, ApprovalInput(decision="reject", editor="ben"))
    result = run.outcome()
    assert result["edition_status"] == "rejected"
    assert result["message"] == "rejected by ben"
    assert result["submitted"] == 0 and not emls(settings)
    with _store(settings) as store:
        edition = store.edition(EDITION)
        assert edition is not None and edition.status is EditionStatus.REJECTED
        # Final: no approval takes it back, and the next run neither asks nor sends.
        with pytest.raises(EditionStateError, match="a rejection is final: approve refused"):
            approve(store, edition, now=NOW)
    again = run_flow(str(cfg), "weekly", NOW)
    assert again["edition_status"] == "rejected" and again["submitted"] == 0
    assert not emls(settings)


@pytest.mark.parametrize("action", ["skip", "send"])
def test_timeout_does_what_the_digest_says(tmp_path: Path, action: str) -> None:
    cfg, settings = setup(tmp_path, approval_timeout_hours=2 / 3600, approval_timeout_action=action)
    run = Run(cfg)
    paused = run.wait_paused()
    result = run.outcome()
    with _store(settings) as store:
        edition = store.edition(EDITION)
    assert edition is not None
    if action == "skip":
        assert result["message"] == "approval timed out; skipped"
        assert result["edition_status"] == "skipped" and edition.status is EditionStatus.SKIPPED
        assert result["submitted"] == 0 and not emls(settings)
        # The run's note says it in the words every page and command uses.
        note = run_note(paused)
        assert "Status: skipped" in note.data and note.description.endswith(": skipped")
    else:
        assert result["message"] == "approval timed out; sent"
        assert result["edition_status"] == "sent" and edition.status is EditionStatus.SENT
        assert result["submitted"] == result["recipients"] == len(emls(settings)) > 0
    assert run_state(paused) == "COMPLETED"


def test_a_rejection_recorded_meanwhile_wins_over_a_timeout_that_sends(tmp_path: Path) -> None:
    """An editor rejects the edition in the store while the run waits (no run to resume from
    the web app, say); the timeout's "send" must not mail it, nor undo the rejection."""
    cfg, settings = setup(tmp_path, approval_timeout_hours=3 / 3600, approval_timeout_action="send")
    run = Run(cfg)
    run.wait_paused()
    with _store(settings) as store:
        store.change_edition_status(EDITION, EditionAction.REJECT, now=NOW)
    result = run.outcome()
    assert result["submitted"] == 0 and not emls(settings)
    with _store(settings) as store:
        assert store.edition(EDITION).status is EditionStatus.REJECTED  # type: ignore[union-attr]


def test_a_timeout_that_sends_sends_what_is_stored(tmp_path: Path) -> None:
    """Articles an editor left out while the run waited stay out of what the timeout sends."""
    from digest.steps.compose import edit_edition

    cfg, settings = setup(tmp_path, approval_timeout_hours=3 / 3600, approval_timeout_action="send")
    run = Run(cfg)
    run.wait_paused()
    with _store(settings) as store:
        before = store.edition(EDITION)
        assert before is not None
        dropped = before.teasers[0]
        edit_edition(settings, store, "weekly", {"excluded": [dropped.article_id]}, now=NOW)
    result = run.outcome()
    assert result["submitted"] > 0
    import email
    import email.policy

    sent = email.message_from_bytes(emls(settings)[0].read_bytes(), policy=email.policy.default)
    text = sent.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert before.teasers[1].title in text  # the check can see titles at all
    assert dropped.title not in text


def test_an_editor_takes_an_edition_from_draft_to_sent_on_the_web_page(tmp_path: Path) -> None:
    """The whole life on the editors' page, as `digest web` serves it beside a Prefect server:
    the run pauses, the editor changes the subject on the page and approves there, and the run
    that was waiting sends the edition as changed."""
    import base64

    from fastapi.testclient import TestClient

    from digest.web.app import create_app
    from digest.web.editor import NoRunWaiting
    from flows.approval import ApprovalInput, NoPausedRun, resume_edition

    cfg, _ = setup(tmp_path, max_per_section=12, max_items=40)
    secret = "editor-secret-for-this-test"
    settings = parse_settings(
        tomllib.loads(cfg.read_text()),
        base_dir=tmp_path,
        environ={"DIGEST__WEB__EDITOR_TOKEN": secret},
    )

    def approver(edition_id: str, decision: dict[str, Any]) -> str:
        # As `digest web` resumes runs when PREFECT_API_URL is set (digest/cli/serve.py).
        try:
            return resume_edition(edition_id, ApprovalInput(**decision))
        except NoPausedRun as e:
            raise NoRunWaiting(str(e)) from None

    run = Run(cfg)
    paused = run.wait_paused()
    login = base64.b64encode(f"ana:{secret}".encode()).decode()
    page = f"/editions/{EDITION}"
    with (
        _store(settings) as store,
        TestClient(
            create_app(settings, store, approver=approver),
            base_url="https://meridian.example.org",
            headers={"Authorization": f"Basic {login}"},
        ) as web,
    ):
        shown = web.get(page).text
        assert "awaiting approval" in shown and 'value="approve"' in shown
        saved = web.post(f"{page}/edit", data={"subject": "Doha, week two"}, follow_redirects=True)
        assert saved.status_code == 200 and "<h1>Doha, week two</h1>" in saved.text
        decided = web.post(f"{page}/decision", data={"decision": "approve"}, follow_redirects=True)
        assert decided.status_code == 200, decided.text[-2000:]
        assert "the run waiting for the decision was told" in decided.text

    result = run.outcome()
    assert result["edition_status"] == "sent"
    files = emls(settings)
    assert files and len(files) == result["submitted"] == result["recipients"]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Doha, week two"
    assert run_state(paused) == "COMPLETED"
    with _store(settings) as store:
        sent = store.edition(EDITION)
    assert sent is not None and sent.status is EditionStatus.SENT
