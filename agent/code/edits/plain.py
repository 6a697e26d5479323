"""The vocabulary's edits on a plain script (no hyperparameter block, run as a program), made on its syntax tree.

A plain script takes its values the way its author wrote it: argparse flags, or module constants. So a new
hyperparameter is exposed the same way, and discovery then finds it and the study can search it:

- a script with argparse flags gains `parser.add_argument("--label_smoothing", type=float, default=0.0)` after
  its last one, read as `args.label_smoothing` where the parsed arguments are in scope;
- any other gains a module constant `LABEL_SMOOTHING = 0.0` after its imports and constants.

add_label_smoothing puts that on every training cross-entropy loss (agent.code.edits.model says which); with
the default 0.0 the script trains exactly as before.
"""

from __future__ import annotations

import ast
from typing import Any

from agent.code.edits.base import add_keyword
from agent.code.edits.model import smoothed_losses
from agent.code.source import EditError, Source, Splice, literal
from experiments.program import discovered


def add_label_smoothing(text: str, target: str, value: Any = None, where: str = "script") -> str:
    src = Source(text, where)
    value, losses = smoothed_losses(src, target, value)
    exposed, expr = expose(src, target, value, losses)
    return src.splice([*exposed, *(add_keyword(src, call, f"label_smoothing={expr}") for call in losses)])


def expose(src: Source, name: str, value: Any, uses: list[ast.Call]) -> tuple[list[Splice], str]:
    """Splices that give the script a new hyperparameter `name` at `value`, the way it takes its others, and the
    expression that reads it at `uses`."""
    if not name.isidentifier():
        raise EditError(f"{name!r} is not a valid hyperparameter name (a Python identifier)")
    if name in discovered(src.text, src.where).defaults:
        raise EditError(f"{src.where}: already has a hyperparameter {name}; set its default instead")
    flags = [
        c
        for c in ast.walk(src.tree)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "add_argument"
    ]
    parsed = _parsed(src)
    if flags and parsed is not None:
        args, scope = parsed
        outside = [u for u in uses if scope is not None and not _within(u, scope)]
        if outside:
            raise EditError(
                f"{src.where}:{outside[0].lineno}: the loss is outside the function that parses the "
                f"arguments, so a new flag cannot reach it; change it by hand"
            )
        last = max(flags, key=lambda c: c.end_lineno or 0)
        dashed = any(isinstance(a, ast.Constant) and "-" in str(a.value)[2:] for c in flags for a in c.args)
        flag = "--" + (name.replace("_", "-") if dashed else name)
        pos, newline = src.after_line(last.end_lineno or last.lineno)
        line = f'{src.indent(last)}{src.segment(last.func)}("{flag}", type=float, default={literal(value)})\n'
        return [Splice(pos, pos, newline + line)], f"{args}.{name}"
    constant = name.upper()
    tops = [s for s in src.tree.body if isinstance(s, ast.Import | ast.ImportFrom | ast.Assign)]
    head = [s for s in tops if not isinstance(s, ast.Assign) or _numeric(s)]
    after = max((s.end_lineno or s.lineno for s in head), default=0)
    pos, newline = src.after_line(after) if after else (0, "")
    return [Splice(pos, pos, f"{newline}{constant} = {literal(value)}\n")], constant


def _parsed(src: Source) -> tuple[str, ast.FunctionDef | None] | None:
    """The name the parsed arguments are assigned to (`args = parser.parse_args()`) and the function that
    holds it (None: module level)."""
    for scope in [None, *(n for n in ast.walk(src.tree) if isinstance(n, ast.FunctionDef))]:
        body = src.tree.body if scope is None else scope.body
        for stmt in body:
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
                and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Attribute)
                and stmt.value.func.attr == "parse_args"
            ):
                return stmt.targets[0].id, scope
    return None


def _within(node: ast.AST, scope: ast.FunctionDef) -> bool:
    return scope.lineno <= node.lineno <= (scope.end_lineno or scope.lineno)  # type: ignore[attr-defined]


def _numeric(stmt: ast.Assign) -> bool:
    try:
        value = ast.literal_eval(stmt.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return isinstance(value, int | float) and not isinstance(value, bool)
