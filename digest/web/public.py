"""The public routes: ``/healthz``, and the web version of an edition (``/v/<edition id>``,
"View in browser" in the email).

Only editions that went out are public, so a draft never leaks. The page is the email itself,
inline styles and ``<style>`` block included, so this route has its own policy: inline styles
and https images, still no script; framing by the app's own pages (the editors' preview); and
caching, since it is the same page for everyone who got that variant.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from digest.models import EditionStatus
from digest.render import personalise, render_variant
from digest.render.archive import ATOM_TYPE, feed_url
from digest.render.email import view_sections
from digest.web.links import MAX_TOKEN
from digest.web.site import SiteDep

PUBLIC_EDITION = (EditionStatus.SENDING, EditionStatus.SENT)
VIEW_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src https:",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "base-uri 'none'",
    ]
)
VIEW_HEADERS = {
    "Content-Security-Policy": VIEW_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    # Nothing personal in it: the same page for everyone who got that variant.
    "Cache-Control": "public, max-age=300",
}
# Longer than any list of section keys a real digest has; refused before any work.
MAX_VIEW_SECTIONS = 1000

router = APIRouter()


class WebVersions:
    """Rendered web versions of edition variants, by (edition id, sorted section keys or None),
    the most recently used ``limit`` of them. An edition that went out no longer changes, so
    an entry never goes stale."""

    def __init__(self, limit: int = 128) -> None:
        self.limit = limit
        self._pages: OrderedDict[tuple[str, tuple[str, ...] | None], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, tuple[str, ...] | None]) -> str | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: tuple[str, tuple[str, ...] | None], page: str) -> None:
        with self._lock:
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self.limit:
                self._pages.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pages)


# Health ------------------------------------------------------------------------------------------
@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})


# Web version of an edition ("View in browser") ---------------------------------------------------
@router.api_route("/v/{edition_id}", methods=["GET", "HEAD"])
def web_version(
    request: Request, site: SiteDep, edition_id: str, s: str | None = None
) -> HTMLResponse:
    """The edition as its subscribers got it, for the sections ``s`` (comma-separated keys;
    none: all), with the personal links pointing to the sign-up page and the neutral
    greeting. Only editions that went out; anything else is a 404, drafts included."""
    not_found = site.nothing_here
    web_versions: WebVersions = request.app.state.web_versions
    if len(edition_id) > MAX_TOKEN or len(s or "") > MAX_VIEW_SECTIONS:
        return not_found()
    edition = site.store.edition(edition_id)
    if (
        edition is None
        or edition.status not in PUBLIC_EDITION
        or edition.digest not in site.settings.digests
    ):
        return not_found()
    asked: frozenset[str] | None = None
    if s:
        asked = frozenset(k for k in s.split(",") if k)
        if not asked <= {section.key for section in edition.sections}:
            return not_found()
    keys = view_sections(edition, asked)
    page = web_versions.get((edition.id, keys))
    if page is None:
        variant = render_variant(
            edition,
            site.settings,
            sections=None if keys is None else frozenset(keys),
            view_link=False,
        )
        page, _ = personalise.personalise(
            variant,
            unsubscribe_url=site.subscribe_url,
            preferences_url=site.subscribe_url,
            name="",
        )
        # Readers that look for a feed on the page find the digest's archive feed.
        feed = escape(feed_url(site.settings, edition.digest))
        link = f'<link rel="alternate" type="{ATOM_TYPE}" href="{feed}">'
        page = page.replace("</head>", f"{link}\n</head>", 1)
        web_versions.put((edition.id, keys), page)
    return HTMLResponse(page, headers=VIEW_HEADERS)
