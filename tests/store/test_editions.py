"""Editions in the store: drafts change, sent ones do not; only approved or sent ones carry
their articles; every status change is a compare-and-set allowed by one table, a rejection is
final, and of two decisions racing on the same edition exactly one wins."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.errors import EditionStateError, PermanentError
from digest.models import (
    EDITION_TRANSITIONS,
    Edition,
    EditionAction,
    EditionStatus,
    Overrides,
    allowed_actions,
    edition_state,
)
from digest.store import Store
from tests.conftest import article, draft_to

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_editions_drafts_change_sent_ones_do_not(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    from digest.compose.editions import compose_edition

    settings = make_settings()
    items = [article(n) for n in range(1, 4)]
    store.save_articles(items, now=NOW)
    ed = compose_edition(
        {"qiosk": items[:2]}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    store.save_edition(ed, now=NOW)
    # A draft nobody approved carries nothing: its articles stay free for later editions.
    assert store.carried_article_ids("weekly") == set()
    store.change_edition_status(ed.id, EditionAction.APPROVE, now=NOW)
    assert store.carried_article_ids("weekly") == set(ed.article_ids)
    assert store.carried_article_ids("weekly", except_edition=ed.id) == set()
    store.change_edition_status(ed.id, EditionAction.EDIT, now=NOW)
    bigger = compose_edition(
        {"qiosk": items}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    store.save_edition(bigger, now=NOW)
    loaded = store.edition(ed.id)
    assert loaded == bigger
    draft_to(store, ed.id, EditionStatus.SENT, now=NOW)
    with pytest.raises(PermanentError, match="no longer be changed"):
        store.save_edition(ed, now=NOW)
    with pytest.raises(EditionStateError, match="no longer be changed"):
        store.change_edition_status(ed.id, EditionAction.REJECT, now=NOW)
    assert store.edition_status(ed.id) is EditionStatus.SENT


def _draft(make_settings, store: Store, period: str = "2026-W49") -> str:  # type: ignore[no-untyped-def]
    from digest.compose.editions import compose_edition

    items = [article(n) for n in range(1, 3)]
    store.save_articles(items, now=NOW)
    ed = compose_edition(
        {"qiosk": items}, history=set(), settings=make_settings(), digest_key="weekly", now=NOW
    )
    ed = ed.model_copy(update={"id": f"weekly-{period}", "period": period})
    store.save_edition(ed, now=NOW)
    return ed.id


def test_a_rejection_is_final(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _draft(make_settings, store)
    assert store.change_edition_status(eid, EditionAction.REJECT, now=NOW) is EditionStatus.REJECTED
    for action in EditionAction:
        with pytest.raises(EditionStateError) as refused:
            store.change_edition_status(eid, action, now=NOW)
        e = refused.value
        assert (e.edition_id, e.status, e.action) == (eid, "rejected", action.value)
        assert f"edition {eid} is rejected" in str(e) and f"{action.value} refused" in str(e)
        assert "a retry will not help" in str(e)
    edition = store.edition(eid)
    assert edition is not None and edition.status is EditionStatus.REJECTED
    with pytest.raises(EditionStateError, match="rejection is final"):
        store.save_edition(edition, now=NOW, overrides=Overrides(intro="again"))
    assert store.overrides(eid).intro == ""
    assert allowed_actions(EditionStatus.REJECTED) == frozenset()


def test_an_action_is_allowed_only_from_the_status_the_caller_saw(
    make_settings, store: Store
) -> None:  # type: ignore[no-untyped-def]
    eid = _draft(make_settings, store)
    with pytest.raises(EditionStateError, match="is draft: start sending refused"):
        store.change_edition_status(eid, EditionAction.START_SENDING, now=NOW)
    store.change_edition_status(eid, EditionAction.APPROVE, now=NOW, expected=EditionStatus.DRAFT)
    # Rejecting an approved edition is allowed, but not by someone who saw it a draft.
    with pytest.raises(EditionStateError, match="is approved now, no longer draft") as refused:
        store.change_edition_status(
            eid, EditionAction.REJECT, now=NOW, expected=EditionStatus.DRAFT
        )
    assert refused.value.status == "approved"
    assert store.edition_status(eid) is EditionStatus.APPROVED
    with pytest.raises(EditionStateError, match="no such edition"):
        store.change_edition_status("weekly-1999-W01", EditionAction.APPROVE, now=NOW)


@pytest.mark.parametrize("status", list(EditionStatus))
def test_every_action_from_every_status_does_what_the_table_says(
    make_settings, store: Store, status: EditionStatus
) -> None:  # type: ignore[no-untyped-def]
    """The one table is the whole state machine: from ``status``, an action it lists moves the
    edition to the status it names (one compare-and-set, whatever other statuses the action
    starts from); any other is refused and changes nothing."""
    import sqlalchemy as sa

    from digest.store import schema

    eid = _draft(make_settings, store)
    for action, rule in EDITION_TRANSITIONS.items():
        with store.engine.begin() as c:
            c.execute(
                sa.update(schema.editions)
                .where(schema.editions.c.id == eid)
                .values(status=status.value)
            )
        if status in rule.allowed_from:
            assert store.change_edition_status(eid, action, now=NOW) is rule.moves[status]
            assert store.edition_status(eid) is rule.moves[status], action
        else:
            with pytest.raises(EditionStateError, match=f"is {edition_state(status)}"):
                store.change_edition_status(eid, action, now=NOW)
            assert store.edition_status(eid) is status, action


def test_an_edition_awaiting_approval_is_decided_skipped_or_edited(
    make_settings, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """The gated life: asked, edited (still awaiting approval), approved; edited again (a
    draft), asked again, skipped on timeout; edited (a draft again). ``approved_at`` follows."""
    import sqlalchemy as sa

    from digest.store import schema

    def approved_at() -> datetime | None:
        with store.engine.connect() as c:
            return c.execute(
                sa.select(schema.editions.c.approved_at).where(schema.editions.c.id == eid)
            ).scalar_one()

    eid = _draft(make_settings, store)
    ask, edit = EditionAction.ASK, EditionAction.EDIT
    awaiting = EditionStatus.AWAITING_APPROVAL
    assert store.change_edition_status(eid, ask, now=NOW) is awaiting
    with pytest.raises(EditionStateError, match="is awaiting approval: ask for approval refused"):
        store.change_edition_status(eid, ask, now=NOW)
    edition = store.edition(eid)
    assert edition is not None and edition.status is awaiting
    # An editor's change keeps it awaiting approval: the run still waits for the decision.
    assert store.save_edition(edition, now=NOW, overrides=Overrides(intro="Hi")) is awaiting
    assert store.edition_status(eid) is awaiting and store.overrides(eid).intro == "Hi"
    assert (
        store.change_edition_status(eid, EditionAction.APPROVE, now=NOW) is EditionStatus.APPROVED
    )
    assert approved_at() is not None
    # Changed once approved: a draft again, to approve again.
    assert store.change_edition_status(eid, edit, now=NOW) is EditionStatus.DRAFT
    assert approved_at() is None
    store.change_edition_status(eid, ask, now=NOW)
    with pytest.raises(EditionStateError, match="is awaiting approval now, no longer draft"):
        store.change_edition_status(
            eid, EditionAction.APPROVE, now=NOW, expected=EditionStatus.DRAFT
        )
    assert store.change_edition_status(eid, EditionAction.SKIP, now=NOW) is EditionStatus.SKIPPED
    # Skipped: not sent, not carrying its articles; an edit makes it a draft again.
    assert store.carried_article_ids("weekly") == set()
    with pytest.raises(EditionStateError, match="is skipped: start sending refused"):
        store.change_edition_status(eid, EditionAction.START_SENDING, now=NOW)
    assert store.change_edition_status(eid, edit, now=NOW) is EditionStatus.DRAFT


def test_each_status_has_its_words_for_people() -> None:
    words = [edition_state(s) for s in EditionStatus]
    assert words == [
        "draft",
        "awaiting approval",
        "approved",
        "rejected",
        "skipped",
        "sending",
        "sent",
    ]
    assert edition_state("awaiting_approval") == "awaiting approval"
    assert edition_state("dry run: nothing recorded") == "dry run: nothing recorded"
    # The error messages use the same words (the errors module stands alone).
    assert all(edition_state(s) == s.value.replace("_", " ") for s in EditionStatus)


def _race(stores: list[Store], seen: Edition) -> tuple[list[str], list[EditionStateError]]:
    """Approve (through ``stores[0]``) and reject (``stores[1]``) what both saw, at once."""
    import threading

    from digest.steps.compose import approve, reject

    barrier = threading.Barrier(2)
    won: list[str] = []
    lost: list[EditionStateError] = []

    def decide(i: int) -> None:
        do = approve if i == 0 else reject
        barrier.wait(10)
        try:
            won.append(do(stores[i], seen, now=NOW).status.value)
        except EditionStateError as e:
            lost.append(e)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return won, lost


def test_an_approval_and_a_rejection_racing_one_wins(make_settings, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """Two editors decide on the same draft at the same moment, each through their own
    connection (as two web workers, or the web app and a resumed run, would): exactly one
    decision is applied, the other is refused naming the status the first one left."""
    setup = Store.open(db_url)
    stores = [Store.open(db_url, migrate=False) for _ in range(2)]
    try:
        for n in range(12):
            eid = _draft(make_settings, setup, f"2026-W{n + 10}")
            seen = setup.edition(eid)
            assert seen is not None and seen.status is EditionStatus.DRAFT
            won, lost = _race(stores, seen)
            assert len(won) == 1 and len(lost) == 1, (won, lost)
            assert setup.edition_status(eid) == EditionStatus(won[0])
            assert lost[0].status == won[0] and lost[0].expected == "draft"
            assert lost[0].edition_id == eid
    finally:
        for s in [setup, *stores]:
            s.close()


def test_sent_editions_are_those_that_went_out_newest_first(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    statuses = {
        "2026-W45": EditionStatus.SENT,
        "2026-W46": EditionStatus.DRAFT,
        "2026-W47": EditionStatus.REJECTED,
        "2026-W48": EditionStatus.SENDING,
        "2026-W49": EditionStatus.SENT,
        "2026-W50": EditionStatus.APPROVED,
    }
    for n, (period, status) in enumerate(statuses.items()):
        edition_id = _draft(make_settings, store, period)
        draft_to(store, edition_id, status, now=NOW + timedelta(days=7 * n))
    # Sent, then sending again (messages out of attempts queued again): it went out.
    later = NOW + timedelta(days=60)
    store.change_edition_status("weekly-2026-W45", EditionAction.REOPEN, now=later)
    sent = store.sent_editions(["weekly"], limit=10)
    assert [s.edition.id for s in sent] == ["weekly-2026-W49", "weekly-2026-W45"]
    assert [s.sent_at for s in sent] == [NOW + timedelta(days=28), NOW]
    assert store.count_sent_editions(["weekly"]) == 2
    # Finishing again keeps when it first went out.
    store.change_edition_status("weekly-2026-W45", EditionAction.FINISH, now=later)
    assert [s.sent_at for s in store.sent_editions(["weekly"], limit=1, offset=1)] == [NOW]
    assert store.sent_editions(["other"], limit=10) == []
    assert store.count_sent_editions([]) == 0
