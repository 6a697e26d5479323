"""Edits to the hyperparameter block, and passing a new hyperparameter from run() to the code that uses it.

A value only reaches a trial through run()'s merged `hp` dict, so exposing a literal that lives in a helper
function or a model's `__init__` means threading it through: the helper gains a keyword-only parameter (its
default is the old literal, so other callers keep their behaviour) and run()'s calls pass `hp["name"]`.

- set_default(target, value): a new default for a hyperparameter already in the block.
- expose_constant(target, value, location): the block gains hyperparameter `target`, read where the script had
  a module-level constant (`location` `NAME`) or a literal keyword argument (`location` `function.keyword`,
  `Class.keyword` for its __init__, or `run.keyword`). Without a location, the constant named like the target
  (`HIDDEN_SIZE` for hidden_size) or the one literal `target=...` argument is used.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from agent.code.source import EditError, Source, Splice, calls_to, literal, method
from experiments.discovery import DiscoveryError, write_values
from experiments.program import discovered, is_program
from experiments.script import ScriptContractError


def set_default(text: str, name: str, value: Any, where: str = "script") -> str:
    src = Source(text, where)
    node = src.block_assign(name)
    if node is None:
        have = ", ".join(src.block().defaults)
        raise EditError(
            f"{where}: {name} is not in the hyperparameter block (it has {have}); "
            f"expose it first (expose_constant)"
        )
    value = coerce(name, ast.literal_eval(node.value), value)
    return src.splice([Splice(src.start(node.value), src.end(node.value), literal(value))])


def write_defaults(text: str, values: Mapping[str, Any], where: str = "script") -> str:
    """The block with `values` as its new defaults: how a measured best configuration becomes the code. A plain
    script gets them where it keeps them (an argparse `default=`, a keyword literal, a constant); a value equal
    to its default is left as written."""
    if is_program(text):
        try:
            defaults = discovered(text, where).defaults
            missing = [k for k in values if k not in defaults]
            if missing:
                raise EditError(f"{where}: has no hyperparameter {', '.join(missing)} to set a default for")
            changed = {k: coerce(k, defaults[k], v) for k, v in values.items()}
            return write_values(text, {k: v for k, v in changed.items() if v != defaults[k]}, where=where)
        except (ScriptContractError, DiscoveryError) as exc:
            raise EditError(str(exc)) from exc
    for name, value in values.items():
        text = set_default(text, name, value, where)
    return text


def expose_constant(
    text: str, target: str, value: Any = None, location: str | None = None, where: str = "script"
) -> str:
    src = Source(text, where)
    new_name(src, target)
    location = location or _find_exposable(src, target)
    scope_name, dot, keyword = location.partition(".")
    if not dot:
        return _expose_module_constant(src, scope_name, target, value)
    scope = src.top_level(scope_name)
    found = [k for k in _keyword_literals(scope) if k.arg == keyword] if scope else []
    if not found:
        raise EditError(
            f"{where}: no literal keyword argument {location}=...; what can be exposed: {_exposable(src)}"
        )
    values = sorted({src.segment(k.value) for k in found})
    if len(values) > 1:
        raise EditError(f"{where}: {keyword}= takes different values in {scope_name} ({', '.join(values)})")
    current = ast.literal_eval(found[0].value)
    splices, expr = thread(src, scope, target, current)  # type: ignore[arg-type]
    splices += [Splice(src.start(k.value), src.end(k.value), expr) for k in found]
    splices.append(add_to_block(src, target, current if value is None else coerce(target, current, value)))
    return src.splice(splices)


def _keyword_literals(scope: ast.FunctionDef | ast.ClassDef | None) -> list[ast.keyword]:
    """Literal keyword arguments in a function, or in a class's __init__ (where a trial's values can reach)."""
    body = method(scope, "__init__") if isinstance(scope, ast.ClassDef) else scope
    if body is None:
        return []
    return [k for k in ast.walk(body) if isinstance(k, ast.keyword) and k.arg and _is_literal(k.value)]


def _constants(src: Source) -> dict[str, ast.Assign]:
    block = src.block()
    return {
        node.targets[0].id: node
        for node in src.tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and not block.start < node.lineno < block.end
        and _is_literal(node.value)
    }


def _scopes(src: Source) -> list[ast.FunctionDef | ast.ClassDef]:
    return [n for n in src.tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]


def _exposable(src: Source) -> str:
    """Every location expose_constant accepts here, for a message a person or a model can act on."""
    keywords = {f"{s.name}.{k.arg}" for s in _scopes(src) for k in _keyword_literals(s)}
    return ", ".join([*sorted(_constants(src)), *sorted(keywords)]) or "nothing"


def _find_exposable(src: Source, target: str) -> str:
    constants = [name for name in _constants(src) if name.lower() == target.lower()]
    scopes = [s.name for s in _scopes(src) if any(k.arg == target for k in _keyword_literals(s))]
    found = constants + [f"{s}.{target}" for s in scopes]
    if len(found) != 1:
        raise EditError(
            f"{src.where}: {'nothing' if not found else ' and '.join(found)} matches {target!r}; "
            f"give the location (one of: {_exposable(src)})"
        )
    return found[0]


def _expose_module_constant(src: Source, name: str, param: str, value: Any) -> str:
    assign = _constants(src).get(name)
    if assign is None:
        raise EditError(
            f"{src.where}: no module-level constant {name}; what can be exposed: {_exposable(src)}"
        )
    current = ast.literal_eval(assign.value)
    splices = [Splice(src.line_start(assign.lineno), src.after_line(assign.end_lineno)[0], "")]  # type: ignore[arg-type]
    for stmt in src.tree.body:
        uses = (
            [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == name]
            if stmt is not assign
            else []
        )
        if not uses:
            continue
        if any(not isinstance(n.ctx, ast.Load) for n in uses):
            raise EditError(f"{src.where}: {name} is reassigned, so it is not a constant")
        init = method(stmt, "__init__") if isinstance(stmt, ast.ClassDef) else stmt
        if (
            not isinstance(stmt, ast.FunctionDef | ast.ClassDef)
            or init is None
            or any(
                not init.lineno <= n.lineno <= init.end_lineno  # type: ignore[operator]
                for n in uses
            )
        ):
            raise EditError(
                f"{src.where}:{uses[0].lineno}: {name} is used where a trial's hyperparameters cannot reach "
                f"(only run(), the functions it calls and the __init__ of classes it builds can take them)"
            )
        threaded, expr = thread(src, stmt, param, current)
        splices += threaded + [Splice(src.start(n), src.end(n), expr) for n in uses]
    if len(splices) == 1:
        raise EditError(f"{src.where}: {name} is never used")
    splices.append(add_to_block(src, param, current if value is None else coerce(param, current, value)))
    return src.splice(splices)


def new_name(src: Source, name: str) -> None:
    """Refuse a new hyperparameter name that is not an identifier or is already in the block."""
    if not name.isidentifier():
        raise EditError(f"{name!r} is not a valid hyperparameter name (a Python identifier)")
    if name in src.block().defaults:
        raise EditError(f"{src.where}: {name} is already a hyperparameter in the block; use set_default")


def add_to_block(src: Source, name: str, value: Any) -> Splice:
    new_name(src, name)
    pos = src.line_start(src.block().end)
    return Splice(pos, pos, f"{name} = {literal(value)}\n")


def thread(
    src: Source, scope: ast.FunctionDef | ast.ClassDef, param: str, default: Any
) -> tuple[list[Splice], str]:
    """Splices that make hyperparameter `param` reachable inside `scope`, and the expression that reads it there."""
    run = src.entry_point()
    hp = src.hparams_var()
    if scope is run:
        return [], f'{hp}["{param}"]'
    func = method(scope, "__init__") if isinstance(scope, ast.ClassDef) else scope
    if func is None:
        raise EditError(f"{src.where}: class {scope.name} has no __init__ to take {param}")
    if any(isinstance(n, ast.Name) and n.id == param for n in ast.walk(func)) or param in _arg_names(func):
        raise EditError(f"{src.where}: {scope.name} already uses the name {param}")
    calls = list(calls_to(run, scope.name))
    if not calls:
        raise EditError(
            f"{src.where}: {scope.name} is not called from run(), so {param} cannot be passed to it"
        )
    splices = [_add_parameter(src, func, f"{param}={literal(default)}")]
    splices += [add_keyword(src, call, f'{param}={hp}["{param}"]') for call in calls]
    return splices, param


def by_scope(
    src: Source, nodes: list[ast.Call], what: str
) -> dict[ast.FunctionDef | ast.ClassDef, list[ast.Call]]:
    """The calls grouped by the top-level function, or class (its __init__), a new hyperparameter must reach;
    `what` names them in the refusal when one lies where no trial's value can reach (import time, forward)."""
    out: dict[ast.FunctionDef | ast.ClassDef, list[ast.Call]] = {}
    for node in nodes:
        scope = src.enclosing(node)
        init = method(scope, "__init__") if isinstance(scope, ast.ClassDef) else scope
        if (
            not isinstance(scope, ast.FunctionDef | ast.ClassDef)
            or init is None
            or not init.lineno <= node.lineno <= init.end_lineno  # type: ignore[operator]
        ):
            raise EditError(
                f"{src.where}:{node.lineno}: {what} is built where a trial's hyperparameters cannot reach "
                f"(only run(), the functions it calls and the __init__ of classes it builds can take them)"
            )
        out.setdefault(scope, []).append(node)
    return out


