"""The base install serves: every third-party module that search and web import
(and the embedder modules they import) comes with the project's base dependencies
(docs/design.md, "Layout"), and torch is not one of them."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib")

OURS = {"embedder", "search", "web"}


def _name(requirement: str) -> str:
    return (
        re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
        .lower()
        .replace("_", "-")
        .replace(".", "-")
    )


def _closure(requirements: list[str]) -> set[str]:
    """The distributions that installing ``requirements`` brings (extras left out)."""
    seen: set[str] = set()
    todo = [_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in needs if "extra ==" not in r)
    return seen


def _imports(path: Path) -> set[str]:
    """Dotted names of every module ``path`` imports (at any depth of the code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _serving_imports() -> set[str]:
    """Top-level third-party modules imported by search/, web/ and, transitively,
    the embedder modules they import."""
    todo = [*ROOT.glob("search/*.py"), *ROOT.glob("web/*.py")]
    done: set[Path] = set()
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "embedder":
                package = ROOT / module.replace(".", "/")
                todo.append(package / "__init__.py" if package.is_dir() else package.with_suffix(".py"))
            elif top not in OURS and top not in sys.stdlib_module_names:
                third_party.add(top)
    return third_party


def test_search_and_web_need_only_the_base_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _closure(project["dependencies"])
    assert "torch" not in base and "torch" in _closure(project["optional-dependencies"]["train"])
    owners = metadata.packages_distributions()
    modules = _serving_imports()
    assert {"numpy", "faiss", "flask", "rapidfuzz"} <= modules  # the walk sees what serving uses
    used = {_name(dist) for module in modules for dist in owners.get(module, [module])}
    assert used <= base, sorted(used - base)
