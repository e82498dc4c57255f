"""JSON Feed (1.0, 1.1) → articles: a fixture written for these tests, recognition, bad
JSON, bad bytes, untitled items, and documents of any shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import FeedError
from digest.gather.feeds import ParsedFeed, article_id, parse_feed
from tests.gather import FORBIDDEN, NOW, parse

JSON_URL = "https://lantern.example.org/feed.json"


def parse_json(document: object, content_type: str | None = None) -> ParsedFeed:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_feed(body, source="test", url=JSON_URL, now=NOW, content_type=content_type)


def test_json_feed_11_items_become_articles_like_rss_entries() -> None:
    feed = parse("jsonfeed_11.json", JSON_URL, content_type="application/feed+json")
    assert feed.title == "The Lantern Quarterly & Friends"
    assert len(feed.articles) == 3
    first = feed.articles[0]
    # The item id is the guid; relative URLs resolve against the feed; tracking params go.
    assert first.guid == "tag:lantern.example.org,2025:tidal-power"
    assert first.id == article_id(first.guid, first.url)
    assert first.url == "https://lantern.example.org/2025/02/tidal-power?page=2"
    assert first.title == "Tidal power gets a second look"  # bidi override gone
    assert first.authors == ("Ines Marlow", "Kofi Brandt")  # an author without a name is skipped
    assert first.categories == ("Energy", "Coasts")  # duplicate and non-string tags dropped
    assert first.published == datetime(2025, 2, 10, 8, 30, tzinfo=UTC)  # +01:00 → UTC
    assert first.updated == datetime(2025, 2, 11, 8, 0, tzinfo=UTC)
    assert first.summary_html == "Why the &lt;estuary&gt; matters &amp; who pays."  # plain text
    assert first.content_html == (
        "<p>Engineers return to the estuary.</p>"
        '<img src="https://lantern.example.org/img/estuary.jpg" alt="The estuary at low tide">'
    )
    assert first.image is not None
    assert (first.image.url, first.image.alt) == (
        "https://img.lantern.example.org/estuary-large.jpg",
        "Tidal power gets a second look",
    )


def test_json_feed_untitled_link_post_with_text_content() -> None:
    second = parse("jsonfeed_11.json", JSON_URL).articles[1]
    assert second.guid == "20250212"  # a numeric id is coerced to a string (and not trusted)
    assert second.id == article_id(None, "https://elsewhere.example.net/report")
    assert second.url == "https://elsewhere.example.net/report"  # external_url, lacking url
    # No title: the opening words of the text, cut at a word boundary.
    assert second.title == (
        "A report worth reading on harbour dredging, the silt it moves and the fish it…"
    )
    assert second.content_html == (
        "<p>A report worth reading on harbour dredging, the silt it moves and the fish it harms,"
        " with maps.</p><p>Second paragraph &lt;b&gt;not bold&lt;/b&gt;.<br>Same paragraph.</p>"
    )
    assert second.authors == ("Lantern Desk",)  # 1.1: the feed's authors, lacking its own
    assert second.published == datetime(2025, 2, 12, 12, 0, tzinfo=UTC)
    assert second.image is not None
    assert second.image.url == "https://img.lantern.example.org/dredging-banner.jpg"
    assert second.image.alt == second.title


def test_json_feed_attachments_undated_and_unusable_items() -> None:
    feed = parse("jsonfeed_11.json", JSON_URL)
    third = feed.articles[2]
    assert third.published == NOW
    assert third.image is not None
    assert third.image.url == "https://img.lantern.example.org/note.png"  # an image attachment
    assert any("entry 4 skipped (neither a link nor a title)" in w for w in feed.warnings)
    assert any("entry 5 skipped (not an object)" in w for w in feed.warnings)
    assert any("1 entry without a date" in w for w in feed.warnings)


def test_json_feed_10_author_and_dates() -> None:
    feed = parse("jsonfeed_10.json", JSON_URL)
    assert feed.title == "Old Harbour Log"
    ice, thaw = feed.articles
    assert ice.authors == ("Night Watch",)  # 1.0's single author object
    assert thaw.authors == ("Harbour Master",)  # inherited from the feed
    assert ice.url == ice.guid == "https://log.example.org/2025/01/ice"
    assert ice.published == datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
    assert thaw.published == datetime(2025, 1, 16, 8, 0, tzinfo=UTC)  # RFC 822, tolerated
    assert thaw.content_html == "<p>It thawed.</p>"
    assert feed.warnings == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'  \n\t{"version": "https://jsonfeed.org/version/1.1", "items": []}', None),
        (b'\xef\xbb\xbf{"version": "https://jsonfeed.org/version/1", "items": []}', "text/html"),
        ('{"version": "https://jsonfeed.org/version/1.1", "items": []}'.encode("utf-16"), None),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "application/xml"),
    ],
)
def test_json_is_recognised_by_its_first_character(body: bytes, content_type: str | None) -> None:
    feed = parse_feed(body, source="t", url=JSON_URL, now=NOW, content_type=content_type)
    assert (feed.title, feed.articles, feed.warnings) == ("", [], [])


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', None, "malformed JSON"),
        (b"[1, 2]", "application/feed+json", "not a JSON Feed"),
        (b"nonsense", "application/json", "malformed JSON"),
        (b'{"title": "no version", "items": []}', None, "not a JSON Feed"),
        (b'{"version": "https://example.org/version/1", "items": []}', None, "not a JSON Feed"),
        (b'{"version": 1.1, "items": []}', None, "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', None, "items"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', None, "items"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", None, "malformed JSON"),  # int longer than allowed
    ],
)
def test_bad_json_is_a_feed_error_naming_source_and_url(
    body: bytes, content_type: str | None, reason: str
) -> None:
    with pytest.raises(FeedError) as info:
        parse_feed(body, source="json", url=JSON_URL, now=NOW, content_type=content_type)
    assert info.value.message.startswith(f"feed 'json' ({JSON_URL}): ")
    assert reason in info.value.message


def test_json_feed_bad_bytes_and_lone_surrogates_do_not_cost_the_item() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "odd-bytes-1", '
        b'"url": "https://x.example/a", "title": "Bad \xff byte \\ud800 here", '
        b'"content_html": "<p>half \\udc00 a pair</p>"}]}'
    )
    feed = parse_json(body)
    (article,) = feed.articles
    assert article.title == "Bad \ufffd byte \ufffd here"
    assert article.content_html == "<p>half \ufffd a pair</p>"
    assert any("not valid utf-8" in w for w in feed.warnings)


def test_json_feed_legacy_charset_from_the_content_type() -> None:
    body = '{"version": "https://jsonfeed.org/version/1", "title": "Été", "items": []}'
    feed = parse_json(body.encode("latin-1"), "application/json; charset=iso-8859-1")
    assert (feed.title, feed.warnings) == ("Été", [])


def test_json_untitled_item_title_never_splits_a_grapheme() -> None:
    # No spaces: cut at the limit, moved back before "q" and its accent (no precomposed form).
    text = "漢" * 79 + "q\u0301" + "字" * 30
    feed = parse_json(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [{"id": "cjk-item-1", "url": "https://x.example/c", "content_text": text}],
        }
    )
    assert feed.articles[0].title == "漢" * 79 + "…"


def test_json_untitled_item_ignores_script_text() -> None:
    html_only = "<script>alert('x')</script><p>Real words</p>"
    feed = parse_json(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [
                {"id": "html-item-1", "url": "https://x.example/h", "content_html": html_only}
            ],
        }
    )
    assert feed.articles[0].title == "Real words"


# Properties -----------------------------------------------------------------------------------
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_ITEM_FIELDS = st.sampled_from(
    ["id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
     "banner_image", "date_published", "date_modified", "author", "authors", "tags",
     "attachments"]
)  # fmt: skip


@given(
    st.dictionaries(st.sampled_from(["title", "home_page_url", "author", "authors"]), _JSON_VALUES),
    st.lists(st.dictionaries(_ITEM_FIELDS, _JSON_VALUES | st.text(max_size=40)), max_size=4),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_json_feed_of_any_shape_gives_articles_or_feed_error(
    top: dict[str, object], items: list[dict[str, object]]
) -> None:
    document = {**top, "version": "https://jsonfeed.org/version/1.1", "items": items}
    try:
        feed = parse_json(json.dumps(document).encode())
    except FeedError:
        return
    for a in feed.articles:
        assert a.id and a.published.tzinfo is not None and not FORBIDDEN.search(a.title)
