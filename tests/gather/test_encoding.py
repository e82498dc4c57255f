"""``_convert_to_utf8`` against feedparser's ``convert_to_utf8``: the same bytes, the same result.

The inputs: the feedparser test corpus (its encoding cases above all) and the real feeds, each
under the Content-Types that decide differently (none, an XML type without and with charsets,
a text type), and bodies made to hit each way out of the shortcut (a BOM, invalid UTF-8 after
the first line, an ``encoding=`` further along a long first line, UTF-16, no newline).
"""

from __future__ import annotations

import codecs
from typing import Any

import feedparser
import pytest

from digest.gather.feeds.encoding import _convert_to_utf8
from tests.conftest import CORPORA

CONTENT_TYPES = (
    None,
    "application/xml",
    "application/rss+xml; charset=utf-8",
    "application/xml; charset=UTF8",
    "application/xml; charset=iso-8859-1",
    "application/xml; charset=bogus",
    "text/xml",
    "text/xml; charset=utf-8",
    "text/html",
)


def same(body: bytes, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    expected: dict[str, Any] = {}
    want = feedparser.encodings.convert_to_utf8(dict(headers), body, expected)
    got: dict[str, Any] = {}
    assert _convert_to_utf8(dict(headers), body, got) == want
    # Exceptions compare by identity: compare what they say.
    assert {k: repr(v) for k, v in got.items()} == {k: repr(v) for k, v in expected.items()}


MADE = {
    "plain": (
        b'<?xml version="1.0" encoding="utf-8"?>\n<rss><c>caf\xc3\xa9 \xf0\x9f\xa5\x91</c></rss>'
    ),
    "no declaration": b"<rss>\n<c>caf\xc3\xa9</c></rss>",
    "declared latin-1": b'<?xml version="1.0" encoding="iso-8859-1"?>\n<rss>caf\xe9</rss>',
    "invalid after line one": b'<?xml version="1.0"?>\n<rss>caf\xe9</rss>',
    "truncated sequence at the end": b'<?xml version="1.0"?>\n<rss>\xf0\x9f\xa5',
    "encoding further along line one": (
        b'<?xml version="1.0"?><rss><x a="?>" encoding="latin-1"?></x>\n<y>\xe9</y></rss>'
    ),
    "utf-8 bom": codecs.BOM_UTF8 + b'<?xml version="1.0"?>\n<rss>caf\xc3\xa9</rss>',
    "utf-16": codecs.BOM_UTF16_LE + '<?xml version="1.0"?>\n<rss>é</rss>'.encode("utf-16-le"),
    "utf-16 without bom": '<?xml version="1.0"?>\n<rss>é</rss>'.encode("utf-16-be"),
    "one line": b'<?xml version="1.0"?><rss>caf\xc3\xa9</rss>',
    "declaration over two lines": b'<?xml version="1.0"\n encoding="utf-8"?>\n<rss>\xc3\xa9</rss>',
    "surrogate": b'<?xml version="1.0"?>\n<rss>\xed\xa0\x80</rss>',
    "nul": b'<?xml version="1.0"?>\n<rss>\x00</rss>',
}


@pytest.mark.parametrize("name", sorted(MADE))
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_made_bodies(name: str, content_type: str | None) -> None:
    same(MADE[name], content_type)


def test_long_bodies_are_checked_past_the_first_chunk() -> None:
    # Invalid UTF-8 only after several validation chunks, and a character split across two.
    head = b'<?xml version="1.0"?>\n<rss>'
    filler = "\U0001f951".encode() * 200_000
    same(head + filler + b"\xff</rss>", "application/xml")
    same(head + b"a" + filler + b"</rss>", "application/xml")


@pytest.mark.parametrize("corpus", ["feedparser-tests", "realfeeds"])
def test_corpora(corpus: str) -> None:
    folder = CORPORA / corpus
    if not folder.is_dir():
        pytest.skip(f"corpus not found at {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "LICENSE")
    for path in files:
        body = path.read_bytes()
        for content_type in (None, "application/xml", "text/xml"):
            same(body, content_type)
