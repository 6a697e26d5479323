"""Edits to the model and its training, each adding the hyperparameter `target` that the study can then search.

- add_dropout(target, rate, location): an `nn.Dropout(target)` layer, default rate the intent's value or 0.1.
  `location` `attr`: after a layer assigned as `self.attr = ...` in __init__ and called in forward (each call's
  output is wrapped); `container.i`: after entry i of an `nn.Sequential(...)` or list of layers assigned to
  `container`; none: before the output layer (the last layer forward calls, or the last Sequential entry).
- change_optimizer(target, value): the optimizer becomes a choice among adamw, adam and sgd (and the script's
  own, which stays the fallback), default `value` or the script's own. Keyword arguments a class does not take
  are dropped from its branch; SGD gets momentum=0.9 unless the call sets it.
- change_schedule(target, value): a learning-rate scheduler, stepped once per epoch of run()'s epoch loop,
  chosen among constant, cosine, step and linear_warmup; default `value` or constant.
- add_label_smoothing(target, value): `label_smoothing=target` on every training cross-entropy loss (calls of
  `cross_entropy(...)`, constructions of `CrossEntropyLoss(...)`; not those under no_grad / inference_mode,
  which measure), default `value` or 0.0. A loss that already sets label_smoothing is left to a person.

With the default value the patched script trains exactly as the original did (a new dropout at rate 0, the
script's own optimizer, a constant schedule, no smoothing), so the baseline and the patch differ only where the
study looks.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from agent.code.edits.base import add_keyword, add_to_block, by_scope, new_name, thread
from agent.code.edits.sites import (
    containers,
    epoch_loop,
    layer_attributes,
    layer_locations,
    nn_module,
    optimizer_call,
)
from agent.code.source import EditError, Source, Splice, literal, method, self_calls
from experiments.script_facts import callee

DEFAULT_DROPOUT = 0.1
# The cross-entropy losses add_label_smoothing edits, and how many positional arguments come before theirs.
CROSS_ENTROPY = {"cross_entropy": 7, "CrossEntropyLoss": 5}
NO_GRAD = {"no_grad", "inference_mode"}
OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}
_ADAM = {
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "foreach",
    "maximize",
    "capturable",
    "differentiable",
}
ACCEPTS = {
    "SGD": {
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "maximize",
        "foreach",
        "differentiable",
    },
    "Adam": _ADAM | {"fused", "decoupled_weight_decay"},
    "AdamW": _ADAM | {"fused"},
}
TORCH_OPTIMIZERS = {
    "Adam",
    "AdamW",
    "SGD",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "ASGD",
}
SCHEDULES = {
    "constant": "ConstantLR({opt}, factor=1.0, total_iters=0)",
    "cosine": "CosineAnnealingLR({opt}, T_max=max(1, {epochs}))",
    "step": "StepLR({opt}, step_size=max(1, {epochs} // 3), gamma=0.1)",
    "linear_warmup": "LinearLR({opt}, start_factor=0.1, total_iters=max(1, {epochs} // 4))",
}
SCHEDULE_ALIASES = {"none": "constant", "warmup": "linear_warmup", "linear": "linear_warmup", "cos": "cosine"}


def add_dropout(
    text: str, target: str, rate: Any = None, location: str | None = None, where: str = "script"
) -> str:
    src = Source(text, where)
    new_name(src, target)
    rate = DEFAULT_DROPOUT if rate is None else rate
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
        raise EditError(f"add_dropout {target}: the rate must be a number in [0, 1), got {rate!r}")
    nn = nn_module(src)
    container = re.fullmatch(r"(\w+)\.(\d+)", location or "")
    if location is None:
        splices = _before_output(src, target, float(rate), nn)
    elif container:
        splices = _after_entry(src, container[1], int(container[2]), target, float(rate), nn)
    elif location.isidentifier():
        splices = _after_attribute(src, location, target, float(rate), nn)
    else:
        raise EditError(
            f"add_dropout: location {location!r} is neither a layer attribute nor container.index"
        )
    return src.splice([*splices, add_to_block(src, target, float(rate))])


def _reachable(src: Source, stmt: ast.stmt | ast.expr) -> ast.FunctionDef | ast.ClassDef:
    """The top-level function or class (its __init__) around `stmt`, which a new hyperparameter can reach."""
    scope = src.enclosing(stmt)
    init = method(scope, "__init__") if isinstance(scope, ast.ClassDef) else scope
    if not isinstance(scope, ast.FunctionDef | ast.ClassDef) or init is None or stmt.lineno < init.lineno:
        raise EditError(
            f"{src.where}:{stmt.lineno}: the layers are built where a trial's hyperparameters cannot reach"
        )
    return scope


def _new_attribute(src: Source, cls: ast.ClassDef, stmt: ast.stmt, attr: str, expr: str, nn: str) -> Splice:
    """`self.attr = nn.Dropout(expr)` on the line after `stmt` in __init__."""
    if any(isinstance(n, ast.Attribute) and n.attr == attr for n in ast.walk(cls)):
        raise EditError(f"{src.where}: class {cls.name} already has self.{attr}")
    pos, newline = src.after_line(stmt.end_lineno)  # type: ignore[arg-type]
    return Splice(pos, pos, f"{newline}{src.indent(stmt)}self.{attr} = {nn}.Dropout({expr})\n")


def _after_entry(src: Source, name: str, index: int, param: str, rate: float, nn: str) -> list[Splice]:
    found = [(stmt, elts) for n, stmt, elts, _ in containers(src) if n == name]
    if len(found) != 1 or index >= len(found[0][1]):
        raise EditError(
            f"{src.where}: no single layer list {name!r} with an entry {index}; "
            f"dropout locations here: {', '.join(layer_locations(src)) or 'none'}"
        )
    stmt, entries = found[0]
    splices, expr = thread(src, _reachable(src, stmt), param, rate)
    entry = entries[index]
    end = src.end(entry)
    own_line = not src.text[src.line_start(entry.lineno) : src.start(entry)].strip()
    separator = f",\n{src.indent(entry)}" if own_line else ", "
    return [*splices, Splice(end, end, f"{separator}{nn}.Dropout({expr})")]


def _after_attribute(src: Source, attr: str, param: str, rate: float, nn: str) -> list[Splice]:
    found = [(cls, stmt) for cls, stmt, a in layer_attributes(src) if a == attr]
    if len(found) != 1:
        raise EditError(
            f"{src.where}: no single layer self.{attr} that a forward() calls; "
            f"dropout locations here: {', '.join(layer_locations(src)) or 'none'}"
        )
    cls, stmt = found[0]
    splices, expr = thread(src, cls, param, rate)
    splices.append(_new_attribute(src, cls, stmt, param, expr, nn))
    for call in self_calls(method(cls, "forward"), attr):  # type: ignore[arg-type]
        start, end = src.start(call), src.end(call)
        splices += [Splice(start, start, f"self.{param}("), Splice(end, end, ")")]
    return splices


def _before_output(src: Source, param: str, rate: float, nn: str) -> list[Splice]:
    """Dropout on the output layer's input: where it regularises most and cannot drop the predictions."""
    classes = {cls.name for cls, _, _ in layer_attributes(src)}
    sequentials = [
        n for n in ast.walk(src.tree) if isinstance(n, ast.Call) and callee(n.func) == "Sequential" and n.args
    ]
    if len(classes) == 1:
        cls, stmt, attr = layer_attributes(src)[-1]
        calls = [c for c in self_calls(method(cls, "forward"), attr) if c.args]  # type: ignore[arg-type]
        if calls:
            splices, expr = thread(src, cls, param, rate)
            splices.append(_new_attribute(src, cls, stmt, param, expr, nn))
            for call in calls:
                start, end = src.start(call.args[0]), src.end(call.args[0])
                splices += [Splice(start, start, f"self.{param}("), Splice(end, end, ")")]
            return splices
    elif not classes and len(sequentials) == 1 and not isinstance(sequentials[0].args[-1], ast.Starred):
        call = sequentials[0]
        splices, expr = thread(src, _reachable(src, call), param, rate)
        start = src.start(call.args[-1])
        return [*splices, Splice(start, start, f"{nn}.Dropout({expr}), ")]
    raise EditError(
        f"{src.where}: cannot tell which layer is the output layer; give the location "
        f"(one of: {', '.join(layer_locations(src)) or 'none'})"
    )


