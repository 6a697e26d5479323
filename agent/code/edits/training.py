"""Edits to how run() trains, each adding the hyperparameter `target` that the study can then search.

- add_weight_decay(target, value): `weight_decay=target` on the script's one torch.optim optimizer, which sets
  none. Default `value` or the optimizer's own default (0.01 for AdamW, 0 for the others), so that at the
  default it decays exactly as before.
- early_stopping(target, value, direction): run()'s epoch loop stops once the value it reports to the trial
  (`report(trial, value, epoch)` or `trial.report(value, epoch)`: the validation metric the pruner watches)
  has not improved, in the metric's `direction`, for `target` epochs. Default `value` or 0, which never stops.
  The model kept is the last epoch's, as a script without the edit keeps.
- limit_train_examples(target, value, location): the training split run() assigns (the first assignment of a
  name holding "train", e.g. `x_train, y_train = ...`, or the one assigning `location`) is cut to `target`
  examples by `experiments.data.limit_examples`, the same examples for every run, arm and seed. Default
  `value` or 0, which keeps the split as it is. The built-in tasks already have `max_train_examples`.

Each change is made on the syntax tree and runs even at its default (the patience is counted, the split is
measured), so a script it cannot serve fails the preflight rather than a trial.
"""

from __future__ import annotations

import ast
from typing import Any

from agent.code.edits.base import add_keyword, add_to_block, by_scope, new_name, thread
from agent.code.edits.sites import epoch_loop, optimizer_call
from agent.code.source import EditError, Source, Splice
from experiments.records import Direction
from experiments.script_facts import OWN_WEIGHT_DECAY, callee

STOP_NAMES = ("monitored", "best_monitored", "stale_epochs")
LIMIT = "limit_examples"


def _count(edit: str, value: Any, default: int = 0) -> int:
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise EditError(f"{edit}: the value must be a whole number >= 0, got {value!r}")
    return int(value)


def add_weight_decay(text: str, target: str, value: Any = None, where: str = "script") -> str:
    src = Source(text, where)
    new_name(src, target)
    call = optimizer_call(src, "add_weight_decay")
    cls = call.func.attr  # type: ignore[attr-defined]
    if any(k.arg in ("weight_decay", None) for k in call.keywords) or len(call.args) > 2:
        raise EditError(
            f"{where}:{call.lineno}: the {cls}(...) may already set weight_decay; expose it with "
            "expose_constant or change it by hand"
        )
    own = OWN_WEIGHT_DECAY.get(cls, 0.0)
    value = own if value is None else value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise EditError(f"add_weight_decay {target}: the value must be a number >= 0, got {value!r}")
    [(scope, _)] = by_scope(src, [call], "the optimizer").items()
    # other callers of a helper keep the optimizer's own decay: the new parameter defaults to it
    splices, expr = thread(src, scope, target, own)
    splices.append(add_keyword(src, call, f"weight_decay={expr}"))
    return src.splice([*splices, add_to_block(src, target, float(value))])


