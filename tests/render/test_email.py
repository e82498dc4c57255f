"""Rendering a variant: golden output, the email checklist, the size budget, the MJML validator,
and personalisation of the tokens.

Golden files: ``tests/render/golden/weekly.{html,txt}``. After an intended change of the
templates or of the pinned renderers, rewrite them with

    UPDATE_GOLDENS=1 .venv/bin/pytest tests/render/test_email.py

and review the diff (and a screenshot) before committing.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.errors import RenderError
from digest.models import RenderedVariant
from digest.render import render_variant
from digest.render.email import compile_mjml, environment, unknown_mjml_tags, validate_mjml
from digest.render.personalise import (
    GREETING,
    PREFERENCES,
    READER,
    TOKENS,
    UNSUBSCRIBE,
    personalise,
)
from tests.render import long_edition, make_settings, weekly_edition

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"


class Facts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href") or "")


def facts(html: str) -> Facts:
    parser = Facts()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def weekly() -> RenderedVariant:
    return render_variant(weekly_edition(), make_settings())


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8", newline="")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from the golden file; see the module docstring"


def test_golden_html(weekly: RenderedVariant) -> None:
    _golden("weekly.html", weekly.html)


def test_golden_text(weekly: RenderedVariant) -> None:
    _golden("weekly.txt", weekly.text)


def test_rendering_is_deterministic(weekly: RenderedVariant) -> None:
    again = render_variant(weekly_edition(), make_settings())
    assert (again.html, again.text) == (weekly.html, weekly.text)


def test_every_image_has_alt_and_pixel_width(weekly: RenderedVariant) -> None:
    imgs = facts(weekly.html).imgs
    assert len(imgs) == 3
    for img in imgs:
        assert (img.get("alt") or "").strip()
        assert (img.get("width") or "").isdigit()
        assert int(img["width"] or 0) <= 552
    # An empty alt falls back to the title.
    assert any(img["alt"] == "Panel urges a pause on transfers to two units" for img in imgs)


def test_every_href_is_web_mailto_or_a_token(weekly: RenderedVariant) -> None:
    hrefs = facts(weekly.html).hrefs
    assert hrefs
    for href in hrefs:
        assert re.match(r"^(https?://|mailto:)", href) or href in TOKENS, href
    assert UNSUBSCRIBE in hrefs and PREFERENCES in hrefs


def test_article_links_carry_utm_and_keep_query_and_fragment(weekly: RenderedVariant) -> None:
    hrefs = facts(weekly.html).hrefs
    assert (
        "https://meridian.example.org/qiosk/speech?ref=home&lang=en&utm_source=meridian-weekly"
        "&utm_medium=email&utm_campaign=weekly-2026-W17&utm_content=qiosk-2#top"
    ) in hrefs
    # The same links in the text part.
    assert "utm_content=diplomacy-watch-4" in weekly.text


def test_utm_can_be_switched_off() -> None:
    variant = render_variant(weekly_edition(), make_settings(utm=False))
    assert "utm_" not in variant.html and "utm_" not in variant.text


def test_checklist_items_present(weekly: RenderedVariant) -> None:
    html = weekly.html
    assert re.search(r'<html lang="en"', html)
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    # The preheader (see the test below), padded so clients do not pull body text into the
    # preview.
    assert "\u200c&nbsp;" in html
    tags = facts(html).tags
    assert {"h1", "h2", "h3"} <= set(tags)
    assert 'role="presentation"' in html
    assert "1200 Harbor Street, Suite 400<br>Baltimore, MD 21230, USA" in html
    assert "Keep reading&nbsp;→" in html
    assert "More from Diplomacy Watch" in html


class FirstText(HTMLParser):
    """The first visible text after <body>, and the styles of the elements around it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_body = False
        self.styles: list[str] = []
        self.text = ""
        self.around: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_body = self.in_body or tag == "body"
        if self.in_body and not self.text and tag not in {"br", "img", "meta"}:
            self.styles.append(dict(attrs).get("style") or "")

    def handle_endtag(self, tag: str) -> None:
        if self.in_body and not self.text and self.styles:
            self.styles.pop()

    def handle_data(self, data: str) -> None:
        if self.in_body and not self.text and data.strip():
            self.text, self.around = data, list(self.styles)


