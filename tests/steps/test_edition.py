"""An edition run without Prefect: a real SQLite store, the outbox provider at the port (or the
in-memory one for a dry run), and the plain steps as stages unless a test replaces one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings
from digest.errors import DeliveryLocked, TransientDeliveryError
from digest.models import Edition, EditionAction, EditionStatus, NewSubscriber
from digest.steps.compose import Decision, approve, compose
from digest.steps.edition import EditionOutcome, EditionStages, deliver_stage, run_edition
from digest.steps.ledger import DeliveryReport, lease_name
from digest.store import Store
from tests.conftest import article
from tests.steps.world import crash_mid_send

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
READERS = ["one@example.org", "two@example.org", "three@example.org"]


@pytest.fixture
def publication(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[Callable[..., tuple[Settings, Store]]]:
    """A store with three articles and three readers; ``approval`` and ``timeout_action`` set
    the weekly digest's approval gate."""
    stores: list[Store] = []

    def build(approval: str = "auto", timeout_action: str = "skip") -> tuple[Settings, Store]:
        settings = make_settings(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'digest.db'}"},
                "delivery": {"provider": "outbox", "retry": {"wait": 0}},
                "digests": {
                    "weekly": {
                        "approval": approval,
                        "approval_timeout_action": timeout_action,
                    }
                },
            }
        )
        store = Store.open(settings.database_url)
        stores.append(store)
        store.save_articles(
            [article(1), article(2), article(3, source="analysis", categories=("Europe",))],
            now=NOW,
        )
        store.import_subscribers([NewSubscriber(email=e) for e in READERS], now=NOW)
        return settings, store

    yield build
    for store in stores:
        store.close()


def sent_to(settings: Settings) -> list[str]:
    """The recipients of the messages in the outbox."""
    import email
    from email.utils import parseaddr

    return sorted(
        parseaddr(email.message_from_bytes(f.read_bytes())["To"])[1]
        for f in settings.outbox_path.rglob("*.eml")
    )


def edition_of(store: Store, outcome: EditionOutcome) -> Edition:
    assert outcome.summary.edition_id is not None
    stored = store.edition(outcome.summary.edition_id)
    assert stored is not None
    return stored


