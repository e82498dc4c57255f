"""Card images: wide ones (and those of unknown width) fill the column, as in the seed's card;
narrow ones become a thumbnail beside the text, above it on phones. Checked in the HTML, then
in Debian's chromium at phone and desktop widths (screenshots in tests/artifacts/). The browser
gets the images from the test itself: every request is answered or refused in the page's
router, so nothing leaves the machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route

from digest.config import parse_settings
from digest.models import Edition, EditionSection, Image
from digest.render import render_variant
from digest.render.email import CONTENT_WIDTH, FULL_WIDTH_FROM, THUMBNAIL_WIDTH
from tests.render import make_settings, settings_dict, teaser, weekly_edition
from tests.web.test_browser import ARTIFACTS, DESKTOP, PHONE, browser

__all__ = ["browser"]

CDN = "https://cdn.meridian.example.org/img/"
# name -> (intrinsic width, height); None: the feed did not say.
SIZES: dict[str, tuple[int | None, int]] = {
    "wide": (1200, 675),
    "unknown": (None, 600),
    "almost": (FULL_WIDTH_FROM, 320),
    "narrow": (FULL_WIDTH_FROM - 1, 300),
    "small": (140, 100),
}


def image_edition() -> Edition:
    """One section, a card per entry of SIZES, each with a caption, in that order."""
    cards = tuple(
        teaser(
            "qiosk",
            n,
            title=f"A story with a {name} picture and a headline long enough to wrap",
            paragraphs=(
                "Negotiators met again this week as the talks entered their third month; "
                "both sides said that progress on the humanitarian file was real but fragile.",
            ),
            image=Image(
                url=f"{CDN}{name}.jpg",
                alt=f"The {name} picture",
                caption=f"Caption of the {name} picture.",
                credit="Photo: Meridian",
                width=width,
                height=height,
            ),
        )
        for n, (name, (width, height)) in enumerate(SIZES.items(), start=1)
    )
    edition = weekly_edition()
    return edition.model_copy(
        update={"sections": (EditionSection(key="qiosk", title="QiOSK", teasers=cards),)}
    )


@dataclass
class Img:
    src: str
    width: str
    # The classes of the elements around the image, outermost first.
    around: list[str] = field(default_factory=list)


class Images(HTMLParser):
    VOID = frozenset({"img", "br", "meta", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[Img] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.found.append(Img(values["src"] or "", values["width"] or "", list(self._stack)))
        elif tag not in self.VOID:
            self._stack.append(values.get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._stack:
            self._stack.pop()


def images(html: str) -> dict[str, Img]:
    parser = Images()
    parser.feed(html)
    return {img.src.removeprefix(CDN).split(".jpg")[0]: img for img in parser.found}


def test_wide_and_unknown_fill_the_column_narrow_become_thumbnails() -> None:
    found = images(render_variant(image_edition(), make_settings()).html)
    for name in ("wide", "unknown", "almost"):
        assert found[name].width == str(CONTENT_WIDTH), name
        assert "tn" not in found[name].around, name
    # Never stretched: a thumbnail is at most THUMBNAIL_WIDTH, and never wider than itself.
    assert found["narrow"].width == str(THUMBNAIL_WIDTH)
    assert found["small"].width == "140"
    for name in ("narrow", "small"):
        assert "tn" in found[name].around, name


def test_the_cms_is_asked_for_twice_the_shown_width_but_never_more_than_the_original() -> None:
    html = render_variant(image_edition(), make_settings(image_width_param="width")).html
    asked = {name: img.src.split("?width=")[1] for name, img in images(html).items()}
    assert asked == {
        "wide": "1104",
        "unknown": "1104",
        "almost": str(FULL_WIDTH_FROM),  # shown at 552: twice would be more than it has
        "narrow": str(2 * THUMBNAIL_WIDTH),
        "small": "140",
    }


def test_a_thumbnail_card_keeps_its_caption_and_the_text_beside_it() -> None:
    html = render_variant(image_edition(), make_settings()).html
    image = html.index(f'src="{CDN}narrow.jpg"')
    card = html[html.rindex("Keep reading", 0, image) : html.index("Keep reading", image)]
    order = [
        '<!--[if mso]><table role="presentation"',  # Outlook's Word engine: two table cells
        '<div class="tn"',
        f'src="{CDN}narrow.jpg"',
        "Caption of the narrow picture.",
        '<div class="tx"',
        "A story with a narrow picture",
        "Negotiators met again",
    ]
    positions = [card.find(piece) for piece in order]
    assert -1 not in positions, [p for p, at in zip(order, positions, strict=True) if at < 0]
    assert positions == sorted(positions)


def test_a_right_to_left_publication_puts_the_gap_on_the_thumbnails_left() -> None:
    data = settings_dict()
    data["publication"]["lang"] = "ar"
    html = render_variant(image_edition(), parse_settings(data, environ={})).html
    tn = html[html.index('<div class="tn"') :][:300]
    assert "padding-left: 16px" in tn and "padding-right" not in tn


# In a browser ---------------------------------------------------------------------------------
def _svg(name: str) -> bytes:
    width, height = SIZES[name]
    width = width or 900
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="#7a8a99"/>'
        f'<text x="50%" y="50%" font-size="{max(14, width // 12)}" text-anchor="middle" '
        f'fill="#fff">{name} {width}px</text></svg>'
    ).encode()


def _serve(route: Route) -> None:
    url = route.request.url
    if url.startswith(CDN):
        name = url.removeprefix(CDN).split(".jpg")[0]
        if name in SIZES:
            route.fulfill(status=200, content_type="image/svg+xml", body=_svg(name))
            return
    route.abort()


def _boxes(page: Page) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in SIZES:
        box = page.locator(f'img[src^="{CDN}{name}.jpg"]').bounding_box()
        assert box is not None, name
        out[name] = box
    for key, selector in (("narrow-text", "div.tx >> nth=0"), ("small-text", "div.tx >> nth=1")):
        box = page.locator(selector).bounding_box()
        assert box is not None, key
        out[key] = box
    return out


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_thumbnails_sit_beside_the_text_on_desktop_and_above_it_on_phones(
    browser: Browser, viewport: dict[str, Any]
) -> None:
    html = render_variant(image_edition(), make_settings()).html
    context = browser.new_context(viewport=viewport, java_script_enabled=False)
    try:
        page = context.new_page()
        page.route("**/*", _serve)
        page.set_content(html, wait_until="load")
        boxes = _boxes(page)
        name = "desktop" if viewport is DESKTOP else "phone"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"email-images-{name}.png"), full_page=True)
    finally:
        context.close()
    column = CONTENT_WIDTH if viewport is DESKTOP else viewport["width"] - 48
    for wide in ("wide", "unknown", "almost"):
        assert boxes[wide]["width"] == pytest.approx(column, abs=1), wide
    assert boxes["narrow"]["width"] == pytest.approx(THUMBNAIL_WIDTH, abs=1)
    assert boxes["small"]["width"] == pytest.approx(140, abs=1)
    for thumb in ("narrow", "small"):
        image, text = boxes[thumb], boxes[f"{thumb}-text"]
        if viewport is DESKTOP:
            # Side by side, tops level, the text starting after the thumbnail and its gap.
            assert text["x"] >= image["x"] + THUMBNAIL_WIDTH + 16 - 1, thumb
            assert text["y"] == pytest.approx(image["y"], abs=1), thumb
        else:
            # Stacked: the thumbnail first, at its own size; the text below it, full width.
            assert text["y"] >= image["y"] + image["height"], thumb
            assert text["width"] == pytest.approx(column, abs=1), thumb
            assert text["x"] == pytest.approx(image["x"], abs=1), thumb
