"""Render one variant of an edition: Jinja2 → MJML → HTML (CSS inlined) plus the text part.

A variant is rendered once and shared by every subscriber who gets the same sections; the
personal parts stay tokens (see ``personalise``). Before anything is handed on, the result is
checked against what mail clients and the law need (size under Gmail's clipping, alt on every
image, a working unsubscribe link, the postal address), and a failed check raises RenderError
naming the edition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import quote
from zoneinfo import ZoneInfo

import css_inline
import jinja2
import mjml
from markupsafe import Markup

from digest.config import Settings
from digest.errors import RenderError
from digest.models import Edition, Image, RenderedVariant, Teaser
from digest.render import personalise, templates
from digest.render.clicks import ClickTarget, click_url, per_subscriber, tracking
from digest.render.intro import intro_html, intro_text
from digest.render.links import add_utm, is_web_url, with_width
from digest.render.mjml_spec import FREE_DEFAULTS, MJML_ATTRIBUTES, MJML_TAGS
from digest.render.text import tidy, wrap
from digest.text import text_direction

MJML_TEMPLATE = "email/digest.mjml.j2"
TEXT_TEMPLATE = "email/digest.txt.j2"

# The body is 600 px wide and cards have 24 px of padding on each side.
CONTENT_WIDTH = 552
# The logo's displayed width (the template's mj-image width).
LOGO_WIDTH = 160
# Images are requested at this multiple of their displayed width, for high-density screens.
PIXEL_DENSITY = 2
# A card image this wide or wider, or of unknown width, fills the column (the seed's card): at
# most 15% of upscaling, which no one sees. A narrower one (a feed's thumbnail: WordPress's 150
# and 300 px, media:thumbnail's 140 to 240 px) would look blurred stretched and stray left at
# its own width, so it becomes a thumbnail of at most THUMBNAIL_WIDTH beside the card's text,
# above it on phones.
FULL_WIDTH_FROM = 480
THUMBNAIL_WIDTH = 176

# Zero-width non-joiner + no-break space after the preheader: clients fill the inbox preview
# line from the start of the body, so without padding the greeting and header would follow it.
PREHEADER_PADDING = Markup("&zwnj;&nbsp;" * 60)

_MONTHS = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)
_SPACE = re.compile(r"\s+")


# Template loading -----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one Jinja2 environment of the email (created on first use, then shared)."""
    env = templates.environment(
        MJML_TEMPLATE,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2"), default_for_string=True, default=False
        ),
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    return env


_INLINER = css_inline.CSSInliner(
    # Plain rules become style attributes (Gmail and Outlook ignore classes in places); the
    # @media rules (mobile, dark mode) can only live in a <style> block, so they stay.
    keep_style_tags=False,
    keep_at_rules=True,
    load_remote_stylesheets=False,
)


# View model: what the templates see, with links and fallbacks already decided --------------
@dataclass(frozen=True, slots=True)
class CardImage:
    src: str
    alt: str
    width: int
    caption: str
    credit: str
    # Shown beside the text (see FULL_WIDTH_FROM) rather than across the column.
    thumbnail: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    kicker: str
    title: str
    url: str
    paragraphs: tuple[str, ...]
    image: CardImage | None
    # The edition's first card, shown with a larger title.
    lead: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    cards: tuple[Item, ...]
    headlines: tuple[Item, ...]


def image_src(url: str, displayed: int, settings: Settings, *, intrinsic: int | None = None) -> str:
    """``url`` asking the CMS for ``PIXEL_DENSITY`` times the displayed width, when the CMS
    resizes (``render.image_width_param``); never wider than the original when that is known,
    since a CMS that upscales only adds bytes."""
    wanted = displayed * PIXEL_DENSITY
    if intrinsic:
        wanted = min(wanted, intrinsic)
    return with_width(url, settings.render.image_width_param, wanted)


def _image(image: Image | None, title: str, settings: Settings) -> CardImage | None:
    # Only web images: a data: or file: src from a feed has no place in a mass mailing.
    if image is None or not is_web_url(image.url):
        return None
    thumbnail = image.width is not None and image.width < FULL_WIDTH_FROM
    width = min(image.width or THUMBNAIL_WIDTH, THUMBNAIL_WIDTH) if thumbnail else CONTENT_WIDTH
    return CardImage(
        src=image_src(image.url, width, settings, intrinsic=image.width),
        alt=image.alt.strip() or title,
        width=width,
        caption=image.caption.strip(),
        credit=image.credit.strip(),
        thumbnail=thumbnail,
    )


