"""The static rules a code change passes before anything runs it: no new reach into the system.

A model's edit runs in trials (boxed, experiments.sandbox) before anyone approves it, so what it adds is read
first: imports of the modules that reach the shell, network, files or memory, `eval`/`exec`/`__import__`,
and `open` for writing outside the script's folder. Only what the change adds counts: a script that imported
`os` before still may. A change that breaks a rule does not run unless the person has read it and passed
`--trust-edits`.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator

from agent.schemas import CheckResult
from experiments.script_facts import callee

RISKY_MODULES = frozenset(
    {"os", "subprocess", "socket", "shutil", "ctypes", "multiprocessing", "pty", "signal", "importlib", "sys"}
)
RISKY_CALLS = frozenset({"eval", "exec", "compile", "__import__", "system", "popen", "breakpoint"})
WRITE_MODES = frozenset("wax+")


def _imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "").split(".")[0] if not node.level else "."


def _calls(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := callee(node.func)) in RISKY_CALLS:
            yield f"{name}()"


def _mode(call: ast.Call) -> str:
    mode = (
        call.args[1]
        if len(call.args) > 1
        else next((k.value for k in call.keywords if k.arg == "mode"), None)
    )
    if mode is None:
        return "r"
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "w"


def _local(path: ast.expr) -> bool:
    """A path literal that stays in the script's folder: relative, without '..' or '~'."""
    if not isinstance(path, ast.Constant) or not isinstance(path.value, str):
        return False
    text = path.value
    return (
        bool(text)
        and not text.startswith(("/", "~", "\\"))
        and ".." not in text.replace("\\", "/").split("/")
    )


def _writes(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or callee(node.func) != "open" or not node.args:
            continue
        if set(_mode(node)) & WRITE_MODES and not _local(node.args[0]):
            yield f"open({ast.unparse(node.args[0])}, {_mode(node)!r})"


def added_risks(original: str, patched: str) -> list[str]:
    """What the patched text reaches that the original did not, one phrase each, in the order found."""
    before, after = ast.parse(original), ast.parse(patched)
    found = []
    old_imports = Counter(_imports(before))
    for name, count in Counter(_imports(after)).items():
        if (name in RISKY_MODULES or name == ".") and count > old_imports[name]:
            found.append(f"import of {name}" if name != "." else "a relative import")
    for finder in (_calls, _writes):
        old = Counter(finder(before))
        found += [what for what, count in Counter(finder(after)).items() if count > old[what]]
    return found


def check_safety(files: dict[str, str], original: dict[str, str], trusted: bool = False) -> CheckResult:
    """Passes when no changed file adds a risky reach; with `trusted`, passes and says what was trusted."""
    risks = [
        f"{name}: {risk}"
        for name, text in files.items()
        if text != original.get(name)
        for risk in added_risks(original.get(name, ""), text)
    ]
    if not risks:
        return CheckResult(
            name="safety", passed=True, detail="adds no imports of system modules, eval/exec or writes"
        )
    listed = "; ".join(risks)
    if trusted:
        return CheckResult(name="safety", passed=True, detail=f"trusted with --trust-edits: {listed}")
    return CheckResult(
        name="safety",
        passed=False,
        detail=f"the change adds {listed}; read patch.diff, then run again with --trust-edits to let it run",
    )
