"""Subscriber lists as CSV, in and out; bad rows are reported with their line, never guessed.

Import reads a header that names ``email`` and, optionally, ``name``, ``sections`` and
``digests`` (keys separated by ``;``; empty means every section or every digest). Every row is
one line with as many fields as the header: a quote left open, a value spanning lines or a
wrong number of fields rejects that line alone, and the next line is read as its own row (a
stray quote never swallows the rows after it). Names are one line of at most ``MAX_NAME``
characters without control characters. Export writes
``email,name,status,sections,digests,source,created_at,updated_at``, which import reads back:
of an export's rows only the active ones are imported, since an import adds people as active and
must never turn someone who left into a subscriber again.

A spreadsheet takes a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
for a formula, and a name from an anonymous sign-up may be one (``=HYPERLINK(…)``). As OWASP's
CSV injection guidance recommends, export puts a single quote before such a cell (and before a
cell that is quotes followed by one, so that the quote it adds is never ambiguous); import takes
that one quote away again, and only there, so an export reads back as the original values.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from digest.audience.addresses import InvalidAddress, normalise_email
from digest.models import NewSubscriber, Subscriber, SubscriberStatus
from digest.store.subscribers import email_key

EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "sections",
    "digests",
    "source",
    "created_at",
    "updated_at",
)
KEY_SEPARATOR = ";"
MAX_NAME = 200
# What ends a line in a CSV file; a row never goes past one.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A cell a spreadsheet would read as a formula (OWASP), or one the export's quote would make
# ambiguous: quotes followed by such a character.
_FORMULA = re.compile("'*[=+\\-@\t\r]")


def neutralise_cell(value: str) -> str:
    """``value`` safe to open in a spreadsheet: a single quote put before a formula."""
    return "'" + value if _FORMULA.match(value) else value


def restore_cell(value: str) -> str:
    """The value ``neutralise_cell`` was given: its quote taken away, where it put one."""
    return value[1:] if value.startswith("'") and _FORMULA.match(value, 1) else value


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


@dataclass(frozen=True)
class SubscriberList:
    """What a CSV holds: the people to import, the rows rejected, and the rows left out on
    purpose (an export's subscribers who are not active)."""

    people: list[NewSubscriber] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)
    # Data lines read (blank lines and the header not counted): each is one of the people, a
    # problem or a skipped row.
    lines: int = 0


class InvalidSubscriber(ValueError):
    """Details of a subscriber that cannot be accepted; the message says which and why."""


def _address(raw: str) -> str:
    """``normalise_email``, its refusal as an InvalidSubscriber (``'raw': reason``)."""
    try:
        return normalise_email(raw)
    except InvalidAddress as e:
        raise InvalidSubscriber(f"{e.address!r}: {e.reason}") from None


def split_keys(text: str) -> frozenset[str] | None:
    """``a;b`` as a set of keys; empty (every section or digest) as None."""
    return _keys(text.split(KEY_SEPARATOR))


def join_keys(keys: Iterable[str] | None) -> str:
    return "" if keys is None else KEY_SEPARATOR.join(sorted(keys))


def _keys(values: Iterable[str] | None) -> frozenset[str] | None:
    keys = frozenset(v.strip() for v in values or () if v.strip())
    return keys or None


def _name(email: str, raw: str) -> str:
    """A name as one line: white space (tabs, line breaks) collapsed to single spaces; refused
    with a control character in it or over ``MAX_NAME`` characters."""
    name = " ".join(raw.split())
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise InvalidSubscriber(
            f"{email}: the name has a control character (U+{ord(control):04X}); "
            "a name is one line of text"
        )
    if len(name) > MAX_NAME:
        raise InvalidSubscriber(
            f"{email}: the name is longer than {MAX_NAME} characters ({len(name)})"
        )
    return name


def _check(email: str, kind: str, keys: frozenset[str] | None, known: Iterable[str]) -> None:
    known_set = set(known)
    unknown = sorted((keys or frozenset()) - known_set)
    if unknown:
        raise InvalidSubscriber(
            f"{email}: unknown {kind}(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known_set)) or 'none'})"
        )


def new_subscriber(
    email: str,
    *,
    name: str = "",
    sections: Iterable[str] | None = None,
    digests: Iterable[str] | None = None,
    known_sections: Iterable[str],
    known_digests: Iterable[str] | None = None,
) -> NewSubscriber:
    """A subscriber checked as an import checks each row: a valid address, a name of one line
    (see ``_name``), section and digest keys the configuration knows (no keys: every one).
    ``known_digests`` None: not checked. Raises InvalidSubscriber."""
    address = _address(email)
    clean_name = _name(address, name)
    chosen_sections, chosen_digests = _keys(sections), _keys(digests)
    _check(address, "section", chosen_sections, known_sections)
    if known_digests is not None:
        _check(address, "digest", chosen_digests, known_digests)
    return NewSubscriber(
        email=address,
        name=clean_name,
        sections=chosen_sections,
        digests=chosen_digests,
    )