# The footer's words when each subscriber's clicks are recorded (never said otherwise).
CLICKS_NOTICE = (
    "This newsletter records which links you click, to count how many readers open each "
    "article; its editors see only those counts, and your clicks are deleted when you "
    "unsubscribe."
)


def _item(teaser: Teaser, url: str, settings: Settings, *, lead: bool) -> Item:
    return Item(
        kicker=teaser.kicker,
        title=teaser.title,
        url=url,
        paragraphs=tuple(p for p in teaser.paragraphs if p.strip()),
        image=_image(teaser.image, teaser.title, settings) if teaser.full else None,
        lead=lead,
    )


def _sections(edition: Edition, settings: Settings) -> tuple[Section, ...]:
    out = []
    lead_found = False
    clicks = tracking(settings, edition.digest)
    # Each recipient's part follows the shared click token (see digest.render.clicks).
    reader = personalise.READER if per_subscriber(settings, edition.digest) else ""
    for section in edition.sections:
        cards: list[Item] = []
        headlines: list[Item] = []
        for position, teaser in enumerate(section.teasers, start=1):
            if not is_web_url(teaser.url):
                raise RenderError(
                    f"edition {edition.id!r}: article {teaser.article_id!r} has a link that is "
                    f"not http(s): {teaser.url[:80]!r}"
                )
            url = teaser.url
            if settings.render.utm:
                url = add_utm(
                    url,
                    source=settings.render.utm_source,
                    campaign=edition.id,
                    content=f"{section.key}-{position}",
                )
            if clicks:
                # The redirect's target is the UTM'd link: the parameters survive the click.
                target = ClickTarget(url, edition.id, teaser.article_id, section.key)
                url = click_url(settings, target) + reader
            lead = teaser.full and not lead_found
            lead_found = lead_found or lead
            (cards if teaser.full else headlines).append(_item(teaser, url, settings, lead=lead))
        if cards or headlines:
            out.append(Section(section.key, section.title, tuple(cards), tuple(headlines)))
    return tuple(out)


def dateline(when: datetime, lang: str) -> str:
    """A day as the email writes it: `7 December 2026` in English, else the ISO date."""
    # Month names only in English; any other language gets the unambiguous ISO date.
    if lang.lower().startswith("en"):
        return f"{when.day} {_MONTHS[when.month - 1]} {when.year}"
    return when.date().isoformat()


def view_sections(edition: Edition, sections: frozenset[str] | None) -> tuple[str, ...] | None:
    """The sorted section keys that name the web version of a variant, or None for the full
    edition: keys the edition does not carry are dropped, and a choice that covers every
    section (or none of them) is the full edition."""
    if sections is None:
        return None
    present = {s.key for s in edition.sections}
    keys = tuple(sorted(sections & present))
    return None if not keys or set(keys) == present else keys


def view_url(edition: Edition, settings: Settings, sections: frozenset[str] | None) -> str:
    """The public web version of a variant: ``<links base>/v/<edition id>``, plus
    ``?s=<sorted section keys>`` for a variant with chosen sections. The same for everyone who
    gets that variant: it carries nothing personal."""
    url = f"{settings.links_base}/v/{quote(edition.id, safe='')}"
    keys = view_sections(edition, sections)
    return url if keys is None else f"{url}?s={quote(','.join(keys), safe=',')}"


def context(
    edition: Edition, settings: Settings, *, greeting: bool = True, view_url: str = ""
) -> dict[str, object]:
    """Everything both templates need, as plain values. ``view_url`` is the variant's web
    version, linked from the top of the email (empty: no link)."""
    digest = settings.digests[edition.digest]
    pub = settings.publication
    lang = pub.lang or "en"
    return {
        "lang": lang,
        "dir": text_direction(lang),
        "title": edition.title,
        "subject": edition.subject,
        "preheader": edition.preheader,
        "preheader_padding": PREHEADER_PADDING,
        "publication_name": pub.name,
        "publication_url": pub.url,
        "logo_url": image_src(pub.logo_url, LOGO_WIDTH, settings) if pub.logo_url else "",
        "logo_width": LOGO_WIDTH,
        "digest_title": digest.title,
        # The date readers see is the digest's local date, not UTC's.
        "dateline": dateline(
            edition.created_at.astimezone(ZoneInfo(digest.schedule.timezone)), lang
        ),
        "greeting": personalise.GREETING if greeting else "",
        # The one piece of trusted markup: marked safe only after nh3 has sanitised it.
        "intro_html": Markup(intro_html(edition.intro)),
        "intro_text": intro_text(edition.intro),
        "sections": _sections(edition, settings),
        "preferences_url": personalise.PREFERENCES,
        "unsubscribe_url": personalise.UNSUBSCRIBE,
        "postal_lines": tuple(line.strip() for line in pub.postal_address.splitlines() if line),
        "content_width": CONTENT_WIDTH,
        "thumbnail_width": THUMBNAIL_WIDTH,
        "view_url": view_url,
        "records_clicks": per_subscriber(settings, edition.digest),
        "clicks_notice": CLICKS_NOTICE,
    }