def _branches(src: Source, expr: str, options: list[tuple[str, str]], fallback: str, node: ast.AST) -> str:
    """`(A if expr == "a" else B if expr == "b" else fallback)`, laid out one branch a line."""
    pad = src.indent(node) + "    "
    lines = [f"{text}\n{pad}if {expr} == {literal(value)}\n{pad}else " for value, text in options]
    return "(\n" + pad + "".join(lines) + fallback + "\n" + src.indent(node) + ")"


def change_optimizer(text: str, target: str, value: Any = None, where: str = "script") -> str:
    src = Source(text, where)
    new_name(src, target)
    call = optimizer_call(src, "change_optimizer", TORCH_OPTIMIZERS)
    own = call.func.attr.lower()  # type: ignore[attr-defined]
    default = own if value is None else str(value).lower().replace("-", "").replace("_", "")
    if default not in {*OPTIMIZERS, own}:
        raise EditError(f"change_optimizer: {value!r} is not one of {', '.join(sorted({*OPTIMIZERS, own}))}")
    if len(call.args) > 2:
        raise EditError(
            f"{where}:{call.lineno}: the optimizer takes more than (params, lr) positionally; use keywords"
        )
    scope = src.enclosing(call)
    if not isinstance(scope, ast.FunctionDef | ast.ClassDef):
        raise EditError(f"{where}:{call.lineno}: the optimizer is built at import time")
    splices, expr = thread(src, scope, target, default)
    options = [(name, _as_optimizer(src, call, cls)) for name, cls in OPTIMIZERS.items() if name != own]
    chain = _branches(src, expr, options, src.segment(call), call)
    splices.append(Splice(src.start(call), src.end(call), chain))
    return src.splice([*splices, add_to_block(src, target, default)])


