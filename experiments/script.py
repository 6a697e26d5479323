"""The training-script contract: a labelled hyperparameter block, and an entry point that returns metrics.

A script (built-in task or the user's own `--script`) looks like this::

    # --- hyperparameters ---
    learning_rate = 1e-3
    epochs = 5
    # --- end hyperparameters ---

    def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
        ...
        return {"accuracy": ..., "loss": ...}   # validation; plus test_* keys when holdout=True

The block holds plain literal assignments (numbers, strings, booleans); it is read from the syntax tree, never
by importing the script, so a broken or hostile script can be inspected without running it. A script without
the block is not refused: it runs as a program (experiments.program), its hyperparameters found by
experiments.discovery.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

BLOCK_START = "# --- hyperparameters ---"
BLOCK_END = "# --- end hyperparameters ---"
ENTRY_POINT = "run"
ENTRY_KEYWORDS = ("trial", "seed", "data_fraction", "holdout", "device")


class TrialPruned(Exception):
    """Raised by a script when the pruner stops a trial; the runner maps it onto Optuna's PRUNED state."""


class ScriptContractError(ValueError):
    """The script does not follow the contract above; the message says which part."""


@dataclass(frozen=True)
class Block:
    """Where the hyperparameter block lies (1-based, inclusive line numbers of its markers) and its values."""

    start: int
    end: int
    defaults: dict[str, Any]


def find_block(source: str, where: str = "script") -> Block:
    lines = source.splitlines()
    starts = [i for i, line in enumerate(lines, 1) if line.strip() == BLOCK_START]
    ends = [i for i, line in enumerate(lines, 1) if line.strip() == BLOCK_END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ScriptContractError(
            f"{where}: needs exactly one '{BLOCK_START}' line followed by one '{BLOCK_END}' line"
        )
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ScriptContractError(f"{where}: does not parse: {exc.msg} (line {exc.lineno})") from exc
    defaults: dict[str, Any] = {}
    for node in tree.body:
        if not starts[0] < node.lineno < ends[0]:
            continue
        if not (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            raise ScriptContractError(
                f"{where}:{node.lineno}: the hyperparameter block may hold only `name = literal` lines"
            )
        try:
            value = ast.literal_eval(node.value)
        except ValueError as exc:
            raise ScriptContractError(
                f"{where}:{node.lineno}: {node.targets[0].id} is not a literal value"
            ) from exc
        if not isinstance(value, bool | int | float | str):
            raise ScriptContractError(
                f"{where}:{node.lineno}: {node.targets[0].id} must be a number, string or boolean"
            )
        defaults[node.targets[0].id] = value
    if not defaults:
        raise ScriptContractError(f"{where}: the hyperparameter block is empty")
    return Block(starts[0], ends[0], defaults)


def block_defaults(path: str | Path) -> dict[str, Any]:
    """A script's own defaults, for scripts that want them as a dict (`HYPERPARAMETERS = block_defaults(__file__)`)."""
    return find_block(Path(path).read_text(), str(path)).defaults


def check_entry_point(source: str, where: str = "script") -> None:
    """The entry point exists and takes the keywords the runner passes; checked without importing."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ENTRY_POINT:
            names = {a.arg for a in node.args.args + node.args.kwonlyargs}
            missing = [k for k in ("hparams", *ENTRY_KEYWORDS) if k not in names]
            if missing and node.args.kwarg is None:
                raise ScriptContractError(
                    f"{where}: {ENTRY_POINT}() must accept {', '.join(missing)} "
                    f"(signature: run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, "
                    f"holdout=False, device='auto'))"
                )
            return
    raise ScriptContractError(f"{where}: defines no top-level function {ENTRY_POINT}()")


def load_module(path: str | Path) -> ModuleType:
    """Import a script from a file path under a private name, once per process."""
    path = Path(path).resolve()
    name = f"research_loop_script_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptContractError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    entry = getattr(module, ENTRY_POINT, None)
    if not callable(entry):
        raise ScriptContractError(f"{path}: defines no callable {ENTRY_POINT}()")
    return module
