from __future__ import annotations

from digest.audience.csv_import import parse_subscribers_csv
from tests.conftest import SAMPLE

SECTIONS = {"diplomacy-watch", "qiosk", "analysis"}


def test_sample_list_is_clean() -> None:
    people, problems = parse_subscribers_csv(
        (SAMPLE / "subscribers.csv").read_text(encoding="utf-8"), known_sections=SECTIONS
    )
    assert problems == []
    assert len(people) == 12
    assert any(p.sections == {"qiosk"} for p in people)
    assert any(p.name == "Zoë Müller" for p in people)


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
    assert "sport" in problems[2].message


def test_header_without_email_column() -> None:
    people, problems = parse_subscribers_csv("name\nAna\n", known_sections=SECTIONS)
    assert people == [] and "email" in problems[0].message
