"""Render: an edition becomes an email, once per variant (a set of sections).

``email`` compiles Jinja2 → MJML → HTML (mjml-python), inlines the CSS and renders the text part;
``intro`` turns the editor's Markdown note into sanitised HTML and plain text; ``personalise``
swaps the per-recipient tokens; ``mime`` builds the RFC 5322 message; ``links`` adds UTM
parameters and the CMS's image width parameter; ``text`` wraps the plain-text part. ``archive``
makes the public archive's entries and their Atom feed. Everything
here is pure: no network, no clock, and no disk except reading the templates.
"""

from digest.render.email import render_variant
from digest.render.intro import intro_html

__all__ = ["intro_html", "render_variant"]
