"""The places in a script that several edits attach to: how it spells torch.nn, its layer lists and layer
attributes, its one optimizer and run()'s epoch loop.
"""

from __future__ import annotations

import ast

from agent.code.source import EditError, Source, method, self_calls
from experiments.script_facts import callee


def nn_module(src: Source, layer: str = "Dropout") -> str:
    """How the script spells torch.nn (`nn`, `torch.nn`), for the new `layer` an edit writes."""
    if nn := src.module_name_for("torch.nn"):
        return nn
    if torch := src.module_name_for("torch"):
        return f"{torch}.nn"
    raise EditError(f"{src.where}: imports neither torch nor torch.nn, so it has no nn.{layer} to add")


def containers(src: Source) -> list[tuple[str, ast.stmt, list[ast.expr], bool]]:
    """(name, statement, entries, is_sequential) for `name = nn.Sequential(...)`, `name = [...]`, `name += [...]`."""
    out = []
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) or node.value is None:
            continue
        value = node.value
        sequential = isinstance(value, ast.Call) and callee(value.func) == "Sequential"
        if sequential:
            entries = value.args  # type: ignore[attr-defined]
        elif isinstance(value, ast.List) and any(isinstance(e, ast.Call) for e in value.elts):
            entries = value.elts
        else:
            continue
        for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if isinstance(t, ast.Name):
                out.append((t.id, node, entries, sequential))
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                out.append((t.attr, node, entries, sequential))
    return out


def layer_attributes(src: Source) -> list[tuple[ast.ClassDef, ast.Assign, str]]:
    """(class, statement, attr) for each `self.attr = ...` in an __init__ whose forward calls `self.attr(...)`."""
    out = []
    for cls in (n for n in src.tree.body if isinstance(n, ast.ClassDef)):
        init, forward = method(cls, "__init__"), method(cls, "forward")
        if init is None or forward is None:
            continue
        for node in ast.walk(init):
            if not isinstance(node, ast.Assign):
                continue
            for t in node.targets:
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    and any(self_calls(forward, t.attr))
                ):
                    out.append((cls, node, t.attr))
    return sorted(out, key=lambda item: item[1].lineno)


def layer_locations(src: Source) -> list[str]:
    """Every location add_dropout accepts in this script, for error messages and for a planner's prompt."""
    attrs = [attr for _, _, attr in layer_attributes(src)]
    entries = [f"{name}.{i}" for name, _, elts, _ in containers(src) for i in range(len(elts))]
    return list(dict.fromkeys(attrs)) + entries


def optimizer_call(src: Source, edit: str, classes: set[str] | None = None) -> ast.Call:
    """The script's one `optim.<Class>(...)` construction (of `classes`, or any class), or a refusal naming
    what it builds: with several, which one the study's hyperparameter belongs to is a person's call."""
    calls = [
        n
        for n in ast.walk(src.tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and (n.func.attr in classes if classes is not None else n.func.attr[:1].isupper())
        and callee(n.func.value) == "optim"
    ]
    if len(calls) != 1:
        built = ", ".join(f"{c.func.attr} (line {c.lineno})" for c in calls) or "none"  # type: ignore[attr-defined]
        raise EditError(
            f"{src.where}: {edit} needs exactly one torch.optim optimizer; the script builds {built}"
        )
    return calls[0]


def epoch_loop(src: Source) -> ast.For:
    """run()'s one `for ... in range(...epochs...)` loop: where per-epoch code (a schedule, a stop) goes."""
    loops = [
        n
        for n in ast.walk(src.entry_point())
        if isinstance(n, ast.For)
        and isinstance(n.iter, ast.Call)
        and callee(n.iter.func) == "range"
        and "epochs" in src.segment(n.iter)
    ]
    if len(loops) != 1:
        raise EditError(
            f"{src.where}: run() needs exactly one `for ... in range(...epochs...)` loop (found {len(loops)})"
        )
    return loops[0]