# Checks -----------------------------------------------------------------------------------------
class _MjmlTags(HTMLParser):
    """Collects unknown ``mj-*`` tags, and attributes MJML does not define for a known tag
    (lenient: any markup parses)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.unknown: list[str] = []
        self.bad_attributes: list[str] = []
        self._in_defaults = 0  # inside <mj-attributes>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not (tag == "mjml" or tag.startswith("mj-")):
            return
        if tag not in MJML_TAGS:
            self.unknown.append(tag)
            return
        if tag == "mj-attributes":
            self._in_defaults += 1
        if self._in_defaults and tag in FREE_DEFAULTS:
            return
        allowed = MJML_ATTRIBUTES.get(tag, frozenset())
        self.bad_attributes.extend(f"{tag} {name}" for name, _ in attrs if name not in allowed)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "mj-attributes":
            self._in_defaults -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "mj-attributes":
            self._in_defaults = max(0, self._in_defaults - 1)


def _scan(source: str) -> _MjmlTags:
    parser = _MjmlTags()
    parser.feed(source)
    parser.close()
    return parser


def unknown_mjml_tags(source: str) -> list[str]:
    """The ``mj-*`` tags of ``source`` that are not in the MJML element set, in order."""
    return _scan(source).unknown


def unknown_mjml_attributes(source: str) -> list[str]:
    """``"<tag> <attribute>"`` for each attribute MJML does not define on that tag, in order."""
    return _scan(source).bad_attributes


def validate_mjml(source: str, *, edition_id: str = "") -> None:
    """Raise RenderError if ``source`` uses a tag or an attribute MJML does not define.

    MRML does not complain about an unknown ``mj-`` tag; it copies it into the HTML, where
    every client ignores it and its content silently disappears. An unknown attribute (a typo
    like ``font-weigth``) is dropped just as silently.
    """
    scan = _scan(source)
    if scan.unknown:
        names = ", ".join(sorted(set(scan.unknown)))
        raise RenderError(f"edition {edition_id!r}: unknown MJML tag(s) in the template: {names}")
    if scan.bad_attributes:
        names = ", ".join(sorted(set(scan.bad_attributes)))
        raise RenderError(
            f"edition {edition_id!r}: attribute(s) MJML does not define in the template: {names}"
        )


class _HtmlFacts(HTMLParser):
    """What the checks need from compiled HTML: images without alt, links, visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images_without_alt: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and not (values.get("alt") or "").strip():
            self.images_without_alt.append(values.get("src") or "(no src)")
        if tag == "a" and values.get("href") is not None:
            self.hrefs.append(values["href"] or "")
        if tag == "br":
            self.text.append(" ")
        if tag in {"style", "title", "script"}:
            self._hidden += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in {"style", "title", "script"}:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "title", "script"}:
            self._hidden = max(0, self._hidden - 1)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text.replace("\xa0", " ")).strip()


def _allowed_href(href: str) -> bool:
    return is_web_url(href) or href.startswith("mailto:") or href in personalise.TOKENS


def check(html_body: str, text_body: str, *, edition_id: str, settings: Settings) -> None:
    """Raise RenderError for the first thing that would make this email unacceptable."""
    where = f"edition {edition_id!r}"
    size = len(html_body.encode("utf-8"))
    budget = settings.render.max_html_bytes
    if size > budget:
        raise RenderError(
            f"{where}: HTML is {size} bytes, {size - budget} over the budget of {budget} "
            "(render.max_html_bytes; Gmail clips at about 102 KB); lower max_items, "
            "cards_per_section or teaser_chars"
        )
    facts = _HtmlFacts()
    facts.feed(html_body)
    facts.close()
    if facts.images_without_alt:
        raise RenderError(f"{where}: image without alt text: {facts.images_without_alt[0]}")
    bad = [h for h in facts.hrefs if not _allowed_href(h)]
    if bad:
        raise RenderError(f"{where}: link that is not http(s) or mailto: {bad[0][:80]!r}")
    if personalise.UNSUBSCRIBE not in facts.hrefs:
        raise RenderError(f"{where}: the HTML has no unsubscribe link")
    if personalise.UNSUBSCRIBE not in text_body:
        raise RenderError(f"{where}: the text part has no unsubscribe link")
    address = _squash(settings.publication.postal_address)
    if address and address not in _squash("".join(facts.text)):
        raise RenderError(f"{where}: the HTML does not show the postal address")
    if address and address not in _squash(text_body):
        raise RenderError(f"{where}: the text part does not show the postal address")


