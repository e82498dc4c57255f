"""Documents generated from the settings models: the JSON schema and the Markdown reference
of every key (``docs/configuration.md``)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from digest.config.settings import Settings


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()


# Types as people read them, in the singular and the plural (for "list of ...").
_NAMES: dict[Any, tuple[str, str]] = {
    str: ("string", "strings"),
    int: ("integer", "integers"),
    float: ("number", "numbers"),
    bool: ("true/false", "true/false values"),
    SecretStr: ("string (secret)", "secret strings"),
    Path: ("path", "paths"),
}


def type_text(ann: Any, *, plural: bool = False) -> str:
    """A settings field's type as a reader of the reference says it: ``list of strings``,
    ``integer``, ``true/false``, ``one of: "a", "b"``; ``optional`` when it may be left out."""
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Annotated:
        return type_text(args[0], plural=plural)
    if origin in (Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a, plural=plural) for a in kept)
        return f"{text} (optional)" if len(kept) < len(args) else text
    if origin is Literal:
        return "one of: " + ", ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_text(args[0], plural=True)}" if args else "list"
    if origin is dict:
        return f"table of {type_text(args[1], plural=True)}" if len(args) == 2 else "table"
    if ann in _NAMES:
        return _NAMES[ann][1 if plural else 0]
    return getattr(ann, "__name__", None) or str(ann)


def reference_markdown() -> str:
    """Every key with its type, default and meaning, generated from the models."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `digest/config/` by `digest config reference`; do not edit by hand.",
        "Every key can be overridden from the environment as `DIGEST__<PATH>` with `__` between",
        "levels, e.g. `DIGEST__DELIVERY__SMTP__HOST`. Keys marked *env only* must come from there.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows = []
        nested: list[tuple[str, type[BaseModel]]] = []
        for name, f in model.model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if extra.get("internal"):
                continue
            ann = f.annotation
            key = f"{prefix}{name}"
            args = getattr(ann, "__args__", ())
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((key, ann))
                continue
            if args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
                nested.append((f"{key}.<key>", args[-1]))
                continue
            if f.is_required():
                default = "*required*"
            elif f.default_factory is not None:
                default = f"`{f.default_factory()!r}`"  # type: ignore[call-arg]
            elif isinstance(f.default, SecretStr):
                default = "*env only*"
            else:
                default = f"`{f.default!r}`"
            desc = (f.description or "").replace("|", "\\|")
            kind = type_text(ann).replace("|", "\\|")
            rows.append(f"| `{key}` | {kind} | {default} | {desc} |")
        title = prefix.rstrip(".") or "(top level)"
        lines.append(f"## `{title}`")
        if model.__doc__ and model is not Settings:
            lines.append("")
            lines.append(" ".join(model.__doc__.split()))
        lines.append("")
        if rows:
            lines.extend(["| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows])
            lines.append("")
        for key, sub in nested:
            walk(sub, key + ".")

    walk(Settings, "")
    return "\n".join(lines).rstrip() + "\n"
