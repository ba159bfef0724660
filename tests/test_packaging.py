"""The base install serves: everything that search and web import comes with the
project's base dependencies (docs/design.md, "Layout"), and torch is not one of them."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
SERVING = (  # modules loaded at start-up (site hooks such as setuptools') are not ours
    "import sys\n"
    "startup = set(sys.modules)\n"
    "import json, importlib.metadata as md\n"
    "import search, search.cli, search.build, search.recommender, web, web.__main__, web.gunicorn_conf\n"
    "from search import Recommender\n"
    "from web import create_app\n"
    "top = {name.split('.')[0] for name in set(sys.modules) - startup}\n"
    "owners = md.packages_distributions()\n"
    "print(json.dumps(sorted({dist for name in top for dist in owners.get(name, [])})))\n"
)


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


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


def test_search_and_web_need_only_the_base_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _closure(project["dependencies"])
    assert "torch" not in base and "torch" in _closure(project["optional-dependencies"]["train"])
    done = subprocess.run([sys.executable, "-c", SERVING], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    used = {_name(dist) for dist in json.loads(done.stdout)} - {_name(project["name"])}
    assert used and used <= base, sorted(used - base)