def _as_optimizer(src: Source, call: ast.Call, cls: str) -> str:
    """The text of `call` building `cls` instead, without the keyword arguments `cls` does not take."""
    start, end = src.start(call), src.end(call)
    func_end = src.end(call.func)
    old = call.func.attr  # type: ignore[attr-defined]
    splices = [Splice(func_end - len(old), func_end, cls)]
    items = sorted([*call.args, *call.keywords], key=src.start)
    for before, item in zip(items, items[1:], strict=False):
        if isinstance(item, ast.keyword) and item.arg and item.arg not in ACCEPTS[cls]:
            splices.append(Splice(src.end(before), src.end(item), ""))
    if cls == "SGD" and not any(k.arg == "momentum" for k in call.keywords):
        splices.append(add_keyword(src, call, "momentum=0.9"))
    edited = src.splice(splices)
    return edited[start : end + len(edited) - len(src.text)]


def change_schedule(text: str, target: str, value: Any = None, where: str = "script") -> str:
    src = Source(text, where)
    new_name(src, target)
    default = str(value or "constant").lower().replace("-", "_").replace(" ", "_")
    default = SCHEDULE_ALIASES.get(default, default)
    if default not in SCHEDULES:
        raise EditError(f"change_schedule: {value!r} is not one of {', '.join(SCHEDULES)}")
    torch = src.module_name_for("torch")
    if torch is None:
        raise EditError(f"{where}: does not `import torch`, which the schedule is built from")
    run = src.entry_point()
    if any("lr_scheduler" in src.segment(n) for n in ast.walk(run) if isinstance(n, ast.Attribute)):
        raise EditError(f"{where}: run() already has a learning-rate scheduler; change it by hand")
    loop = epoch_loop(src)
    epochs = src.segment(loop.iter.args[min(1, len(loop.iter.args) - 1)])  # type: ignore[attr-defined]
    stepped = {
        n.func.value.id
        for n in ast.walk(loop)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "step"
        and isinstance(n.func.value, ast.Name)
    }
    optimizers = [
        n
        for n in ast.walk(run)
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id in stepped
        and n.lineno < loop.lineno
    ]
    if len({a.targets[0].id for a in optimizers}) != 1:  # type: ignore[attr-defined]
        raise EditError(f"{where}: cannot tell which object stepped in the epoch loop is the optimizer")
    if any(isinstance(n, ast.Name) and n.id == "scheduler" for n in ast.walk(run)):
        raise EditError(f"{where}: run() already uses the name `scheduler`")
    opt_assign = max(optimizers, key=lambda a: a.lineno)
    opt = opt_assign.targets[0].id  # type: ignore[attr-defined]
    expr = f'{src.hparams_var()}["{target}"]'
    ctor = {
        k: f"{torch}.optim.lr_scheduler." + v.format(opt=opt, epochs=epochs) for k, v in SCHEDULES.items()
    }
    fallback = ctor.pop("constant")
    chain = _branches(src, expr, list(ctor.items()), fallback, opt_assign)
    pos, nl = src.after_line(opt_assign.end_lineno)  # type: ignore[arg-type]
    end, nl2 = src.after_line(loop.body[-1].end_lineno)  # type: ignore[arg-type]
    return src.splice(
        [
            Splice(pos, pos, f"{nl}{src.indent(opt_assign)}scheduler = {chain}\n"),
            Splice(end, end, f"{nl2}{src.indent(loop.body[0])}scheduler.step()\n"),
            add_to_block(src, target, default),
        ]
    )


