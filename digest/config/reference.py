"""Documents generated from the settings models: the JSON schema and the Markdown reference
of every key (``docs/configuration.md``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

from digest.config.settings import Settings


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()


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

    def type_name(ann: Any) -> str:
        text = getattr(ann, "__name__", None) or str(ann)
        text = str(ann) if "[" in str(ann) else text
        return text.replace("typing.", "").replace("pydantic.types.", "")

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
            rows.append(f"| `{key}` | `{type_name(ann)}` | {default} | {desc} |")
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
