"""The normalisers: article ids, canonical URLs, clean titles and sanitised HTML, by example
and as properties over arbitrary input."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.gather.feeds import article_id, canonical_url, clean_title, sanitize_html
from tests.gather import FORBIDDEN


@pytest.mark.parametrize(
    ("guid", "trusted"),
    [
        ("tag:x.example,2025:1", True),
        ("https://x.example/?p=12", True),
        ("0d4f1c6e-7c1a-4a8e-9a61-1d1f3e0b8f6e", True),
        ("", False),
        ("   ", False),
        ("null", False),
        ("1234", False),  # a per-feed counter
        ("abc", False),
        ("https://x.example/", False),  # the home page
        (None, False),
    ],
)
def test_article_id_trusts_only_meaningful_guids(guid: str | None, trusted: bool) -> None:
    canonical = "https://x.example/post"
    by_url = "a" + hashlib.sha256(canonical.encode()).hexdigest()[:20]
    ident = article_id(guid, canonical)
    assert re.fullmatch(r"a[0-9a-f]{20}", ident)
    assert (ident != by_url) is trusted


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://News.Example.ORG/a/b?x=1#top", "https://news.example.org/a/b?x=1"),
        (
            "https://x.example/p?utm_source=a&id=3&UTM_Medium=b&fbclid=c&gclid=d&b=2",
            "https://x.example/p?id=3&b=2",
        ),
        (
            "https://x.example/p?mc_cid=1&mc_eid=2&ref_src=3&_hsenc=4&_hsmi=5&igshid=6",
            "https://x.example/p",
        ),
        ("https://x.example:443/p", "https://x.example/p"),
        ("http://x.example:8080/p", "http://x.example:8080/p"),
        ("https://user:pw@x.example/p", "https://x.example/p"),
        ("https://x.example", "https://x.example/"),
        ("https://[2001:DB8::1]:443/p", "https://[2001:db8::1]/p"),
        ("https://x.example/a%20b?q=a%2Bb", "https://x.example/a%20b?q=a%2Bb"),  # verbatim
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected
    assert canonical_url(expected) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello\n\t <b>world</b>  ", "Hello world"),
        ("AT&amp;T &amp;amp; friends", "AT&T & friends"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;News", "News"),  # script text is not a title
        ("safe<script type='x'>location.href='/'</script > description", "safe description"),
        ("<style>p{}</style>A<!-- note -->B<!DOCTYPE html>C<?php x ?>D", "A B C D"),
        ("safe&lt;!-- an unclosed comment runs to the end", "safe"),
        ("unclosed <script>alert(1)", "unclosed"),
        ("Cafe\u0301", "Café"),
        ("a < b > c", "a < b > c"),
        ("\x00\x1b[31mred\x9b", "[31mred"),
    ],
)
def test_clean_title(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected


def test_sanitize_html_allow_list() -> None:
    html = (
        '<div class="x"><h1>Big</h1><h2 style="color:red">Sub</h2>'
        '<p>A <a href="/rel" title="t" target="_blank">link</a>, '
        '<a href="mailto:e@x.example">mail</a>, <a href="data:text/html,x">data</a>'
        '<img src="//cdn.example/i.png" onerror="x()"></p><table><tr><td>cell</td></tr></table>'
        "<style>p{}</style><!-- c --></div>"
    )
    assert sanitize_html(html, "https://x.example/post/") == (
        'Big<h2>Sub</h2><p>A <a href="https://x.example/rel" title="t" rel="noopener noreferrer">'
        'link</a>, <a href="mailto:e@x.example" rel="noopener noreferrer">mail</a>, '
        '<a rel="noopener noreferrer">data</a><img src="https://cdn.example/i.png"></p>cell'
    )


def test_sanitize_html_drops_relative_urls_without_an_http_base() -> None:
    assert sanitize_html('<a href="/x">x</a>', "file:///feeds/a.xml") == (
        '<a rel="noopener noreferrer">x</a>'
    )
    assert sanitize_html("", None) == ""


# Properties -----------------------------------------------------------------------------------
@given(st.text())
@settings(max_examples=300)
def test_clean_title_properties(text: str) -> None:
    cleaned = clean_title(text)
    assert clean_title(cleaned) == cleaned
    assert not FORBIDDEN.search(cleaned)
    assert unicodedata.is_normalized("NFC", cleaned)
    assert cleaned == cleaned.strip()


_PART = st.text(alphabet="abcXYZ019-._~%+=&;:@!$'()*", max_size=8)
_URLS = st.builds(
    lambda scheme, host, port, path, query, frag: (
        f"{scheme}://{host}{port}/{path}" + (f"?{query}" if query else "") + frag
    ),
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    st.from_regex(r"[A-Za-z0-9]{1,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    _PART,
    st.lists(
        st.tuples(
            st.sampled_from(["utm_source", "UTM_campaign", "fbclid", "id", "page", "x", ""]),
            _PART,
        ),
        max_size=5,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    st.sampled_from(["", "#frag", "#"]),
)


@given(_URLS)
def test_canonical_url_properties(url: str) -> None:
    canonical = canonical_url(url)
    assert canonical_url(canonical) == canonical
    assert "utm_" not in canonical.split("?", 1)[-1].lower() or "?" not in canonical
    assert "#" not in canonical
