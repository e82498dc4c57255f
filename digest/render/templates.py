"""Where the templates are (``templates_dir``) and the Jinja2 settings every environment over them
shares (``environment``).

``templates/`` holds the email's templates (``email/``) and the web pages' (``web/``, with their
stylesheet). Two environments are built from here, each created on first use and then shared:
``digest.render.email.environment`` for the email and ``digest.web.pages.environment`` for the
web pages. They differ where their output does: the email's escapes only its HTML and MJML
templates (the text part is plain text) and keeps a template's final newline (the text part
ends with one); the web pages are all HTML, so theirs escapes everything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2

from digest.errors import RenderError


def templates_dir(required: str) -> Path:
    """``templates/`` of a checkout or editable install, else the copy inside the wheel: the
    first that holds ``required`` (the email asks for its MJML template, the web app for its
    stylesheet)."""
    here = Path(__file__).resolve()
    candidates = (here.parents[2] / "templates", here.parents[1] / "_templates")
    for path in candidates:
        if (path / required).is_file():
            return path
    raise RenderError(f"no {required} found in {' or '.join(map(str, candidates))}")


def environment(
    required: str,
    *,
    autoescape: bool | Callable[[str | None], bool],
    keep_trailing_newline: bool = False,
) -> jinja2.Environment:
    """A new environment over ``templates_dir(required)``. A misspelt variable fails the render
    (``StrictUndefined``) instead of printing an empty string; block tags leave no blank lines."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir(required)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=keep_trailing_newline,
    )
