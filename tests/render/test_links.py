"""UTM parameters (added once, never overriding, query and fragment kept) and the CMS width
parameter on images (set once, replacing, everything else kept)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from digest.render.links import add_utm, with_width

UTM = {"source": "meridian", "campaign": "weekly-2026-W17", "content": "qiosk-2"}


def test_adds_all_four() -> None:
    assert add_utm("https://x.org/a", **UTM) == (
        "https://x.org/a?utm_source=meridian&utm_medium=email&utm_campaign=weekly-2026-W17"
        "&utm_content=qiosk-2"
    )


def test_keeps_query_and_fragment() -> None:
    out = add_utm("https://x.org/a?b=1&c=%20x#frag", **UTM)
    assert out.startswith("https://x.org/a?b=1&c=%20x&utm_source=meridian&")
    assert out.endswith("&utm_content=qiosk-2#frag")


def test_existing_utm_wins() -> None:
    out = add_utm("https://x.org/?utm_source=partner&utm_campaign=spring", **UTM)
    params = dict(parse_qsl(urlsplit(out).query))
    assert params["utm_source"] == "partner"
    assert params["utm_campaign"] == "spring"
    assert params["utm_medium"] == "email"
    assert params["utm_content"] == "qiosk-2"


def test_non_web_urls_unchanged() -> None:
    for url in ("mailto:a@b.org", "/relative", "javascript:alert(1)", ""):
        assert add_utm(url, **UTM) == url


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.from_regex(r"[a-z]{1,10}\.(org|com|example)", fullmatch=True))
    path = "/" + "/".join(draw(st.lists(st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True))))
    params = draw(st.lists(st.tuples(_key, _text), max_size=4))
    fragment = draw(st.one_of(st.just(""), st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True)))
    url = f"{scheme}://{host}{path}"
    if params:
        url += "?" + urlencode(params)
    if fragment:
        url += "#" + fragment
    return url


@given(urls(), _key, _key)
def test_property_idempotent_and_preserving(url: str, campaign: str, content: str) -> None:
    once = add_utm(url, source="s", campaign=campaign, content=content)
    assert add_utm(once, source="s", campaign=campaign, content=content) == once
    # A second call with other values changes nothing either: existing utm_* win.
    assert add_utm(once, source="other", campaign="c2", content="x-9") == once
    before, after = urlsplit(url), urlsplit(once)
    assert (after.scheme, after.netloc, after.path, after.fragment) == (
        before.scheme,
        before.netloc,
        before.path,
        before.fragment,
    )
    original = parse_qsl(before.query, keep_blank_values=True)
    result = parse_qsl(after.query, keep_blank_values=True)
    assert result[: len(original)] == original
    keys = [k for k, _ in result]
    for key in ("utm_source", "utm_medium", "utm_campaign", "utm_content"):
        assert key in keys
        if key not in dict(original):
            assert keys.count(key) == 1


# The CMS's width parameter on images ----------------------------------------------------------
def test_with_width_sets_replaces_and_keeps_the_rest() -> None:
    assert with_width("https://x.org/a.jpg", "width", 1104) == "https://x.org/a.jpg?width=1104"
    assert (
        with_width("https://x.org/a.jpg?q=80&width=300&fit=crop#f", "width", 1104)
        == "https://x.org/a.jpg?q=80&width=1104&fit=crop#f"
    )
    # Repeats of the parameter collapse into the first one's place.
    assert (
        with_width("https://x.org/a.jpg?width=1&b=%20&width=2", "width", 800)
        == "https://x.org/a.jpg?width=800&b=%20"
    )


def test_with_width_leaves_alone_what_it_must() -> None:
    for url in ("data:image/png;base64,AAAA", "/img/a.jpg", "javascript:alert(1)", ""):
        assert with_width(url, "width", 800) == url
    assert with_width("https://x.org/a.jpg?w=1", "", 800) == "https://x.org/a.jpg?w=1"


@given(urls(), st.sampled_from(["width", "w", "imwidth"]), st.integers(1, 5000))
def test_property_with_width(url: str, param: str, width: int) -> None:
    once = with_width(url, param, width)
    assert with_width(once, param, width) == once
    before, after = urlsplit(url), urlsplit(once)
    assert (after.scheme, after.netloc, after.path, after.fragment) == (
        before.scheme,
        before.netloc,
        before.path,
        before.fragment,
    )
    assert after.scheme in {"http", "https"}
    original = parse_qsl(before.query, keep_blank_values=True)
    result = parse_qsl(after.query, keep_blank_values=True)
    assert [kv for kv in result if kv[0] != param] == [kv for kv in original if kv[0] != param]
    assert [v for k, v in result if k == param] == [str(width)]
