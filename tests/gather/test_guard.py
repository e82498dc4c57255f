"""Hostile XML (internal DTD subsets, ENTITY declarations) is refused before any parser sees
it, in every encoding a parser could read, quickly and in bounded memory."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from digest.errors import FeedError
from digest.gather.feeds import parse_feed
from tests.gather import DATA, NOW, parse

REFUSED = "DOCTYPE with internal subset / ENTITY declarations refused"


@pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml"])
def test_entity_declarations_are_refused(name: str) -> None:
    url = f"https://feeds.example.org/{name}"
    with pytest.raises(FeedError) as info:
        parse(name, url)
    assert info.value.message == f"feed 'test' ({url}): {REFUSED}"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_entity_declarations_are_refused_in_utf16_and_utf32(encoding: str) -> None:
    text = (DATA / "billion_laughs.xml").read_text("utf-8")
    text = text.replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{encoding}"?>')
    with pytest.raises(FeedError, match=REFUSED):
        parse_feed(text.encode(encoding), source="test", url="https://x.example/f", now=NOW)


def test_entity_declarations_are_refused_in_utf7() -> None:
    # UTF-7 hides "<" as "+ADw-": only the decoded view that feedparser parses shows it.
    hidden = '<!DOCTYPE rss [<!ENTITY a "aaaa">]>'.replace("<", "+ADw-").replace("!", "+ACE-")
    body = (
        '<?xml version="1.0" encoding="utf-7"?>'
        + hidden
        + "<rss><channel><title>&a;</title></channel></rss>"
    ).encode("ascii")
    assert b"<!ENTITY" not in body.replace(b"\x00", b"")
    assert "<!ENTITY" in body.decode("utf-7")
    with pytest.raises(FeedError, match=REFUSED):
        parse_feed(body, source="test", url="https://x.example/f", now=NOW)


def test_entity_declarations_after_a_long_prolog_are_refused() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!--' + b"x" * 100_000 + b"-->\n"
        b'<!DOCTYPE rss [<!ENTITY a "b">]><rss><channel><title>&a;</title></channel></rss>'
    )
    with pytest.raises(FeedError, match=REFUSED):
        parse_feed(body, source="test", url="https://x.example/f", now=NOW)


def refused_quickly_in_bounded_memory(body: bytes) -> None:
    """``body`` is refused before parsing: within 1 s, allocating less than 4× its size."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(FeedError, match=REFUSED):
            parse_feed(body, source="test", url="https://x.example/f", now=NOW)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 4 * len(body) + 2_000_000


def test_billion_laughs_is_refused_quickly_in_bounded_memory() -> None:
    # Ten levels of ten: 10**10 "lol"s (30 GB) if anything expanded it.
    refused_quickly_in_bounded_memory((DATA / "billion_laughs.xml").read_bytes())


def test_quadratic_blowup_is_refused_quickly_in_bounded_memory() -> None:
    # No nesting to spot: one 100 KB entity referenced 20,000 times, 2 GB once expanded, from
    # a 180 KB document.
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + b"x" * 100_000 + b'">]>'
        b'<rss version="2.0"><channel><title>t</title><item><title>'
        + b"&a;" * 20_000
        + b"</title><link>https://x.example/a</link></item></channel></rss>"
    )
    refused_quickly_in_bounded_memory(body)
