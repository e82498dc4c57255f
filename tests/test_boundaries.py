"""The layout's rules, checked on the import statements of every module of ``digest/`` and
``flows/``.

One reader (``_imports``) turns a module's import statements into the dotted names it reaches:
relative imports are resolved, and ``from a import b`` counts as both ``a`` and ``a.b`` (``b``
may be a module). Each rule of the layout is then one row of ``FORBIDDEN``: modules under a
prefix never import names under another.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("digest", "flows")
PURE = (
    "digest.compose",
    "digest.render",
    "digest.gather.feeds",
    "digest.gather.sections",
    "digest.gather.pages",
    "digest.text",
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
    "digest.steps",
)
ADAPTERS = ("digest.gather.http", "digest.delivery", "digest.store")

# (modules under this prefix, never import names under these prefixes, why)
FORBIDDEN: list[tuple[str, tuple[str, ...], str]] = [
    ("digest", ("prefect", "flows"), "Prefect lives only in flows/"),
    ("digest.models", ("digest",), "the models stand alone"),
    ("digest.errors", ("digest",), "the errors stand alone"),
    (
        "digest.store",
        (
            "digest.compose",
            "digest.render",
            "digest.gather",
            "digest.delivery",
            "digest.web",
            "digest.cli",
        ),
        "the store knows rows, not stages or entry points",
    ),
    ("digest.web", ("digest.cli", "flows"), "entry points never import each other"),
    (
        "digest.delivery",
        ("digest.render", "digest.compose", "digest.gather", "digest.audience", "digest.web"),
        "providers take a finished message; tokens come as data",
    ),
    (
        "digest.render",
        ("digest.delivery", "digest.audience", "digest.web", "digest.gather"),
        "render turns an edition into messages; it knows no provider, audience or route",
    ),
    (
        "digest.gather",
        (
            "digest.compose",
            "digest.render",
            "digest.delivery",
            "digest.audience",
            "digest.web",
            "digest.cli",
        ),
        "gather is the first stage: it never reaches later stages or entry points",
    ),
    (
        "digest.text",
        ("digest.gather", "digest.compose", "digest.render", "digest.store", "digest.delivery"),
        "shared text helpers sit below every stage",
    ),
    (
        "digest.compose",
        ("digest.steps", "digest.cli", "digest.web"),
        "stages never import steps or entry points",
    ),
    (
        "digest.render",
        ("digest.steps", "digest.cli", "digest.web"),
        "stages never import steps or entry points",
    ),
    ("digest.gather", ("digest.steps",), "stages never import steps"),
    ("digest.steps", ("digest.cli", "digest.web", "flows"), "steps never import entry points"),
    ("flows", ("digest.cli", "digest.web"), "entry points never import each other"),
    (
        "digest.cli",
        ("digest.web", "flows"),
        "the CLI imports the web app and flows only inside commands (top-level imports are read)",
    ),
    (
        "digest.audience",
        ("digest.render", "digest.steps", "digest.web", "digest.cli", "flows"),
        "the audience's actions know subscribers and tokens, not messages or entry points",
    ),
]


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every dotted name the module's import statements reach (see the module docstring)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _read(path.read_text(encoding="utf-8"), package, top_level_only=top_level_only)


def _read(source: str, package: str, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{a.name}" for a in node.names if a.name != "*")
    return found


MODULES = {
    _module(p): _imports(p)
    for pkg in PACKAGES
    for p in (ROOT / pkg).rglob("*.py")
    if "migrations" not in p.parts
}
# The CLI imports flows and the web app only inside the commands that need them, so that
# `digest --help` stays fast: its rules read only its top-level imports.
TOP_LEVEL = {
    _module(p): _imports(p, top_level_only=True)
    for p in [ROOT / "digest" / "cli.py", *(ROOT / "digest" / "cli").rglob("*.py")]
    if p.exists()
}


def _under(name: str, prefixes: tuple[str, ...] | str) -> bool:
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _checked_imports(module: str) -> set[str]:
    return TOP_LEVEL.get(module, MODULES[module])


def test_the_reader_resolves_relative_and_from_imports() -> None:
    # Every rule stands on the reader: a relative or `from` import must not slip past it.
    source = (
        "import os.path\n"
        "from . import sibling\n"
        "from ..render import personalise\n"
        "from digest.store import Store\n"
        "def f():\n    from flows import pipeline\n"
    )
    found = _read(source, "digest.delivery")
    assert {
        "os.path",
        "digest.delivery.sibling",
        "digest.render",
        "digest.render.personalise",
        "digest.store.Store",
        "flows.pipeline",
    } <= found
    assert "flows" not in _read(source, "digest.delivery", top_level_only=True)


CASES = [
    (module, banned, why)
    for who, banned, why in FORBIDDEN
    for module in sorted(MODULES)
    if _under(module, who)
]


@pytest.mark.parametrize(("module", "banned", "why"), CASES, ids=[c[0] for c in CASES])
def test_layout_rules(module: str, banned: tuple[str, ...], why: str) -> None:
    reached = {i for i in _checked_imports(module) if _under(i, banned)}
    assert not reached, f"{module} imports {sorted(reached)}: {why}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, PURE)))
def test_pure_stages_do_no_io(module: str) -> None:
    assert not {i for i in MODULES[module] if _under(i, IO_MODULES)}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, ADAPTERS)))
def test_adapters_never_import_a_sibling_adapter(module: str) -> None:
    own = next(a for a in ADAPTERS if _under(module, a))
    others = tuple(a for a in ADAPTERS if a != own)
    assert not {i for i in MODULES[module] if _under(i, others)}


# The web app's route modules (each defines an APIRouter). They meet only in WEB_APP, which
# includes them; what several of them need lives in the other, non-route modules of digest.web.
WEB_ROUTERS = (
    "digest.web.archive",
    "digest.web.clicks",
    "digest.web.editor",
    "digest.web.public",
    "digest.web.signup",
    "digest.web.subscribers",
    "digest.web.webhooks",
)
WEB_APP = "digest.web.app"


def test_the_web_routers_are_all_listed() -> None:
    defining = {
        _module(p)
        for p in (ROOT / "digest" / "web").rglob("*.py")
        if "APIRouter(" in p.read_text(encoding="utf-8")
    }
    assert defining == set(WEB_ROUTERS)


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if _under(m, "digest.web") and m != WEB_APP)
)
def test_web_routers_meet_only_in_the_app(module: str) -> None:
    """A route module never imports another (nor the app); a shared helper imports none."""
    others = tuple(r for r in (*WEB_ROUTERS, WEB_APP) if r != module)
    reached = {i for i in MODULES[module] if _under(i, others)}
    assert not reached, f"{module} imports {sorted(reached)}: routers meet only in {WEB_APP}"


# A module past this many lines does several things; split it along its seams.
MAX_LINES = 650


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_past_the_split_size(module: str) -> None:
    parts = module.split(".")
    path = ROOT.joinpath(*parts)
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


# Store methods that return everyone at once (or write a ledger from a list of everyone): kept
# as helpers for small stores, which tests set up with them. Nothing that runs for a
# publication calls them: it reads keyset pages (`subscriber_pages`, `choice_pages`,
# `write_ledger`) and counts with GROUP BY (`subscriber_counts`, `delivery_counts`).
WHOLE_TABLE = ("subscribers", "active_subscribers", "create_deliveries")


def _calls(source: str, names: tuple[str, ...]) -> list[tuple[int, str]]:
    """Each call of a method named in ``names`` (``x.name(...)``), with its line."""
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in names
    ]


def test_the_reader_finds_method_calls() -> None:
    source = "store.subscribers()\nx = s.active_subscribers('weekly')\nsubscribers = 1\n"
    assert _calls(source, WHOLE_TABLE) == [(1, "subscribers"), (2, "active_subscribers")]


def test_nothing_reads_every_subscriber_at_once() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line}: {name}()"
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        for line, name in _calls(p.read_text(encoding="utf-8"), WHOLE_TABLE)
    ]
    assert found == [], "read keyset pages or count in the database instead:\n" + "\n".join(found)