def early_stopping(
    text: str, target: str, value: Any = None, where: str = "script", direction: Direction = "maximize"
) -> str:
    src = Source(text, where)
    new_name(src, target)
    patience = _count(f"early_stopping {target}", value)
    run = src.entry_point()
    used = sorted({n.id for n in ast.walk(run) if isinstance(n, ast.Name)} & set(STOP_NAMES))
    if used:
        raise EditError(f"{where}: run() already uses the name {', '.join(used)}")
    loop = epoch_loop(src)
    call, watched = _reported(src, loop)
    stmt = next(s for s in loop.body if s.lineno <= call.lineno <= s.end_lineno)  # type: ignore[operator]
    pad, outer = src.indent(stmt), src.indent(loop)
    # the worst value to start from, so that the first epoch already compares: a reported value that is no
    # number fails the preflight's one epoch
    better, worst = (">", "-inf") if direction == "maximize" else ("<", "inf")
    line = src.line_start(loop.lineno)
    splices = [Splice(line, line, f'{outer}best_monitored, stale_epochs = float("{worst}"), 0\n')]
    if isinstance(watched, ast.Name):
        monitored = watched.id
    else:
        monitored = "monitored"
        line = src.line_start(stmt.lineno)
        splices += [
            Splice(line, line, f"{pad}monitored = {src.segment(watched)}\n"),
            Splice(src.start(watched), src.end(watched), "monitored"),
        ]
    limit = f'{src.hparams_var()}["{target}"]'
    check = [
        f"if {monitored} {better} best_monitored:",
        f"    best_monitored, stale_epochs = {monitored}, 0",
        "else:",
        "    stale_epochs += 1",
        f"if {limit} and stale_epochs >= {limit}:",
        "    break",
    ]
    pos, newline = src.after_line(stmt.end_lineno)  # type: ignore[arg-type]
    splices.append(Splice(pos, pos, newline + "".join(f"{pad}{line}\n" for line in check)))
    return src.splice([*splices, add_to_block(src, target, patience)])


def _reported(src: Source, loop: ast.For) -> tuple[ast.Call, ast.expr]:
    """The epoch loop's one report of a value to the trial, and that value."""
    found = []
    for node in ast.walk(loop):
        if not isinstance(node, ast.Call) or callee(node.func) != "report":
            continue
        if isinstance(node.func, ast.Attribute) and callee(node.func.value) == "trial" and node.args:
            found.append((node, node.args[0]))
        elif len(node.args) > 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == "trial":
            found.append((node, node.args[1]))
    if len(found) != 1:
        raise EditError(
            f"{src.where}: early_stopping watches the value the epoch loop reports to the trial "
            f"(report(trial, value, epoch) or trial.report(value, epoch)); found {len(found)} reports"
        )
    return found[0]


def limit_train_examples(
    text: str, target: str, value: Any = None, location: str | None = None, where: str = "script"
) -> str:
    src = Source(text, where)
    new_name(src, target)
    cap = _count(f"limit_train_examples {target}", value)
    stmt, names = _training_split(src, location)
    helper = src.module_name_for("experiments.data")
    splices = []
    if helper is None:
        if any(isinstance(n, ast.Name) and n.id == LIMIT for n in ast.walk(src.tree)):
            raise EditError(f"{where}: already uses the name {LIMIT}")
        imports = [n for n in src.tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        line = src.after_line(imports[-1].end_lineno)[0] if imports else 0  # type: ignore[arg-type]
        splices.append(Splice(line, line, f"from experiments.data import {LIMIT}\n"))
    fn = f"{helper}.{LIMIT}" if helper else LIMIT
    columns = ", ".join(names)
    pos, newline = src.after_line(stmt.end_lineno)  # type: ignore[arg-type]
    cut = f'{newline}{src.indent(stmt)}{columns} = {fn}({src.hparams_var()}["{target}"], {columns})\n'
    splices.append(Splice(pos, pos, cut))
    return src.splice([*splices, add_to_block(src, target, cap)])


def _training_split(src: Source, location: str | None) -> tuple[ast.Assign, list[str]]:
    """The assignment in run() of the training split's variables, and their names."""
    found = []
    for node in ast.walk(src.entry_point()):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        elts = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
        if not all(isinstance(e, ast.Name) for e in elts):
            continue
        names = [e.id for e in elts]  # type: ignore[attr-defined]
        if (location in names) if location else any("train" in n.lower() for n in names):
            found.append((node, names))
    if not found:
        wanted = (
            f"`{location} = ...`" if location else "a name holding 'train' (e.g. `x_train, y_train = ...`)"
        )
        raise EditError(
            f"{src.where}: limit_train_examples found no assignment in run() of {wanted}; "
            "give the training split's variable as the location"
        )
    return min(found, key=lambda item: item[0].lineno)