def _declarations(style: str) -> dict[str, str]:
    pairs = (d.split(":", 1) for d in style.split(";") if ":" in d)
    return {k.strip().lower(): v.strip().lower() for k, v in pairs}


def test_preheader_is_the_first_text_hidden_everywhere_without_a_colour(
    weekly: RenderedVariant,
) -> None:
    first = FirstText()
    first.feed(weekly.html)
    assert first.text.startswith("7 new pieces from The Meridian Review this week")
    hidden = _declarations(first.around[-1])
    # Gmail and Apple Mail honour display:none, Outlook's Word engine mso-hide:all; the rest
    # is for clients that drop one of them: nothing to show, no room to show it in.
    assert hidden["display"] == "none" and hidden["mso-hide"] == "all"
    assert hidden["max-height"] in {"0", "0px"} and hidden["overflow"] == "hidden"
    assert hidden["opacity"] == "0"
    # No colour near the background: spam filters read hidden text in the background's colour
    # as a trick (SpamAssassin's HTML_FONT_LOW_CONTRAST), whatever else hides it.
    assert all("color" not in _declarations(style) for style in first.around)


def test_text_escaping_and_plain_intro(weekly: RenderedVariant) -> None:
    # Raw HTML in the editor's Markdown is text in the HTML, and as typed in the text part.
    assert "&lt;or got wrong&gt; &amp; we will read it" in weekly.html
    assert "<or got wrong> & we will read it" in weekly.text
    assert "“السلام عليكم”" in weekly.html and "“السلام عليكم”" in weekly.text


def test_text_part_is_wrapped_without_breaking_urls(weekly: RenderedVariant) -> None:
    for line in weekly.text.splitlines():
        if "://" not in line:
            assert len(line) <= 76, line
    assert weekly.text.endswith("\n") and not weekly.text.endswith("\n\n")
    assert "Keep reading: https://meridian.example.org/analysis/story-1?utm_source=" in weekly.text
    assert f"Unsubscribe: {UNSUBSCRIBE}" in weekly.text
    assert "Baltimore, MD 21230, USA" in weekly.text


def test_tokens_survive_compilation_unchanged(weekly: RenderedVariant) -> None:
    # The reader's part of click links is there only with per-subscriber analytics
    # (tests/render/test_reader_links.py).
    assert READER not in weekly.html and READER not in weekly.text
    for token in (t for t in TOKENS if t != READER):
        assert token in weekly.html
        assert token in weekly.text
    assert f'href="{UNSUBSCRIBE}"' in weekly.html


def test_sections_filter_the_variant() -> None:
    variant = render_variant(weekly_edition(), make_settings(), sections=frozenset({"qiosk"}))
    assert "QiOSK" in variant.html and "Diplomacy Watch" not in variant.html
    assert variant.sections == frozenset({"qiosk"})
    assert "DIPLOMACY WATCH" not in variant.text


def test_greeting_is_optional() -> None:
    variant = render_variant(weekly_edition(), make_settings(), greeting=False)
    assert GREETING not in variant.html and GREETING not in variant.text


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "intro-and-resizing"])
def test_twelve_long_teasers_fit_the_budget(extras: bool) -> None:
    edition = long_edition(12)
    settings = make_settings()
    if extras:
        edition = edition.model_copy(update={"intro": weekly_edition().intro})
        settings = make_settings(image_width_param="width")
    variant = render_variant(edition, settings)
    size = len(variant.html.encode("utf-8"))
    assert size < 90_000, size
    assert len(facts(variant.html).imgs) == 12


