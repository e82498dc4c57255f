"""The lxml fast path of ``parse_feed`` against feedparser: the same articles, or a refusal.

For every input, ``parse_feed(..., fast=True)`` must equal ``parse_feed(..., fast=False)``
(title, articles and warnings; or the same ``FeedError``), whether or not the fast path took
the feed. The inputs: the feedparser test corpus (about 2,100 files, each with the
Content-Type its ``Header:`` lines declare), the sample and test feeds, the benchmark's
generated feeds and a few hundred hypothesis-made RSS 2.0 and Atom feeds with the things real
feeds vary in (missing fields, several authors and categories, CDATA or escaped HTML,
relative links, odd whitespace, non-ASCII, mis-decoded UTF-8, odd dates).

The fast path must also apply where it is meant to: to every sample feed, every generated
benchmark feed and most generated feeds, so that a silent decline cannot make it useless.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import FeedError
from digest.gather.feeds import ParsedFeed, _xml_content_type, parse_feed
from digest.gather.feeds.fastpath import _fast_parse
from digest.gather.feeds.jsonfeed import _is_json
from digest.gather.feeds.normalise import _is_http

PROJECT = Path(__file__).resolve().parents[2]
CORPUS = PROJECT.parent / "shared" / "corpora" / "feedparser-tests"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HEADER_LINE = re.compile(rb"^Header:\s*([A-Za-z0-9-]+):[ \t]*(.*?)\s*$", re.MULTILINE)


def both(
    body: bytes, url: str, content_type: str | None
) -> tuple[ParsedFeed | str, ParsedFeed | str, bool]:
    """(fast result, feedparser result, whether the fast path took the feed)."""

    def run(fast: bool) -> ParsedFeed | str:
        try:
            return parse_feed(
                body, source="s", url=url, now=NOW, content_type=content_type, fast=fast
            )
        except FeedError as e:
            return f"FeedError: {e}"

    applied = False
    if not _is_json(body, content_type):
        headers = {"content-type": _xml_content_type(content_type, body)}
        if _is_http(url):
            headers["content-location"] = url
        applied = _fast_parse(body, headers, url) is not None
    return run(True), run(False), applied


def content_type_of(body: bytes) -> str | None:
    head = body[:8192].replace(b"\x00", b"")
    for name, value in HEADER_LINE.findall(head):
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return None


def test_corpus_gives_the_same_articles_either_way() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser test corpus not found at {CORPUS}")
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")
    applied, different = 0, []
    for path in files:
        body = path.read_bytes()
        url = "http://127.0.0.1:8000/" + path.relative_to(CORPUS).as_posix()
        fast, slow, took = both(body, url, content_type_of(body))
        applied += took
        if fast != slow:
            different.append(str(path.relative_to(CORPUS)))
    assert not different, f"{len(different)} corpus files differ: {different[:20]}"
    # About a third of the corpus (its RSS 2.0 and Atom 1.0 files without exotica) is taken;
    # a much smaller share means the fast path has started to decline what it should not.
    assert applied >= 600, f"fast path applied to only {applied} of {len(files)} files"


SAMPLES = sorted(
    p
    for folder in (PROJECT / "config" / "sample", PROJECT / "tests" / "data" / "feeds")
    for p in folder.iterdir()
    if p.suffix in (".xml", ".atom", ".json")
)
# Test feeds that the fast path leaves to feedparser on purpose.
DECLINED = {
    "atom.xml": "xml:base",
    "billion_laughs.xml": "refused before any parser",
    "external_entity.xml": "refused before any parser",
    "bozo_with_entries.xml": "not well-formed",
    "malformed.xml": "not well-formed",
    "rss091.xml": "RSS 0.91",
    "jsonfeed_10.json": "JSON Feed",
    "jsonfeed_11.json": "JSON Feed",
}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_and_test_feeds(path: Path) -> None:
    content_type = "application/json" if path.suffix == ".json" else "application/rss+xml"
    fast, slow, took = both(path.read_bytes(), "https://example.org/feed", content_type)
    assert fast == slow
    assert took == (path.name not in DECLINED)


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gather", PROJECT / "bench" / "gather.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_feeds_take_the_fast_path_with_the_same_articles() -> None:
    bench = load_bench()
    for n in range(0, 200, 25):  # RSS and Atom, with and without full content
        body = bench.make_feed(n)
        fast, slow, took = both(body, f"http://127.0.0.1:1/feed/{n}.xml", "application/xml")
        assert took, n
        assert fast == slow, n
        assert isinstance(fast, ParsedFeed) and fast.articles


# --------------------------------------------------------------------------------------------
# Generated feeds
TEXT = st.sampled_from(
    [
        "Talks resume",
        "  Talks\n\tresume  ",
        "Caf\u00e9 & cr\u00e8me",
        "\u4f1a\u8c08\u6062\u590d",
        "Caf\u00c3\u00a9",  # UTF-8 read as Latin-1: feedparser repairs it
        "\u0093Quoted\u0094 \u0080",  # C1 controls meant as windows-1252
        "A <b>bold</b> move",
        "Less < more",
        "Tom &amp; Jerry",
        "&lt;i&gt;escaped&lt;/i&gt;",
        "",
        " ",
        "x",
    ]
)
LINKS = st.sampled_from(
    [
        "https://news.example.org/a/1?utm_source=rss&ref=feed",
        "/relative/path",
        "relative",
        "HTTPS://News.Example.org:443/b#frag",
        "javascript:alert(1)",
        "mailto:desk@example.org",
        "",
        "  https://news.example.org/spaced  ",
        "https://news.example.org/q?a=1&b=2",
    ]
)
DATES = st.sampled_from(
    [
        "Fri, 01 Nov 2024 10:00:00 +0000",
        "Fri, 1 Nov 2024 10:00:00 GMT",
        "01 Nov 2024 10:00 EST",
        "2024-11-01T10:00:00Z",
        "2024-11-01T10:00:00+02:00",
        "2024-11-01",
        "not a date",
        "",
        "Mon, 31 Feb 2024 10:00:00 +0000",
    ]
)
HTML = st.sampled_from(
    [
        "<p>Para one.</p><p>Two <a href='/rel'>link</a></p>",
        "<p>Image <img src='https://img.example.org/1.jpg' alt='Alt'></p>",
        "Plain text & more",
        "<script>alert(1)</script><p>ok</p>",
        "",
        "  <p>\u00e9t\u00e9</p>  ",
    ]
)


def text_node(value: str, cdata: bool) -> str:
    if cdata and "]]>" not in value:
        return f"<![CDATA[{value}]]>"
    return escape(value)


@st.composite
def rss_items(draw: st.DrawFn) -> str:
    parts: list[str] = []
    cdata = draw(st.booleans())
    if draw(st.booleans()):
        parts.append(f"<title>{text_node(draw(TEXT), cdata)}</title>")
    for _ in range(draw(st.integers(0, 2))):
        parts.append(f"<link>{escape(draw(LINKS))}</link>")
    if draw(st.booleans()):
        permalink = draw(st.sampled_from(["", ' isPermaLink="false"', ' isPermaLink="true"']))
        guid = draw(st.sampled_from(["guid-123456", "1234", draw(LINKS)]))
        parts.append(f"<guid{permalink}>{escape(guid)}</guid>")
    if draw(st.booleans()):
        parts.append(f"<pubDate>{escape(draw(DATES))}</pubDate>")
    if draw(st.booleans()):
        parts.append(f"<dc:date>{escape(draw(DATES))}</dc:date>")
    for _ in range(draw(st.integers(0, 3))):
        who = draw(st.sampled_from(["Ann Lee", "ann@example.org (Ann Lee)", "bob@example.org", ""]))
        tag = draw(st.sampled_from(["author", "dc:creator"]))
        parts.append(f"<{tag}>{escape(who)}</{tag}>")
    for _ in range(draw(st.integers(0, 3))):
        domain = draw(st.sampled_from(["", ' domain="https://example.org/tax"']))
        parts.append(f"<category{domain}>{escape(draw(TEXT))}</category>")
    if draw(st.booleans()):
        parts.append(f"<description>{text_node(draw(HTML), cdata)}</description>")
    if draw(st.booleans()):
        parts.append(f"<content:encoded>{text_node(draw(HTML), cdata)}</content:encoded>")
    if draw(st.booleans()):
        parts.append(
            f'<media:content url={quoteattr(draw(LINKS))} medium="image" width="640">'
            f"<media:description>{escape(draw(TEXT))}</media:description>"
            f"<media:credit>{escape(draw(TEXT))}</media:credit>"
            f"<media:title>{escape(draw(TEXT))}</media:title></media:content>"
        )
    if draw(st.booleans()):
        parts.append(f'<media:thumbnail url={quoteattr(draw(LINKS))} height="90"/>')
    if draw(st.booleans()):
        scheme = draw(st.sampled_from(["", ' scheme="urn:x"', ' label="L"']))
        parts.append(
            f"<media:group><media:category{scheme}>{escape(draw(TEXT))}</media:category>"
            f"<media:credit>{escape(draw(TEXT))}</media:credit></media:group>"
        )
    if draw(st.booleans()):
        parts.append(f'<enclosure url={quoteattr(draw(LINKS))} type="image/JPEG" length="1"/>')
    if draw(st.booleans()):
        parts.append("<comments>https://example.org/c</comments><slash:comments>3</slash:comments>")
    order = draw(st.permutations(range(len(parts))))
    return "<item>" + "".join(parts[i] for i in order) + "</item>"


@st.composite
def atom_entries(draw: st.DrawFn) -> str:
    parts: list[str] = []
    kind = draw(st.sampled_from(["", ' type="text"', ' type="html"']))
    if draw(st.booleans()):
        parts.append(f"<title{kind}>{escape(draw(TEXT))}</title>")
    for _ in range(draw(st.integers(0, 2))):
        rel = draw(st.sampled_from(["", ' rel="alternate"', ' rel="enclosure" type="image/png"']))
        parts.append(f"<link{rel} href={quoteattr(draw(LINKS))}/>")
    if draw(st.booleans()):
        parts.append(
            f"<id>{escape(draw(st.sampled_from(['tag:example.org,2024:1', draw(LINKS)])))}</id>"
        )
    for tag in ("published", "updated"):
        if draw(st.booleans()):
            parts.append(f"<{tag}>{escape(draw(DATES))}</{tag}>")
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["Ann Lee", " Bob ", "\u00c9mile"]))
        email = draw(st.sampled_from(["", "<email>a@example.org</email>"]))
        parts.append(f"<author><name>{escape(name)}</name>{email}</author>")
    for _ in range(draw(st.integers(0, 3))):
        parts.append(f"<category term={quoteattr(draw(TEXT))}/>")
    if draw(st.booleans()):
        parts.append(f'<summary type="html">{escape(draw(HTML))}</summary>')
    if draw(st.booleans()):
        parts.append(f"<content{kind}>{escape(draw(HTML))}</content>")
    if draw(st.booleans()):
        parts.append(f'<media:content url={quoteattr(draw(LINKS))} type="image/jpeg"/>')
    order = draw(st.permutations(range(len(parts))))
    return "<entry>" + "".join(parts[i] for i in order) + "</entry>"


RSS_HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    'xmlns:slash="http://purl.org/rss/1.0/modules/slash/" '
    'xmlns:atom="http://www.w3.org/2005/Atom" '
    'xmlns:media="http://search.yahoo.com/mrss/"><channel>'
    "<title>Feed &amp; co</title><link>https://example.org/</link>"
    '<atom:link rel="self" href="https://example.org/feed"/>'
)
ATOM_HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
    'xmlns:media="http://search.yahoo.com/mrss/"><title>Atom feed</title>'
    '<id>https://example.org/</id><link rel="alternate" href="https://example.org/"/>'
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(rss_items(), max_size=4), url=st.sampled_from(["https://example.org/f", "x"]))
def test_generated_rss_gives_the_same_articles_either_way(items: list[str], url: str) -> None:
    body = (RSS_HEAD + "".join(items) + "</channel></rss>").encode()
    fast, slow, took = both(body, url, "application/rss+xml")
    assert took
    assert fast == slow


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(atom_entries(), max_size=4))
def test_generated_atom_gives_the_same_articles_either_way(entries: list[str]) -> None:
    body = (ATOM_HEAD + "".join(entries) + "</feed>").encode()
    fast, slow, took = both(body, "https://example.org/atom", "application/atom+xml")
    assert took
    assert fast == slow


def rss(item: bytes, version: bytes = b"2.0", namespaces: bytes = b"") -> bytes:
    return b'<rss version="%s"%s><channel><item>%s</item></channel></rss>' % (
        version,
        namespaces,
        item,
    )


def atom(entry: bytes) -> bytes:
    return b'<feed xmlns="http://www.w3.org/2005/Atom"><entry>%s</entry></feed>' % entry


XHTML_TITLE = b'<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">t</div></title>'
ITUNES = b' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'
LATIN1 = b'<?xml version="1.0" encoding="iso-8859-1"?>'


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (rss(b"<title>t</title>", version=b"0.92"), "RSS 0.92"),
        (rss(b"<title>&nbsp;</title>"), "an HTML entity lxml rejects"),
        (rss(b'<link xml:base="http://a/">b</link>'), "xml:base"),
        (atom(XHTML_TITLE), "XHTML text"),
        (rss(b'<source url="http://a/">S</source>'), "source"),
        (atom(b'<content type="image/png">AAAA</content>'), "base64 content"),
        (rss(b"<itunes:author>A</itunes:author>", namespaces=ITUNES), "an unhandled element"),
        (rss(b"<description>a</description><description>b</description>"), "a 2nd summary"),
        (LATIN1 + rss(b"<title>\xe9\xff\xfe</title>"), "charset disagreement"),
    ],
)
def test_unusual_feeds_are_left_to_feedparser(body: bytes, why: str) -> None:
    fast, slow, took = both(body, "https://example.org/feed", "text/html; charset=utf-8")
    assert fast == slow
    assert not took, why
