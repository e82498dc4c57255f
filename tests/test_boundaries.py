"""The layout's rules, checked on the import statements of every module of ``digest/``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PKG = ROOT / "digest"
PURE = (
    "digest.compose",
    "digest.render",
    "digest.gather.feeds",
    "digest.gather.sections",
    "digest.gather.pages",
)
IO_MODULES = (
    "requests",
    "socket",
    "sqlalchemy",
    "smtplib",
    "urllib.request",
    "http.client",
    "digest.store",
    "digest.delivery",
    "digest.gather.http",
    "digest.factory",
    "digest.jobs",
)
ADAPTERS = ("digest.gather.http", "digest.delivery", "digest.store")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = {_module(p): _imports(p) for p in PKG.rglob("*.py") if "migrations" not in p.parts}


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_library_never_imports_prefect_or_flows(module: str) -> None:
    # The CLI may, inside the commands that run flows, so that `digest --help` stays fast.
    imports = (
        _imports(PKG / "cli.py", top_level_only=True)
        if module == "digest.cli"
        else (MODULES[module])
    )
    assert not {i for i in imports if _under(i, ("prefect", "flows"))}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, PURE)))
def test_pure_stages_do_no_io(module: str) -> None:
    assert not {i for i in MODULES[module] if _under(i, IO_MODULES)}


@pytest.mark.parametrize("module", ["digest.models", "digest.errors"])
def test_models_and_errors_stand_alone(module: str) -> None:
    assert not {i for i in MODULES[module] if i.startswith("digest")}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, ADAPTERS)))
def test_adapters_never_import_a_sibling_adapter(module: str) -> None:
    own = next(a for a in ADAPTERS if _under(module, (a,)))
    others = tuple(a for a in ADAPTERS if a != own)
    assert not {i for i in MODULES[module] if _under(i, others)}