def test_oversized_edition_is_refused_with_id_and_overage() -> None:
    with pytest.raises(RenderError) as err:
        render_variant(long_edition(40, edition_id="weekly-2026-W40"), make_settings())
    message = str(err.value)
    match = re.search(
        r"'weekly-2026-W40': HTML is (\d+) bytes, (\d+) over the budget of 90000", message
    )
    assert match, message
    assert int(match[1]) - 90_000 == int(match[2]) > 0


def test_unknown_digest_is_refused() -> None:
    edition = weekly_edition().model_copy(update={"digest": "daily"})
    with pytest.raises(RenderError, match=r"weekly-2026-W17.*'daily'"):
        render_variant(edition, make_settings())


def test_non_web_article_link_is_refused() -> None:
    edition = weekly_edition()
    section = edition.sections[0]
    bad = section.teasers[0].model_copy(update={"url": "javascript:alert(1)"})
    edition = edition.model_copy(
        update={
            "sections": (
                section.model_copy(update={"teasers": (bad, *section.teasers[1:])}),
                *edition.sections[1:],
            )
        }
    )
    with pytest.raises(RenderError, match="not http"):
        render_variant(edition, make_settings())


# The editor's note ---------------------------------------------------------------------------
def test_intro_markdown_renders_in_both_parts(weekly: RenderedVariant) -> None:
    html, text = weekly.html, weekly.text
    assert "This week: <strong>two summits</strong>, one report" in html
    assert re.search(r"<ul[^>]*> <li[^>]*>Geneva: the first round", html)
    # Editor links stay as written: no UTM parameters.
    assert "https://meridian.example.org/reading/geneva?from=digest" in facts(html).hrefs
    assert "This week: *two summits*, one report, and our reading list on the talks\n" in text
    assert "(https://meridian.example.org/reading/geneva?from=digest)." in text
    assert "\n- Geneva: the first round since the winter recess\n- A peace" in text