def test_a_normal_run_approves_sends_and_reports(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication()
    outcome = run_edition(settings, store, "weekly", NOW)
    summary = outcome.summary
    assert outcome.failure is None and outcome.delivered is not None
    assert outcome.html_bytes > 0
    assert sent_to(settings) == sorted(READERS)
    assert edition_of(store, outcome).status is EditionStatus.SENT
    assert summary.edition_status == "sent" and summary.items == 3
    assert (summary.recipients, summary.submitted, summary.submitted_now) == (3, 3, 3)
    assert summary.preview is not None and Path(summary.preview).name == "index.html"
    assert Path(summary.preview).exists()
    # A second run of the period finds the edition sent and sends nothing again.
    again = run_edition(settings, store, "weekly", NOW)
    assert again.summary.submitted_now == 0 and sent_to(settings) == sorted(READERS)


def test_a_dry_run_records_and_sends_nothing(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication()
    outcome = run_edition(settings, store, "weekly", NOW, dry_run=True)
    summary = outcome.summary
    assert outcome.delivered is None and outcome.failure is None
    assert summary.dry_run and summary.edition_status == "dry run: nothing recorded"
    assert summary.recipients == 3 and summary.submitted_now == 3
    assert store.last_editions(5) == [], "a dry run stores no edition"
    assert sent_to(settings) == []


def test_an_edition_that_needs_approval_waits_awaiting_approval_without_a_gate(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication(approval="required")
    outcome = run_edition(settings, store, "weekly", NOW)
    assert outcome.delivered is None
    assert edition_of(store, outcome).status is EditionStatus.AWAITING_APPROVAL
    assert outcome.summary.edition_status == "awaiting_approval"
    assert "awaiting" in outcome.summary.message and sent_to(settings) == []
    # The next run finds it awaiting approval still, as it was: not recomposed, not sent.
    store.save_articles([article(4)], now=NOW)
    again = run_edition(settings, store, "weekly", NOW)
    assert again.delivered is None and again.summary.items == 3
    assert edition_of(store, again).status is EditionStatus.AWAITING_APPROVAL
    # Approved meanwhile (the web editor, say), the next run sends it.
    store.change_edition_status(edition_of(store, outcome).id, EditionAction.APPROVE, now=NOW)
    later = run_edition(settings, store, "weekly", NOW)
    assert later.summary.submitted_now == 3 and sent_to(settings) == sorted(READERS)


def test_an_approval_with_changes_sends_the_edited_edition(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication(approval="required")
    asked: list[tuple[str, EditionStatus, int]] = []
    dropped = article(2).id

    def gate(edition: Edition, html_bytes: int) -> Decision | None:
        asked.append((edition.id, edition.status, html_bytes))
        return Decision("approve", subject="Edited subject", excluded=(dropped,), editor="ada")

    outcome = run_edition(settings, store, "weekly", NOW, stages=EditionStages(await_decision=gate))
    # The run asked: the edition was awaiting approval while it waited.
    assert len(asked) == 1 and asked[0][2] > 0
    assert asked[0][1] is EditionStatus.AWAITING_APPROVAL
    stored = edition_of(store, outcome)
    assert stored.status is EditionStatus.SENT and stored.subject == "Edited subject"
    assert dropped not in stored.article_ids
    assert store.overrides(stored.id).excluded == (dropped,)
    assert outcome.summary.message == "approved by ada" and outcome.summary.items == 2
    assert sent_to(settings) == sorted(READERS)


def test_a_rejection_sends_nothing_now_or_later(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication(approval="required")

    def gate(edition: Edition, html_bytes: int) -> Decision | None:
        return Decision("reject", editor="ben")

    stages = EditionStages(await_decision=gate)
    outcome = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert outcome.delivered is None
    assert outcome.summary.edition_status == "rejected"
    assert outcome.summary.message == "rejected by ben"
    assert edition_of(store, outcome).status is EditionStatus.REJECTED
    again = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert again.delivered is None and again.summary.edition_status == "rejected"
    assert sent_to(settings) == []


@pytest.mark.parametrize(("action", "sent"), [("skip", False), ("send", True)])
def test_no_decision_in_time_does_what_the_digest_says(
    publication, action: str, sent: bool
) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication(approval="required", timeout_action=action)
    seen: list[EditionStatus | None] = []

    def no_decision(edition: Edition, html_bytes: int) -> Decision | None:
        seen.append(store.edition_status(edition.id))
        return None

    stages = EditionStages(await_decision=no_decision)
    outcome = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert seen == [EditionStatus.AWAITING_APPROVAL]
    assert outcome.summary.message == f"approval timed out; {'sent' if sent else 'skipped'}"
    assert sent_to(settings) == (sorted(READERS) if sent else [])
    status = EditionStatus.SENT if sent else EditionStatus.SKIPPED
    assert edition_of(store, outcome).status is status
    assert outcome.summary.edition_status == status.value


def test_a_skipped_edition_is_not_asked_again_but_an_editor_may_still_approve_it(
    publication,
) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication(approval="required", timeout_action="skip")
    asked: list[str] = []

    def no_decision(edition: Edition, html_bytes: int) -> Decision | None:
        asked.append(edition.id)
        return None

    stages = EditionStages(await_decision=no_decision)
    skipped = run_edition(settings, store, "weekly", NOW, stages=stages)
    again = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert len(asked) == 1, "a skipped edition is not asked about again"
    assert again.delivered is None and again.summary.edition_status == "skipped"
    assert sent_to(settings) == []
    # An editor approves it late (the web page, without a run waiting): the next run sends it.
    eid = edition_of(store, skipped).id
    store.change_edition_status(eid, EditionAction.APPROVE, now=NOW, expected=EditionStatus.SKIPPED)
    last = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert last.summary.submitted_now == 3 and len(asked) == 1


@pytest.mark.parametrize(
    ("decision", "status", "readers"),
    [
        ("reject", EditionStatus.REJECTED, []),
        ("approve", EditionStatus.SENT, sorted(READERS)),
    ],
)
def test_a_decision_recorded_in_the_store_before_the_run_is_resumed_stands(
    publication, decision: str, status: EditionStatus, readers: list[str]
) -> None:  # type: ignore[no-untyped-def]
    """The web page records a decision, then resumes the run with it: the run sends (or not)
    what the store says, and reports who decided."""
    settings, store = publication(approval="required")
    action = EditionAction.REJECT if decision == "reject" else EditionAction.APPROVE

    def decided_on_the_page(edition: Edition, html_bytes: int) -> Decision | None:
        store.change_edition_status(
            edition.id, action, now=NOW, expected=EditionStatus.AWAITING_APPROVAL
        )
        return Decision(decision, editor="cy")  # type: ignore[arg-type]

    stages = EditionStages(await_decision=decided_on_the_page)
    outcome = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert (
        outcome.summary.message == f"{status.value if decision == 'reject' else 'approved'} by cy"
    )
    assert edition_of(store, outcome).status is status
    assert sent_to(settings) == readers


def test_a_decision_on_an_edition_rejected_meanwhile_sends_nothing(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication(approval="required")

    def gate(edition: Edition, html_bytes: int) -> Decision | None:
        # An editor rejected it in the web app while the run waited.
        store.change_edition_status(edition.id, EditionAction.REJECT, now=NOW)
        return Decision("approve")

    outcome = run_edition(settings, store, "weekly", NOW, stages=EditionStages(await_decision=gate))
    assert outcome.delivered is None and "meanwhile" in outcome.summary.message
    assert sent_to(settings) == []


@pytest.mark.parametrize("decision", [None, Decision("approve", editor="ada")])
def test_a_rejection_landing_just_after_the_run_looked_wins(
    publication, monkeypatch: pytest.MonkeyPatch, decision: Decision | None
) -> None:  # type: ignore[no-untyped-def]
    """The run reads the edition after the gate and sees a draft; an editor's rejection lands
    in the same moment; then the run applies the decision (approve) or the timeout's "send".
    The rejection stands and nobody is mailed."""
    from digest.steps.compose import reject

    settings, store = publication(approval="required", timeout_action="send")
    real = store.edition

    def as_read_before(edition_id: str) -> Edition | None:
        found = real(edition_id)
        if found is not None and found.status is EditionStatus.REJECTED:
            return found.model_copy(update={"status": EditionStatus.DRAFT})
        return found

    def gate(edition: Edition, html_bytes: int) -> Decision | None:
        reject(store, edition, now=NOW)
        monkeypatch.setattr(store, "edition", as_read_before)
        return decision

    outcome = run_edition(settings, store, "weekly", NOW, stages=EditionStages(await_decision=gate))
    assert outcome.delivered is None
    assert outcome.summary.edition_status == "rejected"
    assert "rejected meanwhile" in outcome.summary.message
    assert sent_to(settings) == []
    monkeypatch.undo()
    assert edition_of(store, outcome).status is EditionStatus.REJECTED


def test_an_approved_edition_rejected_before_it_starts_sending_is_not_sent(publication) -> None:  # type: ignore[no-untyped-def]
    """Approved, then rejected while the run renders it: starting to send is a compare-and-set
    from approved, so the run stops and the rejection stands."""
    from digest.steps.compose import reject
    from digest.steps.edition import render_stage

    settings, store = publication()

    def render(settings: Settings, store: Store, edition: Edition) -> Any:
        reject(store, edition, now=NOW)  # an editor stops it at the last moment
        return render_stage(settings, store, edition)

    outcome = run_edition(settings, store, "weekly", NOW, stages=EditionStages(render=render))
    assert outcome.delivered is None and outcome.summary.edition_status == "rejected"
    assert sent_to(settings) == []
    stored = edition_of(store, outcome)
    assert stored.status is EditionStatus.REJECTED
    assert store.delivery_counts(stored.id)["pending"] == 0


def test_a_lease_held_by_another_run_stops_this_one(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication()
    first = run_edition(settings, store, "weekly", NOW, dry_run=True)
    assert first.summary.edition_id is not None
    # Another run holds the lease of this period's edition.
    lease = lease_name(first.summary.edition_id)
    store.acquire_lock(lease, "another-run", ttl=timedelta(minutes=15))
    with pytest.raises(DeliveryLocked, match=first.summary.edition_id):
        run_edition(settings, store, "weekly", NOW)
    assert sent_to(settings) == []
    assert store.delivery_counts(first.summary.edition_id)["submitted"] == 0
    store.release_lock(lease, "another-run")
    done = run_edition(settings, store, "weekly", NOW)
    assert done.summary.submitted_now == 3


def test_a_delivery_that_stops_still_reports_the_ledger(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication()
    calls: list[str] = []

    def failing(*args: Any) -> DeliveryReport:
        calls.append("deliver")
        raise TransientDeliveryError("the server is down")

    outcome = run_edition(settings, store, "weekly", NOW, stages=EditionStages(deliver=failing))
    assert calls == ["deliver"]
    assert isinstance(outcome.failure, TransientDeliveryError)
    assert outcome.delivered is not None and outcome.summary.recipients == 3
    assert [f.split(" (")[0] for f in outcome.summary.failures] == [
        "delivery stopped: the server is down"
    ]
    assert outcome.summary.edition_status == "sending"
    # The next run sends what is left.
    again = run_edition(settings, store, "weekly", NOW)
    assert again.failure is None and again.summary.submitted == 3


def test_each_stage_is_called_through_the_stages_given(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication()
    called: list[str] = []
    plain = EditionStages()

    def traced(name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            called.append(name)
            return stage(*args)

        return call

    stages = replace(
        plain,
        compose=traced("compose", plain.compose),
        render=traced("render", plain.render),
        prepare=traced("prepare", plain.prepare),
        deliver=traced("deliver", deliver_stage),
    )
    outcome = run_edition(settings, store, "weekly", NOW, stages=stages)
    assert called == ["compose", "render", "prepare", "deliver"]
    assert outcome.summary.submitted_now == 3


def test_after_a_crash_this_run_counts_only_what_it_sent(publication) -> None:  # type: ignore[no-untyped-def]
    settings, store = publication()
    composed = compose(settings, store, "weekly", now=NOW)
    assert composed.edition is not None
    edition = approve(store, composed.edition, now=NOW)
    crash_mid_send(settings, store, edition, sent=2)
    by_crashed = sent_to(settings)
    assert len(by_crashed) == 2 and store.delivery_counts(edition.id)["sending"] == 3

    outcome = run_edition(settings, store, "weekly", NOW)
    summary = outcome.summary
    assert sent_to(settings) == sorted(READERS)  # nobody twice, nobody left out
    sent_now = len(READERS) - len(by_crashed)
    assert (summary.submitted, summary.submitted_now, summary.recovered) == (3, sent_now, 2)
    assert summary.recipients == 3 and summary.edition_status == "sent"
