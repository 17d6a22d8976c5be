"""The import graph of `app/`: no circles, and infrastructure never imports upwards.

Read from the source (every `import`, also under TYPE_CHECKING), without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

APP = ROOT / "app"
# Infrastructure packages, and what they must not reach: the composition and the domains.
INFRASTRUCTURE = ("app.db", "app.resilience", "app.middleware")
ABOVE = (
    "app.state",
    "app.lifespan",
    "app.factory",
    "app.main",
    "app.api",
    "app.domains",
    "app.items",
)
# The registry of domains: the one module outside a domain's package that imports it.
REGISTRY = "app.domains"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("app.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in APP.rglob("*.py")}
    return {name: imports_of(path) & set(modules) for name, path in modules.items()}


def test_infrastructure_never_imports_the_layers_above_it() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.startswith(INFRASTRUCTURE)
        for target in targets
        if target.startswith(ABOVE)
    ]
    assert upward == []


def test_app_has_no_import_circles() -> None:
    edges = graph()
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(edges[module]):
            if target in path:
                circles.append([*path[path.index(target) :], target])
            elif len(path) < len(edges):
                visit(target, [*path, target])

    for start in sorted(edges):
        visit(start, [start])
    assert circles == []


def test_only_the_registry_knows_the_domains() -> None:
    """Adding or removing a domain touches its own package and `app/domains.py` alone."""
    edges = graph()
    domains = {
        module.split(".")[1]
        for module in edges
        if module.count(".") >= 1 and (ROOT / "app" / module.split(".")[1] / "router.py").exists()
    }
    outside = [
        f"{module} imports {target}"
        for module, targets in edges.items()
        for target in targets
        if target.split(".")[1] in domains
        and module.split(".")[1] != target.split(".")[1]
        and module != REGISTRY
    ]
    assert outside == []