def test_hostile_intro_is_inert_in_the_email() -> None:
    edition = weekly_edition().model_copy(
        update={
            "intro": "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
            "[x](javascript:alert(1)) <a href='javascript:alert(2)'>y</a> [rel](/x)\n\n"
            "</mj-text><mj-raw><b onclick=1>z</b></mj-raw>"
        }
    )
    variant = render_variant(edition, make_settings())  # the checks pass: no bad href
    parsed = facts(variant.html)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert len(parsed.imgs) == 3  # the cards' images only
    assert not any(h.lower().startswith(("javascript", "/x")) for h in parsed.hrefs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in variant.html
    assert "<script>alert(1)</script>" in variant.text  # plain text is never interpreted


def test_without_intro_only_the_greeting_remains() -> None:
    edition = weekly_edition().model_copy(update={"intro": ""})
    variant = render_variant(edition, make_settings())
    assert "two summits" not in variant.html and "two summits" not in variant.text
    assert GREETING in variant.html and GREETING in variant.text


# Images resized by the CMS, and the lead card ------------------------------------------------
def test_image_width_param_asks_for_twice_the_displayed_width() -> None:
    variant = render_variant(weekly_edition(), make_settings(image_width_param="width"))
    base = "https://cdn.meridian.example.org/img/"
    shown = [(img["src"], img["width"]) for img in facts(variant.html).imgs]
    assert shown == [
        # 1200 px wide, shown at 552: asks for 1104.
        (f"{base}geneva-talks.jpg?width=1104", "552"),
        # 400 px wide: a thumbnail, shown at 176, asks for 352 (the cap at the original width
        # is tested in test_images.py).
        (f"{base}press-briefing.jpg?width=352", "176"),
        # 1600 px wide, shown at 552.
        (f"{base}parliament.jpg?width=1104", "552"),
    ]
    # Article links are not images: untouched.
    assert not any("width=" in h for h in facts(variant.html).hrefs)


def test_image_width_param_replaces_a_value_and_keeps_the_rest() -> None:
    edition = weekly_edition()
    section = edition.sections[0]
    first = section.teasers[0]
    assert first.image is not None
    image = first.image.model_copy(
        update={"url": "https://cdn.meridian.example.org/i.jpg?width=300&q=80#x", "width": None}
    )
    edition = edition.model_copy(
        update={
            "sections": (
                section.model_copy(
                    update={
                        "teasers": (first.model_copy(update={"image": image}), *section.teasers[1:])
                    }
                ),
                *edition.sections[1:],
            )
        }
    )
    variant = render_variant(edition, make_settings(image_width_param="width"))
    # No intrinsic width: shown at 552, asks for 1104; q and the fragment stay.
    assert (
        facts(variant.html).imgs[0]["src"]
        == "https://cdn.meridian.example.org/i.jpg?width=1104&q=80#x"
    )
    assert 'src="https://cdn.meridian.example.org/i.jpg?width=1104&amp;q=80#x"' in variant.html


def test_images_untouched_without_a_width_param(weekly: RenderedVariant) -> None:
    assert all("?" not in (img["src"] or "") for img in facts(weekly.html).imgs)


def test_logo_is_resized_too() -> None:
    settings = make_settings(image_width_param="w")
    settings = settings.model_copy(
        update={
            "publication": settings.publication.model_copy(
                update={"logo_url": "https://cdn.meridian.example.org/logo.png"}
            )
        }
    )
    logo = facts(render_variant(weekly_edition(), settings).html).imgs[0]
    assert logo["src"] == "https://cdn.meridian.example.org/logo.png?w=320"
    assert logo["width"] == "160"


def test_only_the_first_card_of_the_variant_is_the_lead(weekly: RenderedVariant) -> None:
    leads = re.findall(r'<h3 class="ti ld"[^>]*><a[^>]*>([^<]*)<', weekly.html)
    assert leads == ["Diplomacy Watch: Talks resume in Geneva — “cautiously” hopeful"]
    assert weekly.html.index('class="ti ld"') < weekly.html.index('class="ti"')
    assert "font-size: 26px" in weekly.html
    # A variant without the first section leads with its own first card.
    qiosk = render_variant(weekly_edition(), make_settings(), sections=frozenset({"qiosk"}))
    leads = re.findall(r'<h3 class="ti ld"[^>]*><a[^>]*>([^<]*)<', qiosk.html)
    assert leads == ["Panel urges a pause on transfers to two units"]


# The MJML validator --------------------------------------------------------------------------
def test_validator_refuses_unknown_mj_tags() -> None:
    source = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>ok</mj-text>"
        "<mj-textt>typo</mj-textt><mj-sectoin /></mj-column></mj-section></mj-body></mjml>"
    )
    assert unknown_mjml_tags(source) == ["mj-textt", "mj-sectoin"]
    with pytest.raises(RenderError, match=r"weekly-x.*mj-sectoin, mj-textt"):
        validate_mjml(source, edition_id="weekly-x")
    with pytest.raises(RenderError, match="mj-textt"):
        compile_mjml(source, edition_id="weekly-x")


def test_validator_accepts_the_mjml_set_and_plain_html() -> None:
    source = (
        "<mjml><mj-head><mj-attributes><mj-all /></mj-attributes></mj-head><mj-body>"
        "<mj-wrapper><mj-section><mj-group><mj-column><mj-text><p><b>x</b></p></mj-text>"
        "<mj-raw><table><tr><td>raw</td></tr></table></mj-raw>"
        "</mj-column></mj-group></mj-section></mj-wrapper></mj-body></mjml>"
    )
    assert unknown_mjml_tags(source) == []
    validate_mjml(source)


def test_validator_sees_a_tag_injected_into_a_template() -> None:
    template = environment().from_string(
        "<mjml><mj-body><mj-section><mj-column>{{ block | safe }}</mj-column></mj-section>"
        "</mj-body></mjml>"
    )
    source = template.render(block="<mj-buton href='https://x.org'>Go</mj-buton>")
    with pytest.raises(RenderError, match="mj-buton"):
        validate_mjml(source, edition_id="e1")


