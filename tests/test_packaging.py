"""Packaging habits: every import of src/ is a declared dependency (an optional part's in its extra), and an
optional part used without its extra says which extra to install."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from transferlm.cli.main import main
from transferlm.errors import MissingExtraError
from transferlm.extras import require

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "transferlm").rglob("*.py"))


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normal(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}


def imports_and_extras(path: Path) -> tuple[set[str], set[str]]:
    """The top-level names a file imports (``import``, ``from``, and ``require("x", ...)``), and the extras it
    ``require``s."""
    names, extras = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
            module, extra = (getattr(arg, "value", None) for arg in node.args[:2])
            names |= {module.split(".")[0]} if isinstance(module, str) else set()
            if isinstance(extra, str):  # a computed one (a registry's entry) is required literally where it lives
                extras.add(extra)
    return {n for n in names if n not in sys.stdlib_module_names and n != "transferlm"}, extras


def test_every_import_is_a_dependency_and_an_optional_one_is_in_the_extra_its_module_requires():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = requirement_names(project["dependencies"])
    extras = {name: requirement_names(reqs) for name, reqs in project["optional-dependencies"].items()}
    distributions = packages_distributions()
    problems = []
    for path in SOURCES:
        names, required = imports_and_extras(path)
        allowed = core.union(*(extras[e] for e in required if e in extras))
        problems += [f"{path.relative_to(ROOT)}: require(..., {e!r}): no such extra" for e in required - set(extras)]
        for name in sorted(names):
            if name not in distributions:
                problems.append(f"{path.relative_to(ROOT)}: imports {name}, which no installed distribution provides")
                continue
            declared = {normal(d) for d in distributions[name]} & allowed
            if not declared:
                where = f"or the extra {', '.join(sorted(required))}" if required else "(or require() it in an extra)"
                problems.append(f"{path.relative_to(ROOT)}: imports {name} ({', '.join(distributions[name])}), "
                                f"not in [project].dependencies {where}")
    assert not problems, "\n".join(problems)


def test_require_names_the_extra_of_a_missing_package(monkeypatch):
    from transferlm.experiments.tune import make_pruner

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(MissingExtraError) as raised:
        make_pruner("median")
    assert str(raised.value) == "`transferlm tune` needs optuna: pip install 'transferlm[tune]'"


def test_a_package_missing_a_dependency_of_its_own_is_not_blamed_on_the_extra(tmp_path, monkeypatch):
    (tmp_path / "halfinstalled").mkdir()
    (tmp_path / "halfinstalled" / "__init__.py").write_text("import transferlm_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as raised:
        require("halfinstalled", "serve", "`transferlm serve`")
    assert raised.value.name == "transferlm_test_absent_dependency"


def test_the_cli_reports_a_missing_extra_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "onnx")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "`transferlm export` needs onnxruntime: pip install 'transferlm[export]'" in err
    assert not (tmp_path / "onnx").exists()


def test_serve_without_its_extra_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "transferlm.serving.app", raising=False)  # imported afresh, without fastapi
    code = main(["serve", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "`transferlm serve` needs fastapi: pip install 'transferlm[serve]'" in err


def test_running_an_export_without_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    from transferlm.inference.onnx_runtime import OnnxForward

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"running an ONNX export needs onnxruntime: .*transferlm\[export\]"):
        OnnxForward(tmp_path / "model.onnx")