def add_label_smoothing(text: str, target: str, value: Any = None, where: str = "script") -> str:
    src = Source(text, where)
    new_name(src, target)
    value, losses = smoothed_losses(src, target, value)
    splices = []
    for scope, calls in by_scope(src, losses, "the loss").items():
        # Other callers of a helper keep training without smoothing: its new parameter defaults to 0.0.
        threaded, expr = thread(src, scope, target, 0.0)
        splices += threaded + [add_keyword(src, call, f"label_smoothing={expr}") for call in calls]
    return src.splice([*splices, add_to_block(src, target, value)])


def smoothed_losses(src: Source, target: str, value: Any) -> tuple[float, list[ast.Call]]:
    """The smoothing value checked (a number in [0, 1), 0 when unset) and the training losses it goes on, in
    a task script or a plain one alike."""
    value = 0.0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise EditError(f"add_label_smoothing {target}: the value must be a number in [0, 1), got {value!r}")
    losses = _training_losses(src)
    if not losses:
        raise EditError(
            f"{src.where}: add_label_smoothing found no training cross-entropy loss "
            f"(a call of cross_entropy(...) or CrossEntropyLoss(...))"
        )
    return float(value), losses


def _training_losses(src: Source) -> list[ast.Call]:
    """The cross-entropy calls outside no_grad code (evaluation must keep measuring the plain loss)."""
    parents = {child: node for node in ast.walk(src.tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Call):
            continue
        name = callee(node.func) or ""
        if name not in CROSS_ENTROPY or _under_no_grad(node, parents):
            continue
        labelled = any(k.arg in ("label_smoothing", None) for k in node.keywords)
        if labelled or len(node.args) > CROSS_ENTROPY[name]:
            raise EditError(
                f"{src.where}:{node.lineno}: this {name}(...) may already set label_smoothing; change it by hand"
            )
        found.append(node)
    return sorted(found, key=src.start)


def _under_no_grad(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `with torch.no_grad():` (or inference_mode), or a function decorated with either."""
    while node in parents:
        node = parents[node]
        marks: list[ast.expr] = []
        if isinstance(node, ast.With):
            marks = [item.context_expr for item in node.items]
        elif isinstance(node, ast.FunctionDef):
            marks = node.decorator_list
        if any(callee(m.func if isinstance(m, ast.Call) else m) in NO_GRAD for m in marks):
            return True
    return False