def test_mjml_syntax_error_becomes_render_error() -> None:
    with pytest.raises(RenderError, match="did not compile"):
        compile_mjml("<mjml><mj-body><mj-section>", edition_id="e1")


# Personalisation ------------------------------------------------------------------------------
def test_personalise_replaces_every_token(weekly: RenderedVariant) -> None:
    html, text = personalise(
        weekly,
        unsubscribe_url="https://m.example.org/u/abc?x=1&y=2",
        preferences_url="https://m.example.org/p/abc",
        name="Zoë",
    )
    for token in TOKENS:
        assert token not in html and token not in text
    assert 'href="https://m.example.org/u/abc?x=1&amp;y=2"' in html
    assert "Unsubscribe: https://m.example.org/u/abc?x=1&y=2" in text
    assert ">Hello Zoë,<" in html
    assert "\nHello Zoë,\n" in text


def test_personalise_escapes_the_name_in_html_only(weekly: RenderedVariant) -> None:
    html, text = personalise(
        weekly, unsubscribe_url="https://u", preferences_url="https://p", name="<b>Zoë & co</b>"
    )
    assert "Hello &lt;b&gt;Zoë &amp; co&lt;/b&gt;," in html
    assert "<b>Zoë" not in html
    assert "Hello <b>Zoë & co</b>," in text


def test_personalise_without_name_and_with_line_breaks(weekly: RenderedVariant) -> None:
    html, text = personalise(
        weekly, unsubscribe_url="https://u", preferences_url="https://p", name=""
    )
    assert ">Hello,<" in html and "\nHello,\n" in text
    _, text = personalise(
        weekly, unsubscribe_url="https://u", preferences_url="https://p", name="Ann\nBcc: x"
    )
    assert "\nHello Ann Bcc: x,\n" in text


def test_personalise_does_not_touch_other_percent_text() -> None:
    variant = RenderedVariant("e", None, "s", html="50%% off %%OTHER%% " + GREETING, text=GREETING)
    html, text = personalise(variant, unsubscribe_url="u", preferences_url="p", name="A")
    assert html == "50%% off %%OTHER%% Hello A,"
    assert text == "Hello A,"


def test_dateline_is_the_digests_local_date() -> None:
    from datetime import UTC, datetime

    # 02:00 UTC on Monday is still Sunday evening in New York, the digest's timezone.
    edition = weekly_edition().model_copy(
        update={"created_at": datetime(2026, 11, 30, 2, 0, tzinfo=UTC)}
    )
    variant = render_variant(edition, make_settings())
    assert "29 November 2026" in variant.text and "30 November 2026" not in variant.text


def test_attributes_mjml_does_not_define_are_refused() -> None:
    from digest.render.email import unknown_mjml_attributes
    from digest.render.mjml_spec import MJML_TAGS

    assert {"mj-text", "mj-image", "mj-all", "mj-class", "mjml"} <= MJML_TAGS
    source = (
        "<mjml><mj-head><mj-attributes><mj-all font-family='Georgia' color='#111' />"
        "<mj-class name='lead' font-size='26px' /><mj-text line-height='1.5' />"
        "</mj-attributes></mj-head><mj-body><mj-section><mj-column>"
        "<mj-text font-weigth='bold' css-class='x'>Hi</mj-text>"
        "<mj-image src='https://example.org/a.jpg' alt='A' widht='552px' />"
        "</mj-column></mj-section></mj-body></mjml>"
    )
    assert unknown_mjml_attributes(source) == ["mj-text font-weigth", "mj-image widht"]
    with pytest.raises(RenderError, match="font-weigth"):
        validate_mjml(source, edition_id="weekly-x")


def test_every_image_has_a_pixel_width_and_shrinks_to_fit() -> None:
    import re

    variant = render_variant(weekly_edition(), make_settings())
    images = re.findall(r"<img\b[^>]*>", variant.html)
    assert images
    for img in images:
        assert re.search(r'\swidth="\d+"', img), img
        assert "max-width: 100%" in img or "max-width:100%" in img, img
