"""Either kind of training script through one door: its defaults, and the object a trial calls `run()` on.

A script with a labelled hyperparameter block follows the contract (experiments.script) and is imported; a
plain one is run as a program (experiments.program). Callers that need a script's defaults or its entry
point use these two functions and never ask which kind it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from experiments.program import ProgramScript, discovered, is_program
from experiments.script import find_block, load_module


class Entry(Protocol):
    """What the worker and the preflight call: a contract script's module, or a ProgramScript."""

    def run(self, hparams: dict[str, Any] | None = None, **keywords: Any) -> Any: ...


def defaults(source: str, where: str = "script") -> dict[str, Any]:
    """The script's hyperparameters with their defaults: its block's, or those found in a plain script."""
    if is_program(source):
        return discovered(source, where).defaults
    return find_block(source, where).defaults


def load(path: Path, metric: str) -> tuple[dict[str, Any], Entry]:
    """The script's defaults and its entry point; `metric` is what a plain script's output is searched for."""
    source = path.read_text()
    if is_program(source):
        script = ProgramScript(path, metric)
        return script.defaults, script
    return find_block(source, str(path)).defaults, load_module(path)
