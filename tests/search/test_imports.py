"""``search`` never imports torch (docs/design.md, "Layout": serving needs numpy + faiss only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_search_and_its_cli_do_not_import_torch():
    code = (
        "import sys, search, search.cli, search.build, search.recommender, search.catalogue\n"
        "from search import Recommender\n"
        "search.cli.build_parser()\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "imports",
    [
        "import search",
        "from search import Catalogue, NotBuiltError",
    ],  # the catalogue alone: `search clusters`, title lookups
)
def test_importing_search_alone_does_not_load_faiss(imports):
    code = f"import sys\n{imports}\nprint('faiss' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.strip() == "False", result.stderr
