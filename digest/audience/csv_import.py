"""Subscriber lists from CSV: header ``email,name,sections``; bad rows reported, never guessed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from digest.models import NewSubscriber


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


def parse_subscribers_csv(
    text: str, *, known_sections: Iterable[str]
) -> tuple[list[NewSubscriber], list[RowProblem]]:
    """Rows and problems. ``sections`` is empty (every section) or keys separated by ``;``."""
    known = set(known_sections)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "email" not in fields:
        return [], [RowProblem(1, "the header must name an `email` column")]
    reader.fieldnames = fields
    people: list[NewSubscriber] = []
    problems: list[RowProblem] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        raw = (row.get("email") or "").strip()
        try:
            email = validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError as e:
            problems.append(RowProblem(line, f"{raw!r}: {e}"))
            continue
        if email.lower() in seen:
            problems.append(RowProblem(line, f"{email}: listed twice; the first row counts"))
            continue
        seen.add(email.lower())
        sections_text = (row.get("sections") or "").strip()
        sections = None
        if sections_text:
            sections = frozenset(s.strip() for s in sections_text.split(";") if s.strip())
            unknown = sections - known
            if unknown:
                problems.append(
                    RowProblem(line, f"{email}: unknown section(s) {', '.join(sorted(unknown))}")
                )
                continue
        name = " ".join((row.get("name") or "").split())
        people.append(NewSubscriber(email=email, name=name, sections=sections))
    return people, problems
