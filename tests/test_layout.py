"""The library's shape: its folders are its layers (a module imports only from its own floor or
below), and no function is a tangle (at most about 80 lines of body)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "redundancy"
#: the floors, bottom up: a module may import from its own floor and those below it
FLOORS = ["base", "data", "representations", "methods", "paper", "run", "front"]
MAX_BODY_LINES = 80


def _floor(module: str) -> str:
    """'redundancy.methods.probe' -> 'methods'; top-level modules are the base; the package's
    front door (``__init__``, re-exporting the everyday names) and the command line are the top."""
    parts = module.split(".")
    if parts[1:] in (["__main__"], ["__init__"]):
        return "front"
    return parts[1] if len(parts) > 2 and parts[1] in FLOORS else "base"


def _modules():
    for f in sorted(LIB.rglob("*.py")):
        rel = f.relative_to(LIB.parent).with_suffix("")
        yield f, ".".join(rel.parts)


def _imports(f: Path, module: str):
    """Every redundancy module that ``f`` imports, at the top or inside a function."""
    package = module.rsplit(".", 1)[0] if f.name != "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module] if node.module and node.module.startswith("redundancy") else []
                if node.module == "redundancy":
                    names = [f"redundancy.{a.name}" for a in node.names]
            yield from names
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("redundancy"))


def test_every_folder_is_a_layer_and_imports_only_downwards():
    up = []
    for f, module in _modules():
        mine = FLOORS.index(_floor(module))
        for target in _imports(f, module):
            if FLOORS.index(_floor(target)) > mine:
                up.append(f"{module} imports {target} ({_floor(target)} is above {_floor(module)})")
    assert not up, "\n".join(up)


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    """The check above can fail: a methods module importing the paper layer is caught."""
    f = tmp_path / "probe.py"
    f.write_text("def f():\n    from ..paper.sections import Study\n")
    targets = list(_imports(f, "redundancy.methods.probe"))
    assert targets == ["redundancy.paper.sections"]
    assert FLOORS.index(_floor(targets[0])) > FLOORS.index(_floor("redundancy.methods.probe"))


def _body_lines(node) -> int:
    body = node.body
    doc = (isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
           and isinstance(body[0].value.value, str) and len(body) > 1)
    start = body[1].lineno if doc else body[0].lineno
    return node.end_lineno - start + 1


@pytest.mark.parametrize("f", [f for f, _ in _modules()], ids=lambda f: str(f.relative_to(LIB)))
def test_no_function_is_longer_than_about_80_lines(f):
    long = [f"{node.name} (line {node.lineno}): {_body_lines(node)} lines"
            for node in ast.walk(ast.parse(f.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_BODY_LINES]
    assert not long, f"split these into units with one job each: {long}"


ROOT = LIB.parents[1]
#: files outside the library that name its modules in code: scripts, notebooks, the book, the README
OUTSIDE = ["run.sh", ".ci/run", "README.md", "benchmarks/*.py", "notebooks/*.ipynb", "book/*.md", "tools/*"]


def _named_imports():
    import re

    pattern = re.compile(r"from (redundancy(?:\.\w+)*) import ([\w, ]+)|import (redundancy(?:\.\w+)+)")
    for glob in OUTSIDE:
        for f in sorted(ROOT.glob(glob)):
            for m in pattern.finditer(f.read_text(errors="replace")):
                module = m.group(1) or m.group(3)
                names = [n.split()[0] for n in (m.group(2) or "").split(",") if n.strip()]  # "a as b" -> "a"
                yield f.relative_to(ROOT), module, names


def test_every_library_import_named_outside_the_library_resolves():
    """A module moved or renamed in the library cannot leave a stale import in a script, a
    notebook, the book or the README (run.sh's paper-scale command once imported a module that
    the layering had moved)."""
    import importlib

    found = list(_named_imports())
    assert len(found) > 20  # the scan really reads the files
    bad = []
    for where, module, names in found:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            bad.append(f"{where}: {module} ({e})")
            continue
        bad += [f"{where}: {module}.{n}" for n in names if not hasattr(mod, n)
                and importlib.util.find_spec(f"{module}.{n}") is None]
    assert not bad, "stale imports of the library:\n" + "\n".join(bad)
