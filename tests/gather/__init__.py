"""Gather tests. The test feeds, a fixed fetch time and ``parse`` here are shared by the feed
test files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from digest.gather.feeds import ParsedFeed, parse_feed

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def parse(name: str, url: str | None = None, **kw: object) -> ParsedFeed:
    url = url or f"https://feeds.example.org/{name}"
    return parse_feed((DATA / name).read_bytes(), source="test", url=url, now=NOW, **kw)  # type: ignore[arg-type]
