"""The package's layers import one way only: lint-imports checks pyproject's [tool.importlinter] contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"  # the venv's, when pytest runs from it
    found = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.skip("lint-imports is missing: pip install import-linter (the dev extra: pip install -e '.[dev]')")
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    result = subprocess.run([lint_imports(), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"an import breaks the layering in pyproject.toml:\n{report}"
    assert "transferlm layers KEPT" in report
