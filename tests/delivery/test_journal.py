"""The send journal: answers written line by line, read back after a crash, then discarded."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import pytest

from digest.models import SendResult, SendStatus
from digest.store import Journal, discard, edition_dir, replay

EDITION = "weekly-2026-W48"
OTHER = "weekly-2026-W49"

SUBMITTED = SendResult(key=f"{EDITION}/1", status=SendStatus.SUBMITTED, provider_id="pm-1")
TRANSIENT = SendResult(
    key=f"{EDITION}/2",
    status=SendStatus.TRANSIENT,
    reason="HTTP 429: slow down",
    retry_after=30.0,
)
PERMANENT = SendResult(
    key=f"{EDITION}/3",
    status=SendStatus.PERMANENT,
    reason="550 5.1.1 <gone@example.org>: user unknown",
    bounce=True,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def files(root: Path, edition_id: str = EDITION) -> list[Path]:
    return sorted(edition_dir(root, edition_id).glob("*.jsonl"))


# write + replay --------------------------------------------------------------------------


def test_round_trip_of_every_kind_of_answer(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(101, SUBMITTED)
    journal.write(102, TRANSIENT)
    journal.write(103, PERMANENT)
    journal.close(remove=False)
    assert replay(root, EDITION) == {101: SUBMITTED, 102: TRANSIENT, 103: PERMANENT}


def test_replay_sees_answers_while_the_journal_is_still_open(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(7, SUBMITTED)
    # No buffering in the process: a reader (another process after a crash) sees it at once.
    assert replay(root, EDITION) == {7: SUBMITTED}
    journal.write(8, PERMANENT)
    assert replay(root, EDITION) == {7: SUBMITTED, 8: PERMANENT}
    journal.close(remove=False)


def test_fields_survive_exactly(root: Path) -> None:
    answers = {
        1: SendResult(key="k/1", status=SendStatus.TRANSIENT, reason="x", retry_after=0.0),
        2: SendResult(key="k/2", status=SendStatus.TRANSIENT, reason="timeout"),
        3: SendResult(key="k/3", status=SendStatus.PERMANENT, reason="spam policy 5.7.1"),
        4: SendResult(key="k/4", status=SendStatus.SUBMITTED, provider_id="<a.b@example.com>"),
        5: SendResult(key="k/5", status=SendStatus.TRANSIENT, reason="later", retry_after=2.5),
        6: SendResult(
            key="k/6",
            status=SendStatus.PERMANENT,
            reason="Adresse inconnue: « jörg@exämple.org » 🚫\nsecond line",
            bounce=True,
        ),
    }
    journal = Journal(root, EDITION)
    for delivery_id, result in answers.items():
        journal.write(delivery_id, result)
    journal.close(remove=False)
    back = replay(root, EDITION)
    assert back == answers
    assert back[1].retry_after == 0.0  # zero is a hint, not "no hint"
    assert back[2].retry_after is None
    assert back[3].bounce is False
    assert back[6].bounce is True


def test_one_line_per_answer(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.write(2, PERMANENT)
    journal.close(remove=False)
    lines = journal.path.read_bytes().splitlines()
    assert len(lines) == 2
    assert journal.path.read_bytes().endswith(b"\n")
    assert json.loads(lines[0])["d"] == 1
    assert json.loads(lines[1])["b"] == 1


def test_journal_file_is_private(root: Path) -> None:
    journal = Journal(root, EDITION)
    mode = stat.S_IMODE(journal.path.stat().st_mode)
    assert mode & 0o077 == 0
    journal.close(remove=True)


def test_two_journals_of_one_process_get_their_own_files(root: Path) -> None:
    a, b = Journal(root, EDITION), Journal(root, EDITION)
    assert a.path != b.path
    assert a.path.parent == b.path.parent == edition_dir(root, EDITION)
    a.close(remove=True)
    b.close(remove=True)


def test_several_journals_of_one_edition_are_merged(root: Path) -> None:
    first, second, third = Journal(root, EDITION), Journal(root, EDITION), Journal(root, EDITION)
    first.write(1, SUBMITTED)
    second.write(2, TRANSIENT)
    third.write(3, PERMANENT)
    first.write(4, SUBMITTED)
    first.close(remove=False)
    second.close(remove=False)
    assert len(files(root)) == 3
    assert replay(root, EDITION) == {1: SUBMITTED, 2: TRANSIENT, 3: PERMANENT, 4: SUBMITTED}
    third.close(remove=False)


def test_last_answer_per_row_wins_within_a_file(root: Path) -> None:
    journal = Journal(root, EDITION)
    first_try = SendResult(key="k/9", status=SendStatus.TRANSIENT, reason="421", retry_after=5)
    second_try = SendResult(key="k/9", status=SendStatus.SUBMITTED, provider_id="q-9")
    journal.write(9, first_try)
    journal.write(10, SUBMITTED)
    journal.write(9, second_try)
    journal.close(remove=False)
    assert replay(root, EDITION) == {9: second_try, 10: SUBMITTED}


def test_the_newest_answer_wins_across_files(root: Path) -> None:
    """A row retried in the same run may go out through another sending process.

    Process 2000 wrote the first, transient answer; process 10000 later wrote the submission.
    Both journals are still on disk when a crash is settled. The submission is the newest
    answer and must win; reading the transient one last would send the message again.
    """
    early = Journal(root, EDITION)
    early.write(5, SendResult(key="k/5", status=SendStatus.TRANSIENT, reason="451 later"))
    early.close(remove=False)
    late = Journal(root, EDITION)
    sent = SendResult(key="k/5", status=SendStatus.SUBMITTED, provider_id="q-5")
    late.write(5, sent)
    late.close(remove=False)
    # File names start with the writing process's id; ids are not in time order.
    early.path.rename(early.path.with_name("2000-aaaaaaaaaaaa.jsonl"))
    late.path.rename(late.path.with_name("10000-bbbbbbbbbbbb.jsonl"))
    assert replay(root, EDITION)[5] == sent


def test_a_line_cut_short_by_a_crash_is_skipped(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.write(2, TRANSIENT)
    journal.close(remove=False)
    whole = json.dumps({"d": 3, "s": "submitted", "k": "k/3", "p": "pm-3"}) + "\n"
    with journal.path.open("ab") as f:
        f.write(whole[: len(whole) // 2].encode())
    assert replay(root, EDITION) == {1: SUBMITTED, 2: TRANSIENT}


@pytest.mark.parametrize(
    "tail",
    [
        b'{"d": 3, "s": "subm',
        b'{"d": 3, "s": "submitted", "k": "k/3"',
        b'{"d": 3, "s": "submitted", "k": "k/3", "p": "\xc3',  # inside a UTF-8 character
        b"{",
        b'{"d": 3, "s": "submit", "k": "k/3"}',  # a status that is not one
        b'{"s": "submitted", "k": "k/3"}',  # no row
        b'{"d": "x", "s": "submitted", "k": "k/3"}',  # not a row id
        b"[3]",
        b"null",
    ],
)
def test_unreadable_lines_are_skipped_and_the_rest_kept(root: Path, tail: bytes) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.close(remove=False)
    with journal.path.open("ab") as f:
        f.write(tail + b"\n")
        f.write(b"\n")
    other = Journal(root, EDITION)
    other.write(2, PERMANENT)
    other.close(remove=False)
    assert replay(root, EDITION) == {1: SUBMITTED, 2: PERMANENT}


def test_another_editions_journal_is_not_read(root: Path) -> None:
    ours, theirs = Journal(root, EDITION), Journal(root, OTHER)
    ours.write(1, SUBMITTED)
    theirs.write(2, PERMANENT)
    theirs.write(1, TRANSIENT)
    ours.close(remove=False)
    theirs.close(remove=False)
    assert replay(root, EDITION) == {1: SUBMITTED}
    assert replay(root, OTHER) == {2: PERMANENT, 1: TRANSIENT}


def test_replay_of_an_edition_without_journals_is_empty(root: Path) -> None:
    assert replay(root, EDITION) == {}
    assert not root.exists()
    Journal(root, OTHER).close(remove=False)
    assert replay(root, EDITION) == {}


def test_files_other_than_journals_are_ignored(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.close(remove=False)
    stray = journal.path.with_name("notes.txt")
    stray.write_text(json.dumps({"d": 2, "s": "submitted", "k": "k/2"}) + "\n")
    assert replay(root, EDITION) == {1: SUBMITTED}


# Edition ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edition_id",
    ["weekly/2026:W48", "../weekly-2026-W48", "a/../../b", "/etc/passwd", "week ly\\2026\x00"],
)
def test_odd_edition_ids_stay_inside_the_root(root: Path, edition_id: str) -> None:
    journal = Journal(root, edition_id)
    folder = journal.path.parent
    assert folder.parent == root
    assert folder.resolve().is_relative_to(root.resolve())
    assert journal.path.resolve().is_relative_to(root.resolve())
    journal.write(1, SUBMITTED)
    journal.close(remove=False)
    assert replay(root, edition_id) == {1: SUBMITTED}
    discard(root, edition_id)
    assert not folder.exists()
    assert root.is_dir()


def test_odd_characters_are_replaced_in_the_folder_name(root: Path) -> None:
    assert edition_dir(root, "weekly/2026:W48") == root / "weekly_2026_W48"
    assert edition_dir(root, EDITION) == root / EDITION
    journal = Journal(root, "weekly/2026:W48")
    assert journal.path.parent == root / "weekly_2026_W48"
    journal.close(remove=True)


# discard and close ---------------------------------------------------------------------------


def test_discard_removes_the_files_and_the_folder(root: Path) -> None:
    for n in range(3):
        journal = Journal(root, EDITION)
        journal.write(n, SUBMITTED)
        journal.close(remove=False)
    kept = Journal(root, OTHER)
    kept.write(1, PERMANENT)
    kept.close(remove=False)
    assert len(files(root)) == 3
    discard(root, EDITION)
    assert not edition_dir(root, EDITION).exists()
    assert replay(root, EDITION) == {}
    # The other edition is left alone.
    assert files(root, OTHER) == [kept.path]
    assert replay(root, OTHER) == {1: PERMANENT}


def test_discard_without_journals_does_nothing(root: Path) -> None:
    discard(root, EDITION)
    assert not root.exists()


def test_discard_keeps_a_folder_holding_other_files(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.close(remove=False)
    stray = journal.path.with_name("keep.txt")
    stray.write_text("not a journal")
    discard(root, EDITION)
    assert not journal.path.exists()
    assert stray.exists()


def test_close_with_remove_deletes_the_file(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.close(remove=True)
    assert not journal.path.exists()
    assert replay(root, EDITION) == {}


def test_close_without_remove_keeps_the_file(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.close(remove=False)
    assert journal.path.exists()
    assert replay(root, EDITION) == {1: SUBMITTED}


def test_close_twice_and_remove_later(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.close(remove=False)
    journal.close(remove=False)
    assert journal.path.exists()
    journal.close(remove=True)
    assert not journal.path.exists()
    journal.close(remove=True)  # already gone: no error


def test_close_with_remove_after_discard(root: Path) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    discard(root, EDITION)
    journal.close(remove=True)
    assert not journal.path.exists()


@pytest.mark.parametrize("remove", [True, False])
def test_writing_after_close_raises(root: Path, remove: bool) -> None:
    journal = Journal(root, EDITION)
    journal.write(1, SUBMITTED)
    journal.close(remove=remove)
    with pytest.raises(ValueError, match="closed"):
        journal.write(2, TRANSIENT)
    assert replay(root, EDITION) == ({} if remove else {1: SUBMITTED})


def test_an_answer_crosses_from_a_sending_process_whole() -> None:
    """Answers come back from the sending processes pickled: every field survives, defaults
    and the retry hint included."""
    for answer in (
        SUBMITTED,
        TRANSIENT,
        PERMANENT,
        SendResult(key="k", status=SendStatus.SUBMITTED),
    ):
        back = pickle.loads(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == answer and type(back) is SendResult
