"""Subscriber lists as CSV, in and out; bad rows are reported with their line, never guessed.

Import reads a header that names ``email`` and, optionally, ``name``, ``sections`` and
``digests`` (keys separated by ``;``; empty means every section or every digest). Export writes
``email,name,status,sections,digests,source,created_at,updated_at``, which import reads back:
of an export's rows only the active ones are imported, since an import adds people as active and
must never turn someone who left into a subscriber again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digest.audience.addresses import InvalidAddress, normalise_email
from digest.models import NewSubscriber, Subscriber, SubscriberStatus

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
    """A subscriber checked as an import checks each row: a valid address, section and digest
    keys the configuration knows (no keys: every one). ``known_digests`` None: not checked.
    Raises InvalidSubscriber."""
    address = _address(email)
    chosen_sections, chosen_digests = _keys(sections), _keys(digests)
    _check(address, "section", chosen_sections, known_sections)
    if known_digests is not None:
        _check(address, "digest", chosen_digests, known_digests)
    return NewSubscriber(
        email=address,
        name=" ".join(name.split()),
        sections=chosen_sections,
        digests=chosen_digests,
    )


def read_subscribers_csv(
    text: str, *, known_sections: Iterable[str], known_digests: Iterable[str] | None = None
) -> SubscriberList:
    """Read a subscriber list. Line numbers are those of the file (a row's first line)."""
    known_s, known_d = set(known_sections), None if known_digests is None else set(known_digests)
    result = SubscriberList()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header: list[str] | None = None
    first_line: dict[str, int] = {}
    end = 0
    try:
        for fields in reader:
            line, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                if "email" not in header:
                    result.problems.append(
                        RowProblem(line, "the header must name an `email` column")
                    )
                    return result
                continue
            if len(fields) > len(header):
                result.problems.append(
                    RowProblem(
                        line,
                        f"{len(fields)} fields where the header has {len(header)} "
                        "(a value with a comma needs double quotes)",
                    )
                )
                continue
            _read_row(
                dict(zip(header, fields, strict=False)), line, known_s, known_d, first_line, result
            )
    except csv.Error as e:
        result.problems.append(RowProblem(reader.line_num, f"not valid CSV: {e}"))
    if header is None and not result.problems:
        result.problems.append(RowProblem(1, "empty file: the header must name an `email` column"))
    return result


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
    first = first_line.setdefault(email.lower(), line)
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
    """Subscribers as CSV with ``EXPORT_COLUMNS``; ``times`` gives each id's created_at and
    updated_at (missing: left empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for p in people:
        created, updated = (times or {}).get(p.id, (None, None))
        writer.writerow(
            [
                p.email,
                p.name,
                p.status.value,
                join_keys(p.sections),
                join_keys(p.digests),
                p.source,
                _when(created),
                _when(updated),
            ]
        )
    return buf.getvalue()
