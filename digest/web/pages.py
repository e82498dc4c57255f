"""The web pages' templates: the Jinja2 environment over ``templates/web/``, ``Pages`` (renders a
page with what every page shares, and knows the Content-Security-Policy that allows exactly the
pages' stylesheet) and the digests and sections offered on the choice forms.

Pages are rendered on the server and need no JavaScript; their one stylesheet is inlined and
allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from digest.config import Settings
from digest.render import templates
from digest.text import text_direction

TEMPLATES = "web"
STYLESHEET = "web/style.css"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The web pages' Jinja2 environment (created on first use, then shared): every page is
    HTML, so everything is escaped."""
    return templates.environment(STYLESHEET, autoescape=True)


@dataclass(frozen=True, slots=True)
class _Choice:
    key: str
    title: str


@dataclass(frozen=True, slots=True)
class Group:
    """One digest on the choice forms: its sections not shown under an earlier digest, and
    the titles of those that were."""

    key: str
    title: str
    sections: tuple[_Choice, ...]
    shared: tuple[str, ...]


def choice_groups(settings: Settings) -> list[Group]:
    groups = []
    shown: set[str] = set()
    for key, digest in settings.digests.items():
        own = [s for s in digest.sections if s not in shown]
        shown.update(own)
        groups.append(
            Group(
                key=key,
                title=digest.title,
                sections=tuple(_Choice(s, settings.sections[s].title) for s in own),
                shared=tuple(settings.sections[s].title for s in digest.sections if s not in own),
            )
        )
    return groups


class Pages:
    """Renders the templates with what every page shares (publication, language, stylesheet)."""

    def __init__(self, settings: Settings) -> None:
        self.env = environment()
        css = (templates.templates_dir(STYLESHEET) / STYLESHEET).read_text(encoding="utf-8")
        self.stylesheet = Markup(css)
        digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
        self.csp = "; ".join(
            [
                "default-src 'none'",
                f"style-src 'sha256-{digest}'",
                "img-src 'self' https: data:",
                "form-action 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ]
        )
        pub = settings.publication
        self.shared = {
            "publication": pub,
            "lang": pub.lang,
            "dir": text_direction(pub.lang),
            "stylesheet": self.stylesheet,
        }

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(f"{TEMPLATES}/{template}.html.j2")
        return HTMLResponse(page.render(**self.shared, **context), status_code=status_code)

    def message(
        self,
        title: str,
        *paragraphs: str,
        status_code: int = 200,
        links: Iterable[tuple[str, str]] = (),
    ) -> HTMLResponse:
        return self.render(
            "message", status_code, title=title, paragraphs=paragraphs, links=list(links)
        )
