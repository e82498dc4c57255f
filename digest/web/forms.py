"""Reading the fields of a posted form: the subscribers' forms (``Fields``, a route dependency)
and one text field or all of a name (``form_text``, ``form_texts``), which the editors' pages
use too. A field that is a file, or missing, reads as nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException


async def form_fields(request: Request) -> FormData:
    """The request's form fields; empty for a body that is not a form or cannot be parsed
    (each route decides what an empty form means)."""
    try:
        return await request.form(max_files=0, max_fields=200)
    except (StarletteHTTPException, ValueError):
        return FormData()


Fields = Annotated[FormData, Depends(form_fields)]


def form_text(fields: FormData, name: str) -> str:
    """The field ``name`` as text; empty when it is missing or a file."""
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def form_texts(fields: FormData, name: str) -> list[str]:
    """Every text field called ``name`` (ticked boxes), in the order sent."""
    return [v for v in fields.getlist(name) if isinstance(v, str)]
