"""A plain script's own command line (`--command "python train.py --epochs 2 --data ./data"`): the script, its
arguments, and the hyperparameters those arguments set.

A user sets flags in the command to make trials short (`--epochs 2`, `--emsize 32`) or to point at data; each
flag of a found hyperparameter is a condition of the run: held fixed for every arm and seed, never searched,
never written back by `approve`. Flags are read the way the script takes them: `--name value` and
`--name=value` for argparse, click, typer and HfArgumentParser; `--name=value` alone for a module constant of a
configurator-style script (nanoGPT's `exec(open('configurator.py').read())` overrides globals from
`--key=value`).
"""

from __future__ import annotations

import ast
import os
import shlex
from pathlib import Path

from experiments import project
from experiments.hyperparameters import FLAG_KINDS, Discovery, Hyperparameter, Value


def parse(text: str, cwd: Path) -> tuple[Path, list[str]]:
    """`python train.py --data x` as the script and its own arguments. Trials run from the script's folder in
    a copy of its repository, so an argument naming an existing file or folder (alone or after `=`) is made
    relative to the script's folder when it lies in the repository, absolute when it lies outside."""
    words = shlex.split(text)
    at = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
    if at is None or not all(Path(w).name.startswith("python") for w in words[:at]):
        raise ValueError(
            f"--command {text!r}: expected a Python script and its arguments, e.g. "
            '--command "python train.py --data data.csv"'
        )
    script = (cwd / words[at]).resolve()
    inside = project.root(script)
    return script, [_located(w, cwd, script.parent, inside) for w in words[at + 1 :]]


def _located(word: str, cwd: Path, folder: Path, inside: Path) -> str:
    flag, eq, value = word.partition("=") if word.startswith("-") else ("", "", word)
    if not value or not (cwd / value).exists():
        return word
    path = (cwd / value).resolve()
    where = os.path.relpath(path, folder) if path.is_relative_to(inside) else str(path)
    return f"{flag}{eq}{where}"


def fixed(found: Discovery, args: tuple[str, ...] | list[str]) -> dict[str, Value]:
    """The hyperparameters `args` set, by name, with the values the script would parse from them."""
    flags: dict[str, Hyperparameter] = {}
    for h in found.hyperparameters:
        if h.kind in FLAG_KINDS:
            flags.update({f: h for f in (h.flag, h.negative) if f})
    constants = {f"--{h.owner}": h for h in found.hyperparameters if h.kind == "constant"}
    out: dict[str, Value] = {}
    for i, word in enumerate(args):
        name, eq, value = word.partition("=")
        h = flags.get(name)
        if h is not None and (h.toggle or (isinstance(h.default, bool) and h.negative)) and not eq:
            out[h.name] = (not h.default) if h.toggle else name == h.flag
        elif h is not None:
            given = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            out[h.name] = _typed(given, h.default)
        elif eq and name in constants:
            h = constants[name]
            out[h.name] = _typed(value, h.default)
    return out


def _typed(text: str, default: Value) -> Value:
    """`text` as the type of the hyperparameter's default (a configurator evaluates it as a literal)."""
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "y")
    if isinstance(default, int | float):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) if isinstance(default, float) else value
        return text
    return text


def describe(values: dict[str, Value]) -> list[str]:
    """Each condition as the plan lists it: "epochs = 2"."""
    return [f"{k} = {v!r}" for k, v in values.items()]
