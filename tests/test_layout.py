"""The package layout's rules, checked on the source tree: a rule that only a README states drifts in a turn.

The stages run plan < code < analyse < loop < report < review < cli; a stage imports only the shared modules
(schemas, config, runs), `experiments` and the stages before it, lazy imports included. `experiments/` is the
lower layer and imports nothing from `agent/`.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["plan", "code", "analyse", "loop", "report", "review", "cli"]
SHARED = {"schemas", "results", "config", "runs"}
MAX_LINES = 400


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at top level or inside a function, as dotted names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def stage_of(parts: list[str]) -> int:
    """-1 for the shared modules, else the stage's place in STAGES."""
    return -1 if parts[0] in SHARED else STAGES.index(parts[0])


def test_experiments_imports_nothing_from_agent() -> None:
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules("experiments")
        for name in imported(path)
        if name == "agent" or name.startswith("agent.")
    }
    assert not offending


def test_each_stage_imports_only_the_shared_modules_and_earlier_stages() -> None:
    offending = []
    for path in modules("agent"):
        parts = list(path.relative_to(ROOT / "agent").with_suffix("").parts)
        if parts == ["__init__"]:
            continue
        own = stage_of(parts)
        for name in imported(path):
            target = name.split(".")[1:]
            if name.split(".")[0] != "agent" or not target or target[0] not in SHARED | set(STAGES):
                continue
            if stage_of(target) > own:
                offending.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offending


def test_no_module_reaches_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in ("agent", "experiments")
        for path in modules(package)
        if (n := len(path.read_text().splitlines())) >= MAX_LINES
    }
    assert not long


@pytest.mark.parametrize(
    "package", sorted({p.parent for p in modules("agent") if p.name == "__init__.py"} - {ROOT / "agent"})
)
def test_each_subpackage_names_what_it_offers(package: Path) -> None:
    init = package / "__init__.py"
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"{init.relative_to(ROOT)} has no docstring"
    dotted = ".".join(package.relative_to(ROOT).parts)
    offered = importlib.import_module(dotted).__all__
    for name in offered:
        assert (
            (package / f"{name}.py").is_file()
            or (package / name / "__init__.py").is_file()
            or hasattr(importlib.import_module(dotted), name)
        ), f"{dotted}.__all__ names {name!r}, which it does not offer"
    submodules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    submodules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    if dotted != "agent.cli":
        assert sorted(submodules) == sorted(offered), f"{dotted}.__all__ lists its modules"
    for name in submodules:
        assert f"`{name}`" in ast.get_docstring(tree), f"{dotted}'s docstring does not describe {name}"


def defined(path: Path) -> set[str]:
    """The names a module defines itself (classes, functions, assignments), not the ones it imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_names_are_imported_from_the_module_that_defines_them() -> None:
    """No re-export shims: a record type comes from experiments.records, not through agent.schemas."""
    own = {module: defined(ROOT / f"{module.replace('.', '/')}.py") for module in ("agent.schemas",)}
    offending = []
    for path in [*modules("agent"), *modules("experiments"), *modules("tests"), *modules("bench")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in own:
                offending += [
                    f"{path.relative_to(ROOT)}: {a.name}"
                    for a in node.names
                    if a.name not in own[node.module]
                ]
    assert not offending