class _BadLine(ValueError):
    """A line that is not one CSV row; the message says why."""


def _fields(line: str) -> list[str]:
    """The fields of one line of CSV. Raises _BadLine when a quote is left open (the row
    would run into the next lines) or text follows a closing quote."""
    try:
        return next(csv.reader((line,), strict=True), [])
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise _BadLine(
                'a quoted value is not closed on this line (a stray `"`?); a row is one line, '
                "so a value cannot span lines"
            ) from None
        raise _BadLine(
            f'not valid CSV: {e} (a value with a `"` in it is written in double quotes, '
            'each `"` inside doubled)'
        ) from None


def read_subscribers_csv(
    text: str, *, known_sections: Iterable[str], known_digests: Iterable[str] | None = None
) -> SubscriberList:
    """Read a subscriber list, one row per line. Line numbers are those of the file."""
    known_s, known_d = set(known_sections), None if known_digests is None else set(known_digests)
    result = SubscriberList()
    lines = _LINE_BREAK.split(text.lstrip("\ufeff"))
    if lines[-1] == "":
        lines.pop()  # the last line's end
    header: list[str] | None = None
    first_line: dict[str, int] = {}
    data_lines = 0
    for line, raw in enumerate(lines, 1):
        if not raw.replace(",", "").strip():
            continue  # blank
        if header is None:
            try:
                header = [f.strip().lower() for f in _fields(raw)]
            except _BadLine as e:
                result.problems.append(RowProblem(line, f"the header: {e}"))
                return result
            if "email" not in header:
                result.problems.append(RowProblem(line, "the header must name an `email` column"))
                return result
            continue
        data_lines += 1
        try:
            fields = _fields(raw)
        except _BadLine as e:
            result.problems.append(RowProblem(line, str(e)))
            continue
        if len(fields) != len(header):
            hint = (
                " (a value with a comma needs double quotes)" if len(fields) > len(header) else ""
            )
            result.problems.append(
                RowProblem(line, f"{len(fields)} field(s) where the header has {len(header)}{hint}")
            )
            continue
        row = dict(zip(header, map(restore_cell, fields), strict=True))
        _read_row(row, line, known_s, known_d, first_line, result)
    if header is None and not result.problems:
        result.problems.append(RowProblem(1, "empty file: the header must name an `email` column"))
    return replace(result, lines=data_lines)


def _read_row(
    row: Mapping[str, str],
    line: int,
    known_sections: set[str],
    known_digests: set[str] | None,
    first_line: dict[str, int],
    result: SubscriberList,
) -> None:
    raw = row.get("email", "")
    try:
        email = _address(raw)
    except InvalidSubscriber as e:
        result.problems.append(RowProblem(line, str(e)))
        return
    first = first_line.setdefault(email_key(email), line)
    if first != line:
        result.problems.append(
            RowProblem(
                line, f"{email}: listed twice (first on line {first}); only that row is read"
            )
        )
        return
    status_text = row.get("status", "").strip().lower()
    if status_text:
        try:
            status = SubscriberStatus(status_text)
        except ValueError:
            statuses = ", ".join(s.value for s in SubscriberStatus)
            result.problems.append(
                RowProblem(line, f"{email}: unknown status {status_text!r} (statuses: {statuses})")
            )
            return
        if status is not SubscriberStatus.ACTIVE:
            result.skipped.append(
                RowProblem(line, f"{email}: {status.value} in the file; only active rows import")
            )
            return
    try:
        person = new_subscriber(
            email,
            name=row.get("name", ""),
            sections=row.get("sections", "").split(KEY_SEPARATOR),
            digests=row.get("digests", "").split(KEY_SEPARATOR),
            known_sections=known_sections,
            known_digests=known_digests,
        )
    except InvalidSubscriber as e:
        result.problems.append(RowProblem(line, str(e)))
        return
    result.people.append(person)


def parse_subscribers_csv(
    text: str, *, known_sections: Iterable[str], known_digests: Iterable[str] | None = None
) -> tuple[list[NewSubscriber], list[RowProblem]]:
    """The people to import and the rejected rows (see ``read_subscribers_csv``)."""
    result = read_subscribers_csv(text, known_sections=known_sections, known_digests=known_digests)
    return result.people, result.problems


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_csv(
    people: Iterable[Subscriber],
    times: Mapping[int, tuple[datetime | None, datetime | None]] | None = None,
) -> str:
    """Subscribers as CSV with ``EXPORT_COLUMNS``, one line per subscriber (white space in a
    value collapsed to single spaces) and every cell neutralised (``neutralise_cell``);
    ``times`` gives each id's created_at and updated_at (missing: left empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for p in people:
        created, updated = (times or {}).get(p.id, (None, None))
        cells = [
            p.email,
            p.name,
            p.status.value,
            join_keys(p.sections),
            join_keys(p.digests),
            p.source,
            _when(created),
            _when(updated),
        ]
        writer.writerow([neutralise_cell(" ".join(c.split())) for c in cells])
    return buf.getvalue()