def _arg_names(func: ast.FunctionDef) -> set[str]:
    a = func.args
    extra = [x for x in (a.vararg, a.kwarg) if x is not None]
    return {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, *extra]}


def _add_parameter(src: Source, func: ast.FunctionDef, text: str) -> Splice:
    """A keyword-only parameter, so no existing positional call changes meaning."""
    a = func.args
    star = "" if a.vararg or a.kwonlyargs else "*, "
    if a.kwarg is not None:
        pos = src.text.rindex("**", 0, src.start(a.kwarg))
        return Splice(pos, pos, f"{star}{text}, ")
    if a.posonlyargs and not (a.args or a.vararg or a.kwonlyargs):
        raise EditError(f"{src.where}: {func.name}() takes only positional-only parameters")
    nodes = [
        *a.posonlyargs,
        *a.args,
        *a.defaults,
        *a.kwonlyargs,
        *[d for d in a.kw_defaults if d is not None],
    ]
    nodes += [a.vararg] if a.vararg else []
    if not nodes:
        pos = src.text.index("(", src.start(func)) + 1
        return Splice(pos, pos, f"*, {text}")
    end = max(src.end(n) for n in nodes)
    return Splice(end, end, f", {star}{text}")


def add_keyword(src: Source, call: ast.Call, text: str) -> Splice:
    items = [*call.args, *call.keywords]
    if not items:
        pos = src.end(call) - 1
        return Splice(pos, pos, text)
    end = max(src.end(n) for n in items)
    return Splice(end, end, f", {text}")


def _is_literal(node: ast.expr) -> bool:
    try:
        return isinstance(ast.literal_eval(node), bool | int | float | str)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def coerce(name: str, current: Any, value: Any) -> Any:
    """`value` in the type the script already uses for `name` (an int stays an int), or a clear refusal."""
    if value is None:
        raise EditError(f"{name}: no value given")
    if isinstance(current, bool) != isinstance(value, bool) or isinstance(current, str) != isinstance(
        value, str
    ):
        raise EditError(f"{name} is a {type(current).__name__} in the script; {value!r} is not")
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float):
        if not value.is_integer():
            raise EditError(f"{name} is an int in the script; {value!r} is not a whole number")
        return int(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
