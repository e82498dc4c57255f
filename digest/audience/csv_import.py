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
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from digest.audience.addresses import AddressNormaliser, InvalidAddress, normalise_email
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
# Distinct section or digest cells a reader remembers as checked.
_CHOICES = 1_000
# Unicode's control characters (category Cc).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


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
    control = _CONTROL.search(name)
    if control is not None:
        raise InvalidSubscriber(
            f"{email}: the name has a control character (U+{ord(control[0]):04X}); "
            "a name is one line of text"
        )
    if len(name) > MAX_NAME:
        raise InvalidSubscriber(
            f"{email}: the name is longer than {MAX_NAME} characters ({len(name)})"
        )
    return name


def _check(email: str, kind: str, keys: frozenset[str] | None, known: Set[str]) -> None:
    unknown = sorted((keys or frozenset()) - known)
    if unknown:
        raise InvalidSubscriber(
            f"{email}: unknown {kind}(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
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
    _check(address, "section", chosen_sections, set(known_sections))
    if known_digests is not None:
        _check(address, "digest", chosen_digests, set(known_digests))
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


@dataclass(frozen=True, slots=True)
class CsvRow:
    """A data line whose address is valid: the person it lists, or why they are not imported
    (``problem``: the row is rejected; ``skipped``: left out on purpose). Whether an earlier
    line listed the same address is for whoever reads the whole file to say (``first_line``
    of a dictionary in memory, or the store's staging table for a long file)."""

    line: int
    email: str
    key: str  # the address as the store compares it (``email_key``)
    name: str = ""
    sections: frozenset[str] | None = None
    digests: frozenset[str] | None = None
    problem: str = ""
    skipped: str = ""

    @property
    def importable(self) -> bool:
        return not (self.problem or self.skipped)

    def person(self) -> NewSubscriber:
        return NewSubscriber(
            email=self.email, name=self.name, sections=self.sections, digests=self.digests
        )


def listed_twice(row: CsvRow, first: int) -> RowProblem:
    """The problem of a row whose address line ``first`` listed already."""
    return RowProblem(
        row.line, f"{row.email}: listed twice (first on line {first}); only that row is read"
    )


class CsvReader:
    """Reads a subscriber list line by line, holding one line at a time (see the module's
    docstring for the rules). ``rows`` yields, per data line, a ``RowProblem`` (a line that is
    not a row, or a bad address) or a ``CsvRow``; a bad header is one problem and the end.
    ``lines`` counts the data lines read (blank lines and the header not counted)."""

    def __init__(
        self, *, known_sections: Iterable[str], known_digests: Iterable[str] | None = None
    ) -> None:
        self.known_sections = frozenset(known_sections)
        self.known_digests = None if known_digests is None else frozenset(known_digests)
        self.lines = 0
        self._address = AddressNormaliser()
        # A list has few distinct choices: each one's text read and checked once.
        self._choices: dict[tuple[str, str], frozenset[str] | None] = {}

    def _choice(self, email: str, kind: str, text: str) -> frozenset[str] | None:
        """The keys of a ``sections`` or ``digests`` cell, checked (InvalidSubscriber)."""
        try:
            return self._choices[kind, text]
        except KeyError:
            pass
        keys = split_keys(text)
        known = self.known_sections if kind == "section" else self.known_digests
        if known is not None:
            _check(email, kind, keys, known)
        if len(self._choices) < _CHOICES:
            self._choices[kind, text] = keys
        return keys

    def rows(self, lines: Iterable[str]) -> Iterator[CsvRow | RowProblem]:
        """``lines`` are the file's lines in order, each with or without its line break."""
        header: list[str] | None = None
        for line, raw in enumerate(lines, 1):
            if raw.endswith("\n"):
                raw = raw[:-1]
            if line == 1:
                raw = raw.lstrip("\ufeff")
            if not raw.replace(",", "").strip():
                continue  # blank
            if header is None:
                try:
                    header = [f.strip().lower() for f in _fields(raw)]
                except _BadLine as e:
                    yield RowProblem(line, f"the header: {e}")
                    return
                if "email" not in header:
                    yield RowProblem(line, "the header must name an `email` column")
                    return
                continue
            self.lines += 1
            try:
                fields = _fields(raw)
            except _BadLine as e:
                yield RowProblem(line, str(e))
                continue
            if len(fields) != len(header):
                hint = (
                    " (a value with a comma needs double quotes)"
                    if len(fields) > len(header)
                    else ""
                )
                yield RowProblem(
                    line, f"{len(fields)} field(s) where the header has {len(header)}{hint}"
                )
                continue
            yield self._row(dict(zip(header, map(restore_cell, fields), strict=True)), line)
        if header is None:
            yield RowProblem(1, "empty file: the header must name an `email` column")

    def _row(self, row: Mapping[str, str], line: int) -> CsvRow | RowProblem:
        raw = row.get("email", "")
        try:
            email = self._address(raw)
        except InvalidAddress as e:
            return RowProblem(line, f"{e.address!r}: {e.reason}")
        key = email_key(email)
        status_text = row.get("status", "").strip().lower()
        if status_text:
            try:
                status = SubscriberStatus(status_text)
            except ValueError:
                statuses = ", ".join(s.value for s in SubscriberStatus)
                return CsvRow(
                    line,
                    email,
                    key,
                    problem=f"{email}: unknown status {status_text!r} (statuses: {statuses})",
                )
            if status is not SubscriberStatus.ACTIVE:
                return CsvRow(
                    line,
                    email,
                    key,
                    skipped=f"{email}: {status.value} in the file; only active rows import",
                )
        try:
            name = _name(email, row.get("name", ""))
            sections = self._choice(email, "section", row.get("sections", ""))
            digests = self._choice(email, "digest", row.get("digests", ""))
        except InvalidSubscriber as e:
            return CsvRow(line, email, key, problem=str(e))
        return CsvRow(line, email, key, name, sections, digests)


def read_subscribers_csv(
    text: str, *, known_sections: Iterable[str], known_digests: Iterable[str] | None = None
) -> SubscriberList:
    """Read a subscriber list held in memory, one row per line. Line numbers are those of the
    file. (A long file is read line by line: ``digest.steps.imports``.)"""
    reader = CsvReader(known_sections=known_sections, known_digests=known_digests)
    result = SubscriberList()
    lines = _LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()  # the last line's end
    first_line: dict[str, int] = {}
    for item in reader.rows(lines):
        if isinstance(item, RowProblem):
            result.problems.append(item)
            continue
        first = first_line.setdefault(item.key, item.line)
        if first != item.line:
            result.problems.append(listed_twice(item, first))
        elif item.problem:
            result.problems.append(RowProblem(item.line, item.problem))
        elif item.skipped:
            result.skipped.append(RowProblem(item.line, item.skipped))
        else:
            result.people.append(item.person())
    return replace(result, lines=reader.lines)


def parse_subscribers_csv(
    text: str, *, known_sections: Iterable[str], known_digests: Iterable[str] | None = None
) -> tuple[list[NewSubscriber], list[RowProblem]]:
    """The people to import and the rejected rows (see ``read_subscribers_csv``)."""
    result = read_subscribers_csv(text, known_sections=known_sections, known_digests=known_digests)
    return result.people, result.problems


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_lines(
    rows: Iterable[tuple[Subscriber, datetime | None, datetime | None]],
) -> Iterator[str]:
    """Subscribers, each with when it was added and last changed, as lines of CSV with
    ``EXPORT_COLUMNS`` (the header first): one line per subscriber (white space in a value
    collapsed to single spaces), every cell neutralised (``neutralise_cell``). One line at a
    time, so a list of any length is written in bounded memory."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")

    def line(cells: Iterable[str]) -> str:
        buf.seek(0)
        buf.truncate()
        writer.writerow(cells)
        return buf.getvalue()

    yield line(EXPORT_COLUMNS)
    for p, created, updated in rows:
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
        yield line(neutralise_cell(" ".join(c.split())) for c in cells)


def export_csv(
    people: Iterable[Subscriber],
    times: Mapping[int, tuple[datetime | None, datetime | None]] | None = None,
) -> str:
    """``export_lines`` of ``people`` as one text; ``times`` gives each id's created_at and
    updated_at (missing: left empty)."""
    return "".join(export_lines((p, *(times or {}).get(p.id, (None, None))) for p in people))
