"""Reading settings: a TOML file merged with ``DIGEST__SECTION__KEY`` environment overrides,
validated once, every problem reported with its key path as a ``ConfigError``."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from digest.config.base import ENV_PREFIX, _secret_paths
from digest.config.settings import Settings
from digest.errors import ConfigError


def _env_value(raw: str) -> Any:
    raw = raw.strip()
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _key_type(path: tuple[str, ...]) -> Any:
    """The type of the setting at ``path`` (dict levels take a key), or None when there is
    no such setting."""
    node: Any = Settings
    keyed = False
    for part in path:
        if keyed:
            keyed = False
            continue
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        field = node.model_fields.get(part)
        if field is None:
            return None
        node = field.annotation
        if get_origin(node) is dict:
            node, keyed = get_args(node)[1], True
    return None if keyed else node


def _typed(path: tuple[str, ...], value: Any) -> Any:
    """An override's text as a value of its key's type (``"250"`` → 250, ``"false"`` →
    False), as pydantic converts text; left as it is when it does not convert, so that the
    settings' (strict) validation reports it with its key path."""
    kind = _key_type(path)
    if not isinstance(value, str) or kind is None:
        return value
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return value  # a whole section is given as JSON, or not at all
    try:
        return TypeAdapter(kind).validate_strings(value)
    except ValidationError:
        return value


def _typed_overrides(over: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Overrides with each text converted to its key's type (``_typed``)."""
    return {
        k: _typed_overrides(v, (*path, k)) if isinstance(v, Mapping) else _typed((*path, k), v)
        for k, v in over.items()
    }


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``DIGEST__A__B=value`` variables (keys lower-cased). Values are
    stripped, and parsed as JSON when they start with ``[`` or ``{``; a secret's value is taken
    exactly as it is, so that white space around it is refused (``Settings``), not dropped.
    ``parse_settings`` converts the text to each key's type (``_typed``)."""
    secrets = set(_secret_paths(Settings))
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value if tuple(parts) in secrets else _env_value(value)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def _problems(e: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and the reference)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if not err["loc"] and err["type"] == "value_error":
            # Cross-reference checks of the whole file name their own key paths.
            for part in msg.split("; "):
                path, _, m = part.partition(": ")
                out.append((path, m) if m else (loc, part))
            continue
        out.append((loc, msg))
    return out


def parse_settings(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate a settings mapping merged with environment overrides; raise ConfigError."""
    environ = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    for path in _secret_paths(Settings):
        if _get(data, path):
            env = ENV_PREFIX + "__".join(p.upper() for p in path)
            problems.append(
                (".".join(path), f"secrets are read only from the environment; set {env}")
            )
    merged = _merge(dict(data), _typed_overrides(env_overrides(environ)))
    merged.pop("base_dir", None)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(source, problems + _problems(e)) from None
    if problems:
        raise ConfigError(source, problems)
    return settings.model_copy(update={"base_dir": (base_dir or Path(".")).resolve()})


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate a TOML file. Raises ConfigError naming the file and keys."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [("(file)", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [("(file)", f"cannot read: {e}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [("(syntax)", str(e))]) from None
    return parse_settings(data, source=str(p), base_dir=p.parent, environ=environ)
