"""`digest subscribers`: import, export, list, add, remove and show against a real store."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.models import Subscriber, SubscriberStatus
from digest.store import Store
from tests.conftest import base_config, write_toml

runner = CliRunner()

GOOD_AND_BAD = (
    "email,name,sections,digests\n"
    "ana@example.org,Ana Lima,,\n"  # line 2
    "not-an-address,Nobody,,\n"  # line 3: invalid address
    "zoe@Example.ORG,Zoë Müller,qiosk;analysis,weekly\n"  # line 4
    "sam@example.org,Sam,sport,\n"  # line 5: unknown section
    "kim@example.org,Kim,,monthly\n"  # line 6: unknown digest
    "ANA@example.org,Ana again,,\n"  # line 7: duplicate of line 2
    "lee@example.org,Lee,,daily\n"  # line 8
)


def make_config(folder: Path) -> Path:
    """A publication with two digests, its data in ``folder``."""
    data = base_config(folder / "var")
    weekly = data["digests"]["weekly"]
    data["digests"]["daily"] = {**weekly, "title": "The Daily", "sections": ["qiosk"]}
    folder.mkdir(parents=True, exist_ok=True)
    return write_toml(folder / "pub.toml", data)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return make_config(tmp_path / "pub")


@pytest.fixture
def store_of() -> Iterator[list[Store]]:
    opened: list[Store] = []
    yield opened
    for s in opened:
        s.close()


def open_store(cfg: Path, opened: list[Store]) -> Store:
    store = Store.open(load_settings(cfg, environ={}).database_url)
    opened.append(store)
    return store


def known(store: Store, email: str) -> Subscriber:
    person = store.subscriber_by_email(email)
    assert person is not None, email
    return person


def invoke(cfg: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["subscribers", *args, "--config", str(cfg)])
    return result.exit_code, result.output


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_takes_good_rows_and_reports_each_bad_one(
    cfg: Path, tmp_path: Path, store_of: list[Store]
) -> None:
    path = write(tmp_path, "list.csv", GOOD_AND_BAD)
    code, output = invoke(cfg, "import", str(path))
    assert code == 1, output
    assert "3 added, 0 updated, 0 unchanged" in output and "4 rejected" in output
    assert "list.csv:3: 'not-an-address'" in output
    assert "list.csv:5: sam@example.org: unknown section(s) sport" in output
    assert "list.csv:6: kim@example.org: unknown digest(s) monthly" in output
    assert "list.csv:7: ANA@example.org: listed twice (first on line 2)" in output

    store = open_store(cfg, store_of)
    people = {p.email: p for p in store.subscribers()}
    assert set(people) == {"ana@example.org", "zoe@example.org", "lee@example.org"}
    assert people["ana@example.org"].name == "Ana Lima"
    assert people["zoe@example.org"].sections == {"qiosk", "analysis"}
    assert people["zoe@example.org"].digests == {"weekly"}
    assert people["lee@example.org"].digests == {"daily"}
    assert people["lee@example.org"].sections is None
    assert {p.source for p in people.values()} == {"import:list.csv"}
    assert all(p.status is SubscriberStatus.ACTIVE for p in people.values())


def test_import_twice_changes_nothing(cfg: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", GOOD_AND_BAD)
    invoke(cfg, "import", str(path))
    _, before = invoke(cfg, "export")
    code, output = invoke(cfg, "import", str(path))
    assert code == 1  # the bad rows are still bad
    assert "0 added, 0 updated, 3 unchanged" in output
    assert invoke(cfg, "export")[1] == before

    clean = write(tmp_path, "clean.csv", "email,name\nnew@example.org,New\n")
    assert invoke(cfg, "import", str(clean))[0] == 0
    code, output = invoke(cfg, "import", str(clean))
    assert code == 0 and "0 added, 0 updated, 1 unchanged" in output


def test_import_never_revives_an_address_that_left(
    cfg: Path, tmp_path: Path, store_of: list[Store]
) -> None:
    path = write(tmp_path, "list.csv", "email,name\nana@example.org,Ana\nzoe@example.org,Zoë\n")
    assert invoke(cfg, "import", str(path))[0] == 0
    store = open_store(cfg, store_of)
    ana, zoe = known(store, "ana@example.org"), known(store, "zoe@example.org")
    now = datetime.now(UTC)
    store.set_subscriber_status(ana.id, SubscriberStatus.UNSUBSCRIBED, now=now, cause="link")
    store.set_subscriber_status(zoe.id, SubscriberStatus.COMPLAINED, now=now, cause="spam")

    later = write(tmp_path, "later.csv", "email,name\nana@example.org,Ana L\nZOE@example.org,Z\n")
    code, output = invoke(cfg, "import", str(later))
    assert code == 0, output
    assert "0 added, 0 updated, 0 unchanged, 2 kept as they were (not active" in output
    assert known(store, "ana@example.org").status is SubscriberStatus.UNSUBSCRIBED
    assert known(store, "zoe@example.org").status is SubscriberStatus.COMPLAINED
    assert known(store, "ana@example.org").name == "Ana"


def test_export_then_import_round_trip(cfg: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", GOOD_AND_BAD)
    invoke(cfg, "import", str(path))
    invoke(cfg, "add", "op@example.org", "--name", 'Olu "Op", Jr.', "--digest", "daily")
    invoke(cfg, "add", "gone@example.org")
    invoke(cfg, "remove", "gone@example.org")

    exported = tmp_path / "export.csv"
    code, output = invoke(cfg, "export", "--out", str(exported))
    assert code == 0 and "Wrote 5 subscriber(s)" in output
    assert exported.stat().st_mode & 0o077 == 0  # personal data: the owner's only
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
    assert list(rows[0]) == [
        "email",
        "name",
        "status",
        "sections",
        "digests",
        "source",
        "created_at",
        "updated_at",
    ]
    zoe = next(r for r in rows if r["email"] == "zoe@example.org")
    assert (zoe["sections"], zoe["digests"], zoe["status"]) == (
        "analysis;qiosk",
        "weekly",
        "active",
    )
    assert zoe["source"] == "import:list.csv" and zoe["created_at"].endswith("Z")

    other = make_config(tmp_path / "other")
    code, output = invoke(other, "import", str(exported))
    assert code == 0, output
    assert "4 added" in output and "1 skipped (not active in the file)" in output
    assert "gone@example.org: unsubscribed in the file" in output

    def active(config: Path) -> list[tuple[str, ...]]:
        text = invoke(config, "export", "--status", "active")[1]
        return sorted(
            (r["email"], r["name"], r["status"], r["sections"], r["digests"])
            for r in csv.DictReader(io.StringIO(text))
        )

    assert active(other) == active(cfg)
    assert len(active(other)) == 4
    assert ("op@example.org", 'Olu "Op", Jr.', "active", "", "daily") in active(other)


def test_list_shows_each_status_and_counts(cfg: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", GOOD_AND_BAD)
    invoke(cfg, "import", str(path))
    invoke(cfg, "remove", "lee@example.org", "--reason", "asked by email")
    result = runner.invoke(
        app, ["subscribers", "list", "--config", str(cfg)], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    zoe = next(line for line in lines if "zoe@example.org" in line)
    assert "active" in zoe and "analysis, qiosk" in zoe and "weekly" in zoe
    assert "import:list.csv" in zoe
    assert "unsubscribed" in next(line for line in lines if "lee@example.org" in line)
    assert lines[-1] == "3 subscriber(s): 2 active, 1 unsubscribed"

    code, output = invoke(cfg, "list", "--status", "unsubscribed")
    assert code == 0 and "lee@example.org" in output and "ana@example.org" not in output
    assert output.splitlines()[-1] == "1 subscriber(s): 1 unsubscribed"
    assert invoke(cfg, "list", "--status", "sleeping")[0] == 2


def test_add_remove_show_with_audit_trail(cfg: Path, store_of: list[Store]) -> None:
    code, output = invoke(
        cfg, "add", "Reader@Example.ORG", "--name", "A  Reader", "-s", "qiosk", "-d", "weekly"
    )
    assert code == 0, output
    assert "Added Reader@example.org" in output
    store = open_store(cfg, store_of)
    person = known(store, "reader@example.org")
    assert (person.status, person.source, person.name) == (
        SubscriberStatus.ACTIVE,
        "operator",
        "A Reader",
    )
    assert (person.sections, person.digests) == ({"qiosk"}, {"weekly"})

    # Known and active: reported, not changed.
    code, output = invoke(cfg, "add", "reader@example.org", "--name", "Other", "-s", "analysis")
    assert code == 0 and "already a subscriber" in output and "active" in output
    assert store.subscriber_by_email("reader@example.org") == person

    code, output = invoke(cfg, "remove", "reader@example.org", "--reason", "asked by phone")
    assert code == 0, output
    assert "active → unsubscribed" in output
    code, output = invoke(cfg, "remove", "reader@example.org")
    assert code == 0 and "already unsubscribed" in output

    # An operator never revives an address that left.
    code, output = invoke(cfg, "add", "reader@example.org")
    assert code == 1 and "unsubscribed" in output and "double opt-in" in output
    assert known(store, "reader@example.org").status is SubscriberStatus.UNSUBSCRIBED

    events = store.subscriber_events(person.id)
    assert [(e["old_status"], e["new_status"], e["cause"]) for e in events] == [
        (None, "active", "added by an operator"),
        ("active", "unsubscribed", "removed by an operator: asked by phone"),
    ]

    code, output = invoke(cfg, "show", "READER@example.org")
    assert code == 0, output
    assert "Status     unsubscribed" in output and "Source     operator" in output
    assert "Sections   qiosk" in output and "Digests    weekly" in output
    assert "(new) → active  added by an operator" in output
    assert "active → unsubscribed  removed by an operator: asked by phone" in output


def test_add_rejects_invalid_input_with_exit_2(cfg: Path, store_of: list[Store]) -> None:
    for args, message in (
        (["nobody"], "'nobody'"),
        (["a@example.org", "-s", "sport"], "unknown section(s) sport"),
        (["a@example.org", "-d", "monthly"], "unknown digest(s) monthly"),
    ):
        code, output = invoke(cfg, "add", *args)
        assert code == 2 and message in output, output
    assert open_store(cfg, store_of).subscribers() == []


def test_remove_and_show_unknown_address_exit_1(cfg: Path, store_of: list[Store]) -> None:
    code, output = invoke(cfg, "remove", "who@example.org")
    assert code == 1 and "no subscriber" in output
    assert invoke(cfg, "show", "who@example.org")[0] == 1


def test_remove_leaves_a_suppressed_address_suppressed(cfg: Path, store_of: list[Store]) -> None:
    invoke(cfg, "add", "b@example.org")
    store = open_store(cfg, store_of)
    person = known(store, "b@example.org")
    store.set_subscriber_status(
        person.id, SubscriberStatus.BOUNCED, now=datetime.now(UTC), cause="550 no such user"
    )
    code, output = invoke(cfg, "remove", "b@example.org")
    assert code == 0 and "suppressed" in output
    assert known(store, "b@example.org").status is SubscriberStatus.BOUNCED


def test_a_stray_quote_rejects_its_line_only(
    cfg: Path, tmp_path: Path, store_of: list[Store]
) -> None:
    text = (
        'email,name\nb@example.com,"Bob\n'  # line 2: the quote is never closed
        "c@example.com,Cat\nd@example.com,Dan\ne@example.com,Eve\n"
    )
    code, output = invoke(cfg, "import", str(write(tmp_path, "list.csv", text)))
    assert code == 1, output
    assert "list.csv:2:" in output and "quote" in output
    assert "4 data line(s): 3 added, 0 updated, 0 unchanged" in output
    assert "1 rejected" in output
    store = open_store(cfg, store_of)
    assert store.subscriber_by_email("b@example.com") is None
    assert {p.email: p.name for p in store.subscribers()} == {
        "c@example.com": "Cat",
        "d@example.com": "Dan",
        "e@example.com": "Eve",
    }


def test_ten_thousand_rows_with_one_bad_one(
    cfg: Path, tmp_path: Path, store_of: list[Store]
) -> None:
    lines = ["email,name"] + [
        f'reader{i}@example.org,"Reader {i}' if i == 5_000 else f"reader{i}@example.org,Reader {i}"
        for i in range(1, 10_001)
    ]
    path = write(tmp_path, "big.csv", "\n".join(lines) + "\n")
    code, output = invoke(cfg, "import", str(path))
    assert code == 1
    assert "big.csv:5001:" in output
    assert "10000 data line(s): 9999 added, 0 updated, 0 unchanged" in output
    assert output.rstrip().endswith("1 rejected")
    store = open_store(cfg, store_of)
    people = store.subscribers()
    assert len(people) == 9_999
    assert all(p.name == f"Reader {p.email[6:-12]}" for p in people)


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_export_neutralises_formulas_and_import_reads_them_back(
    cfg: Path, tmp_path: Path, store_of: list[Store], first: str
) -> None:
    from digest.audience.csv_import import new_subscriber
    from digest.models import NewSubscriber

    names = {
        "a@example.org": first + 'HYPERLINK("http://evil.example/","Click")',
        f"{first if first in '=+-' else '='}cmd@example.org": first + "cmd|' /C calc'!A0",
        "c@example.org": "'" + first + "1+1",
    }
    store = open_store(cfg, store_of)
    for email, name in names.items():  # as a sign-up or an older version may have stored them
        store.add_subscriber(
            NewSubscriber(email=email, name=name),
            status=SubscriberStatus.ACTIVE,
            source="signup",
            now=datetime.now(UTC),
            cause="test",
        )
    exported = tmp_path / "export.csv"
    code, output = invoke(cfg, "export", "--out", str(exported))
    assert code == 0, output
    rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8"))))
    assert len(rows) == 4
    assert all(not cell or cell[0] not in "=+-@\t\r" for row in rows[1:] for cell in row)

    other = make_config(tmp_path / "other")
    code, output = invoke(other, "import", str(exported))
    assert code == 0, output
    back = {p.email: p.name for p in open_store(other, store_of).subscribers()}
    # What any way in keeps of each name: exactly the original, but for white space at its start.
    assert back == {e: new_subscriber(e, name=n, known_sections=()).name for e, n in names.items()}
    if first.strip():
        assert back == names