# The stage --------------------------------------------------------------------------------------
def compile_mjml(source: str, *, edition_id: str = "") -> str:
    """MJML → HTML with CSS inlined; unknown tags and MRML errors raise RenderError."""
    validate_mjml(source, edition_id=edition_id)
    try:
        compiled = mjml.mjml2html(source, disable_comments=True)
    except ValueError as e:
        raise RenderError(f"edition {edition_id!r}: MJML did not compile: {e}") from None
    return _INLINER.inline(compiled)


def _compile(
    edition: Edition,
    settings: Settings,
    *,
    sections: frozenset[str] | None,
    greeting: bool,
    view_link: bool,
) -> tuple[str, str]:
    """The HTML and text bodies of a variant, unchecked."""
    if edition.digest not in settings.digests:
        raise RenderError(
            f"edition {edition.id!r}: digest {edition.digest!r} is not in the configuration"
        )
    variant = edition.for_sections(sections)
    link = view_url(edition, settings, sections) if view_link else ""
    ctx = context(variant, settings, greeting=greeting, view_url=link)
    env = environment()
    try:
        source = env.get_template(MJML_TEMPLATE).render(ctx)
        text_body = tidy(env.get_template(TEXT_TEMPLATE).render(ctx))
    except jinja2.TemplateError as e:
        raise RenderError(f"edition {edition.id!r}: template error: {e}") from None
    html_body = compile_mjml(source, edition_id=edition.id)
    if not html_body.endswith("\n"):
        # MIME encoders end every part with a line break; adding it here keeps the HTML
        # identical before and after a round trip through a message.
        html_body += "\n"
    return html_body, text_body


def render_variant(
    edition: Edition,
    settings: Settings,
    *,
    sections: frozenset[str] | None = None,
    greeting: bool = True,
    view_link: bool = True,
) -> RenderedVariant:
    """The email for the subscribers of ``edition`` who get ``sections`` (``None``: all).

    ``greeting`` adds the "Hello {name}," line (a personal token). ``view_link`` adds the
    "View in browser" link to the variant's web version (``view_url``); the web version itself
    is rendered without it. Raises RenderError naming the edition when a template fails or a
    check does.
    """
    html_body, text_body = _compile(
        edition, settings, sections=sections, greeting=greeting, view_link=view_link
    )
    check(html_body, text_body, edition_id=edition.id, settings=settings)
    return RenderedVariant(
        edition_id=edition.id,
        sections=sections,
        subject=edition.subject,
        html=html_body,
        text=text_body,
    )


# One item against the budget ------------------------------------------------------------------

# A teaser whose data (text and URLs) is under this share of the HTML budget cannot fill the
# budget on its own, even with its links repeated and escaped and the email's furniture around
# it, so it is not rendered alone to find out.
SUSPECT_SHARE = 10


@dataclass(frozen=True)
class Oversized:
    """A teaser that does not fit ``render.max_html_bytes`` even as the edition's only item,
    with the size of the HTML it makes alone."""

    teaser: Teaser
    html_bytes: int


def oversized_teasers(edition: Edition, settings: Settings) -> list[Oversized]:
    """The teasers of ``edition`` that cannot fit the HTML budget whatever else is dropped.

    Each suspect (its data a tenth of the budget or more) is rendered as the only item of the
    edition, with the edition's intro and the email's furniture; one still over the budget is
    listed. Usually nothing is rendered: gather caps titles, names and captions.
    """
    budget = settings.render.max_html_bytes
    found: list[Oversized] = []
    for section in edition.sections:
        for teaser in section.teasers:
            if len(teaser.model_dump_json().encode()) * SUSPECT_SHARE < budget:
                continue
            alone = edition.model_copy(
                update={"sections": (section.model_copy(update={"teasers": (teaser,)}),)}
            )
            html_body, _ = _compile(alone, settings, sections=None, greeting=True, view_link=True)
            size = len(html_body.encode("utf-8"))
            if size > budget:
                found.append(Oversized(teaser, size))
    return found
