"""The house rules of the code's structure, checked from the source (DESIGN section 2).

- A package imports only packages below it: base ← recipes ← compile; terraform, store ←
  coordination; all of those ← runs ← inventory ← service ← cli. ``providers_map`` is pure
  and imports nothing of the engine; the front doors import the engine but never its CLI.
- ``engine/`` imports no web, Slack or widget framework (the CLI reaches the HTTP server
  only through ``webhooks``).
- No module imports another in a circle, counting imports inside functions and
  ``TYPE_CHECKING`` blocks.

The checker runs on the real tree and, to prove it can fail, on small trees made with a
bad import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOP_PACKAGES = ("engine", "providers_map", "templates", "webhooks", "chatops", "notebooks")

BASE = {
    "engine.errors",
    "engine.files",
    "engine.canonical",
    "engine.agent",
    "engine.metrics",
    "engine.builtins",
}
ENGINE_BELOW_SERVICE = BASE | {
    "engine.recipes",
    "engine.compile",
    "engine.terraform",
    "engine.store",
    "engine.coordination",
    "engine.runs",
}
SHARED = {"providers_map", "templates"}
# Between runs and the service: compares clouds with the runs' states.
INVENTORY = "engine.inventory"
# The scaled mode (queue, workers): above the service, which its workers drive runs with.
SCALED = "engine.scaled"
ENGINE_FOR_FRONT_DOORS = (
    ENGINE_BELOW_SERVICE | {"engine.access", INVENTORY, "engine.service", SCALED} | SHARED
)
# Above the service, below the front doors: repositories kept deployed (GitOps).
GITOPS = "engine.gitops"
# What each unit may import besides itself; the longest matching prefix decides.
ALLOWED: dict[str, set[str]] = {
    "engine.errors": set(),
    "engine.metrics": set(),
    "engine.files": {"engine.errors"},  # its errors are the product's
    "engine.canonical": set(),
    "engine.builtins": set(),
    "engine.agent": set(),
    "providers_map": {"templates"},  # bootstrap scripts are shipped as templates
    "templates": set(),
    "engine.recipes": BASE | SHARED,
    "engine.compile": BASE | SHARED | {"engine.recipes"},
    "engine.terraform": BASE,
    "engine.store": BASE,
    "engine.coordination": BASE | {"engine.store"},
    "engine.runs": ENGINE_BELOW_SERVICE | SHARED,
    "engine.access": BASE | {"engine.store"},
    INVENTORY: ENGINE_BELOW_SERVICE | SHARED,
    "engine.service": ENGINE_BELOW_SERVICE | SHARED | {"engine.access", INVENTORY},
    SCALED: ENGINE_BELOW_SERVICE | SHARED | {"engine.access", INVENTORY, "engine.service"},
    GITOPS: ENGINE_FOR_FRONT_DOORS,
    "engine.cli": ENGINE_FOR_FRONT_DOORS | {GITOPS, "webhooks", "chatops", "engine.cli.client"},
    # The REST API's client: the standard library only, so notebooks reuse it.
    "engine.cli.client": set(),
    "engine": ENGINE_FOR_FRONT_DOORS,  # modules at the top of engine/ other than the base
    "webhooks": ENGINE_FOR_FRONT_DOORS | {GITOPS, "chatops"},
    "chatops": ENGINE_FOR_FRONT_DOORS,
    # Embedded, a notebook serves its runs' agents (webhooks) as the embedded CLI does.
    "notebooks": ENGINE_FOR_FRONT_DOORS | {"webhooks", "engine.cli.client"},
}
FRAMEWORKS = (
    "flask",
    "werkzeug",
    "apiflask",
    "aiohttp",
    "starlette",
    "uvicorn",
    "quart",
    "slack_bolt",
    "slack_sdk",
    "ipywidgets",
    "IPython",
    "voila",
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from pkg import mod`` imports a module when ``mod`` is one.
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def project_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for top in TOP_PACKAGES:
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else []:
            if "migrations" in path.parts:
                continue
            modules[module_name(path, root)] = path
    return modules


def unit_of(name: str) -> str:
    """The longest key of ALLOWED that ``name`` is (or is inside of)."""
    best = ""
    for unit in ALLOWED:
        if (name == unit or name.startswith(unit + ".")) and len(unit) > len(best):
            best = unit
    return best


def violations(root: Path) -> list[str]:
    """Every broken house rule under ``root``, as ``file:line: message``."""
    modules = project_modules(root)
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        unit = unit_of(name)
        where = path.relative_to(root)
        for line, target in imports_of(path, name):
            top = target.split(".")[0]
            if name.startswith("engine") and top in FRAMEWORKS:
                problems.append(f"{where}:{line}: engine imports the framework `{top}`")
            if top not in TOP_PACKAGES:
                continue
            if target in modules and target != name:
                graph[name].add(target)
            target_unit = unit_of(target)
            if not target_unit or target_unit == unit:
                continue
            if target_unit not in ALLOWED.get(unit, set()):
                problems.append(f"{where}:{line}: `{unit}` may not import `{target_unit}`")
    problems.extend(f"import circle: {' → '.join(c)}" for c in circles(graph))
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each closed on itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                found.append([*sorted(group), sorted(group)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_tree_keeps_the_house_rules() -> None:
    assert violations(REPO) == []


def test_every_package_says_what_it_owns() -> None:
    for init in sorted((REPO / "engine").rglob("__init__.py")):
        if "migrations" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{init.relative_to(REPO)} needs a docstring"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for top in TOP_PACKAGES:
        (tmp_path / top).mkdir(exist_ok=True)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"engine/store/runstore.py": "from engine.runs.manager import RunManager\n"},
            "engine/store/runstore.py:1: `engine.store` may not import `engine.runs`",
        ),
        (
            {"engine/recipes/loader.py": "def f():\n    from engine.compile import compiler\n"},
            "engine/recipes/loader.py:2: `engine.recipes` may not import `engine.compile`",
        ),
        (
            {"providers_map/aws.py": "from engine.recipes.model import Node\n"},
            "providers_map/aws.py:1: `providers_map` may not import `engine.recipes`",
        ),
        (
            {"engine/coordination/hub.py": "import flask\n"},
            "engine/coordination/hub.py:1: engine imports the framework `flask`",
        ),
        (
            {"webhooks/app.py": "from engine.cli import app\n"},
            "webhooks/app.py:1: `webhooks` may not import `engine.cli`",
        ),
        (
            {
                "engine/recipes/a.py": "from engine.recipes import b\n",
                "engine/recipes/b.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from engine.recipes.a import X\n",
            },
            "import circle: engine.recipes.a → engine.recipes.b → engine.recipes.a",
        ),
    ],
    ids=["upward", "upward-in-function", "pure-mapping", "framework", "front-door-cli", "circle"],
)
def test_the_checker_catches_a_broken_rule(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    assert expected in violations(_tree(tmp_path, files))
