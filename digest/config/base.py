"""What every settings model shares: the strict base model, the key pattern, the
environment prefix, and the marker (and finder) of fields that may only come from the
environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

ENV_PREFIX = "DIGEST__"
KEY_RE = r"^[a-z0-9][a-z0-9_-]*$"
Key = Annotated[str, Field(pattern=KEY_RE, description="A short lower-case identifier.")]
# Marks a field that may only come from the environment.
SECRET: JsonDict = {"secret": True}


class _Section(BaseModel):
    # Strict: a value of the wrong type in the file (`paragraphs = true`, `utm = "yes"`,
    # `batch_size = 500.0`) is an error with its key path, never converted. Environment
    # overrides are text: the loader converts them to their key's type first.
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of fields that may only come from the environment (dict levels skipped)."""
    out = []
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if extra.get("secret"):
            out.append((*prefix, name))
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_secret_paths(ann, (*prefix, name)))
    return out
