"""The codebase's shape: ruff's formatting and lint, and the layers of docs/design.md (import-linter)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_formats_and_lints_clean():
    formatted = run("ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    linted = run("ruff", "check", ".")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_imports_follow_the_layers():
    checked = run("lint-imports")
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr
    assert "0 broken" in checked.stdout
