"""`digest edition show|edit`: an editor's changes before the edition goes out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.factory import make_fetcher, open_store
from digest.steps.compose import compose
from digest.steps.gather import gather_source

runner = CliRunner()
NOW = "2026-11-30T14:00:00Z"


@pytest.fixture
def gathered(example_config: Path) -> Path:
    cfg = example_config
    settings = load_settings(cfg)
    store = open_store(settings)
    with make_fetcher(settings) as fetcher:
        for key in settings.sources:
            gather_source(settings, store, fetcher, key, now=datetime.now(UTC))
    store.close()
    return cfg


def _ids(output: str) -> list[str]:
    """Article ids of the listed items (card, link and pinned lines)."""
    return [
        line.split()[1]
        for line in output.splitlines()
        if line.split()[:1] in (["card"], ["link"], ["pinned"])
    ]


def test_show_then_edit(gathered: Path, tmp_path: Path) -> None:
    cfg = ["--config", str(gathered), "--now", NOW]
    shown = runner.invoke(app, ["edition", "show", *cfg])
    assert shown.exit_code == 0, shown.output
    assert "weekly-2026-W49  [draft]" in shown.output
    ids = _ids(shown.output)
    assert len(ids) == 15
    intro = tmp_path / "intro.md"
    intro.write_text("This week: **three** ceasefires.\n", encoding="utf-8")
    edited = runner.invoke(
        app,
        [
            "edition",
            "edit",
            *cfg,
            "--intro-file",
            str(intro),
            "--subject",
            "Ceasefire week",
            "--exclude",
            ids[0],
            "--pin",
            ids[4][:10],
            "--section-order",
            "analysis,qiosk",
        ],
    )
    assert edited.exit_code == 0, edited.output
    out = edited.output
    assert "Subject    Ceasefire week" in out and "three" in out
    assert ids[0] not in _ids(out) and f"Excluded   {ids[0]}" in out
    assert f"pinned {ids[4]}" in out
    assert out.index("(analysis)") < out.index("(qiosk)") < out.index("(diplomacy-watch)")
    # The preview carries the editor's changes.
    prev = runner.invoke(app, ["preview", "--out", str(tmp_path / "p"), *cfg])
    assert prev.exit_code == 0, prev.output
    assert "Subject: Ceasefire week" in prev.output
    assert "three" in (tmp_path / "p" / "digest.txt").read_text(encoding="utf-8")


def test_edit_errors_are_clear(gathered: Path) -> None:
    cfg = ["--config", str(gathered), "--now", NOW]
    nothing = runner.invoke(app, ["edition", "edit", *cfg])
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
    unknown = runner.invoke(app, ["edition", "edit", *cfg, "--pin", "zzzzzzzz"])
    assert unknown.exit_code == 1 and "no article" in unknown.output
    order = runner.invoke(app, ["edition", "edit", *cfg, "--section-order", "sport"])
    assert order.exit_code == 1 and "sport" in order.output


def test_retry_queues_exhausted_messages_again(gathered: Path) -> None:
    from digest.models import NewSubscriber, SendResult, SendStatus

    cfg = ["--config", str(gathered), "--now", NOW]
    settings = load_settings(gathered)
    store = open_store(settings)
    when = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    edition = compose(settings, store, "weekly", now=when).edition
    assert edition is not None
    store.import_subscribers([NewSubscriber(email=f"r{i}@example.org") for i in range(3)], now=when)
    store.create_deliveries(edition.id, [s.id for s in store.active_subscribers()], now=when)
    rows = store.claim_batch(edition.id, 10, now=when)
    # One submitted, one out of attempts (a transient answer with no retry time).
    store.mark_results(
        {
            rows[0].delivery_id: SendResult("a", SendStatus.SUBMITTED, provider_id="p"),
            rows[1].delivery_id: SendResult("b", SendStatus.TRANSIENT, reason="451 later"),
        },
        now=when,
    )
    assert store.delivery_counts(edition.id)["exhausted"] == 1

    done = runner.invoke(app, ["edition", "retry", *cfg])
    assert done.exit_code == 0, done.output
    assert f"Edition {edition.id}: 1 message(s) queued again." in done.output
    counts = store.delivery_counts(edition.id)
    assert counts["exhausted"] == 0 and counts["submitted"] == 1
    # The requeued row starts over: pending, no attempts spent.
    again = store.in_flight([rows[1].delivery_id])
    assert again == {}  # not sending: back in the queue
    assert [c.attempts for c in store.claim_batch(edition.id, 10, now=when)] == [1]
    store.close()


def test_a_rejected_edition_cannot_be_edited_back_to_draft(gathered: Path) -> None:
    """Editing used to put a rejected edition back to draft, ready to approve: a rejection is
    final on the command line too, said in one line without a traceback."""
    from digest.steps.compose import reject

    cfg = ["--config", str(gathered), "--now", NOW]
    settings = load_settings(gathered)
    store = open_store(settings)
    try:
        edition = compose(settings, store, "weekly", now=datetime.fromisoformat(NOW)).edition
        assert edition is not None
        reject(store, edition, now=datetime.fromisoformat(NOW))
    finally:
        store.close()
    r = runner.invoke(app, ["edition", "edit", *cfg, "--intro", "Second thoughts"])
    assert r.exit_code == 1, r.output
    assert "edition weekly-2026-W49 is rejected, and a rejection is final: edit refused" in (
        " ".join(r.output.split())
    )
    assert "Traceback" not in r.output
    shown = runner.invoke(app, ["edition", "show", *cfg])
    assert "weekly-2026-W49  [rejected]" in shown.output


def test_every_command_names_the_state_in_the_same_words(
    gathered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`digest edition show`, `digest edition list` and `digest status` say what the editors'
    pages say: "awaiting approval" while a run waits for a decision, "skipped" after a
    timeout that skipped it (not the stored value, not "draft")."""
    from digest.models import EditionAction

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    settings = load_settings(gathered)
    store = open_store(settings)
    when = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    edition = compose(settings, store, "weekly", now=when).edition
    assert edition is not None
    store.change_edition_status(edition.id, EditionAction.ASK, now=when)
    store.close()
    cfg = ["--config", str(gathered)]
    commands = (
        ["edition", "show", *cfg, "--now", NOW],
        ["edition", "list", *cfg],
        ["status", *cfg],
    )
    for command in commands:
        shown = runner.invoke(app, command)
        assert shown.exit_code == 0, shown.output
        assert f"{edition.id}  [awaiting approval]" in shown.output, command
        assert "awaiting_approval" not in shown.output and "[draft]" not in shown.output

    store = open_store(settings)
    store.change_edition_status(edition.id, EditionAction.SKIP, now=when)
    store.close()
    for command in commands:
        shown = runner.invoke(app, command)
        assert f"{edition.id}  [skipped]" in shown.output, command


def test_edition_list_filters_by_digest_and_refuses_an_unknown_one(gathered: Path) -> None:
    cfg = ["--config", str(gathered)]
    empty = runner.invoke(app, ["edition", "list", *cfg])
    assert empty.exit_code == 0 and "No editions yet." in empty.output
    settings = load_settings(gathered)
    store = open_store(settings)
    compose(settings, store, "weekly", now=datetime(2026, 11, 30, 14, 0, tzinfo=UTC))
    store.close()
    listed = runner.invoke(app, ["edition", "list", *cfg, "--digest", "weekly"])
    assert listed.exit_code == 0, listed.output
    assert "weekly-2026-W49  [draft]  made 2026-11-30" in listed.output
    wrong = runner.invoke(app, ["edition", "list", *cfg, "--digest", "nope"])
    assert wrong.exit_code == 2 and "no digest 'nope'" in wrong.output
    assert "Traceback" not in wrong.output
