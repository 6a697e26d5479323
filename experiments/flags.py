"""Hyperparameters a script takes as command-line flags: argparse arguments, click and typer options, and
the fields of the dataclasses an `HfArgumentParser` parses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

from experiments.hyperparameters import SEED_NAMES, Hyperparameter, Kind, Value, _Scan, _Site
from experiments.literals import _literal_value
from experiments.script_facts import callee, calls


def _strings(nodes: Iterable[ast.expr]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _choices(node: ast.expr | None) -> list[Value] | None:
    if not isinstance(node, ast.List | ast.Tuple):
        return None
    values = [_literal_value(e) for e in node.elts]
    return None if not values or any(v is None for v in values) else values  # type: ignore[return-value]


def _declared(default: Value, declared: ast.expr | None) -> Value:
    """The default as the type the script declares for it: `type=float, default=20` (or `lr: float = 20`)
    takes any real number, so it is searched as a float, not as whole numbers around 20."""
    if isinstance(declared, ast.Subscript) and callee(declared.value) == "Annotated":
        declared = declared.slice.elts[0] if isinstance(declared.slice, ast.Tuple) else None
    if isinstance(declared, ast.Name) and declared.id == "float" and type(default) is int:
        return float(default)
    return default


def _flag_site(
    kind: Kind, name: str, default: Value, node: ast.expr | None, flag: str, line: int, **more: Any
) -> _Site:
    return _Site(Hyperparameter(name=name, default=default, kind=kind, line=line, flag=flag, **more), [node])


def _argparse(tree: ast.Module, scan: _Scan) -> Iterator[_Site]:
    """`add_argument("--lr", type=float, default=1e-3)` on any parser or argument group."""
    for call in calls(tree):
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument"):
            continue
        flags = _strings(call.args)
        if not flags or not all(f.startswith("-") for f in flags):
            continue  # a positional argument takes no default a trial could fall back on
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        long = next((f for f in flags if f.startswith("--")), flags[0])
        dest = _literal_value(kw.get("dest"))
        name = dest if isinstance(dest, str) else long.lstrip("-").replace("-", "_")
        if name in SEED_NAMES:
            scan.seed_flag = scan.seed_flag or long
            continue
        action = _literal_value(kw.get("action"))
        optional = (
            isinstance(kw.get("action"), ast.Attribute) and kw["action"].attr == "BooleanOptionalAction"
        )
        default = _literal_value(kw.get("default"))
        if _literal_value(kw.get("required")) is True or (
            "nargs" in kw and _literal_value(kw["nargs"]) != "?"
        ):
            continue
        if action in ("store_true", "store_false"):
            toggle_default = default if isinstance(default, bool) else action == "store_false"
            yield _Site(
                Hyperparameter(
                    name=name,
                    default=toggle_default,
                    kind="argparse",
                    line=call.lineno,
                    flag=long,
                    toggle=True,
                ),
                [kw.get("default")],
                call,
            )
        elif optional and isinstance(default, bool):
            negative = "--no-" + long.removeprefix("--")
            yield _flag_site("argparse", name, default, kw["default"], long, call.lineno, negative=negative)
        elif action is None and "action" not in kw and default is not None:
            default = _declared(default, kw.get("type"))
            choices = _choices(kw.get("choices"))
            yield _flag_site("argparse", name, default, kw["default"], long, call.lineno, choices=choices)


def _click(tree: ast.Module) -> Iterator[_Site]:
    """`@click.option("--lr", default=1e-3)` (and `--flag/--no-flag`, `is_flag=True`) on a command."""
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef):
            continue
        for deco in func.decorator_list:
            if not (isinstance(deco, ast.Call) and callee(deco.func) == "option"):
                continue
            decls = _strings(deco.args)
            kw = {k.arg: k.value for k in deco.keywords if k.arg}
            default = _literal_value(kw.get("default"))
            if not decls or _literal_value(kw.get("multiple")) is True or "nargs" in kw:
                continue
            pairs = [d.split("/", 1) for d in decls if d.startswith("-")]
            long = next((p[0] for p in pairs if p[0].startswith("--")), pairs[0][0] if pairs else None)
            if long is None:
                continue
            explicit = next((d for d in decls if not d.startswith("-")), None)
            name = explicit or long.lstrip("-").replace("-", "_").lower()
            negative = next((p[1] for p in pairs if len(p) == 2), None)
            toggle = _literal_value(kw.get("is_flag")) is True and negative is None
            if toggle and default is None:
                default = False
            if default is None:
                continue
            choices = None
            choice = kw.get("type")
            if isinstance(choice, ast.Call) and callee(choice.func) == "Choice" and choice.args:
                choices = _choices(choice.args[0])
            default = _declared(default, choice)
            site = _flag_site(
                "click", name, default, kw.get("default"), long, deco.lineno, negative=negative, toggle=toggle
            )
            site.param = site.param.model_copy(update={"choices": choices})
            site.call = deco
            yield site


def _typer_commands(tree: ast.Module) -> set[str]:
    """Functions typer runs: `@app.command()`, `@app.callback()` or `typer.run(main)`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and callee(d.func) in ("command", "callback") for d in node.decorator_list
        ):
            names.add(node.name)
        if isinstance(node, ast.Call) and callee(node.func) == "run" and node.args:
            names |= {node.args[0].id} if isinstance(node.args[0], ast.Name) else set()
    return names


def _typer(tree: ast.Module) -> Iterator[_Site]:
    """A typer command's parameters with defaults: `lr: float = 1e-3`, `typer.Option(1e-3, "--lr")`,
    `Annotated[float, typer.Option("--lr")] = 1e-3`; bools become `--name/--no-name` as typer makes them."""
    commands = _typer_commands(tree)
    for func in ast.walk(tree):
        if not (isinstance(func, ast.FunctionDef) and func.name in commands):
            continue
        a = func.args
        positional = a.posonlyargs + a.args
        pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
        pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
        for arg, default_node in pairs:
            option = _typer_option(arg.annotation)
            node: ast.expr | None = default_node
            if isinstance(default_node, ast.Call) and callee(default_node.func) in ("Option", "Argument"):
                option = default_node
                node = default_node.args[0] if default_node.args else None
                node = next((k.value for k in default_node.keywords if k.arg == "default"), node)
            if option is not None and callee(option.func) == "Argument":
                continue
            default = _declared(_literal_value(node), arg.annotation)
            if default is None:
                continue
            flags = [s.split("/", 1) for s in _strings(option.args if option else []) if s.startswith("-")]
            long = flags[0][0] if flags else "--" + arg.arg.replace("_", "-")
            negative = None
            if isinstance(default, bool):
                negative = flags[0][1] if flags and len(flags[0]) == 2 else "--no-" + long.removeprefix("--")
            yield _flag_site("typer", arg.arg, default, node, long, arg.lineno, negative=negative)


def _typer_option(annotation: ast.expr | None) -> ast.Call | None:
    """The `typer.Option(...)` / `typer.Argument(...)` inside an `Annotated[...]` annotation."""
    if not (isinstance(annotation, ast.Subscript) and callee(annotation.value) == "Annotated"):
        return None
    items = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else []
    return next(
        (i for i in items if isinstance(i, ast.Call) and callee(i.func) in ("Option", "Argument")), None
    )


def _dataclasses(tree: ast.Module) -> Iterator[_Site]:
    """Fields with literal defaults of the dataclasses an `HfArgumentParser` parses (`--name value` flags), and
    the TrainingArguments fields that tune training when it parses those."""
    parsed: set[str] = set()
    for call in calls(tree):
        if callee(call.func) == "HfArgumentParser" and call.args:
            first = call.args[0]
            items = first.elts if isinstance(first, ast.Tuple | ast.List) else [first]
            parsed |= {i.id for i in items if isinstance(i, ast.Name)}
    for cls in tree.body:
        if not (isinstance(cls, ast.ClassDef) and cls.name in parsed):
            continue
        for stmt in cls.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value):
                continue
            node: ast.expr | None = stmt.value
            if isinstance(node, ast.Call) and callee(node.func) == "field":
                node = next((k.value for k in node.keywords if k.arg == "default"), None)
            default = _literal_value(node)
            name = stmt.target.id
            if default is None:
                continue
            yield _flag_site(
                "dataclass", name, default, node, f"--{name}", stmt.lineno, owner=cls.name, keyword=name
            )
    if parsed & TRAINER_CLASSES:
        yield from _training_arguments(tree, min(parsed & TRAINER_CLASSES))


TRAINER_CLASSES = frozenset({"TrainingArguments", "Seq2SeqTrainingArguments"})


def trainer_fields() -> dict[str, tuple[Value, list[Value] | None]]:
    """TrainingArguments' fields that tune training, with their defaults (and choices), as the installed
    Transformers declares them: read from a table, since importing Transformers costs seconds. Transformers 5
    folded `warmup_ratio` into `warmup_steps` (a value below 1 is a ratio of the steps)."""
    try:
        major = int(metadata.version("transformers").partition(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        major = 5
    warmup = {"warmup_steps": (0.0, None)} if major >= 5 else {"warmup_ratio": (0.0, None)}
    return {
        "learning_rate": (5e-5, None),
        "num_train_epochs": (3.0, None),
        **warmup,
        "weight_decay": (0.0, None),
        "per_device_train_batch_size": (8, None),
        "lr_scheduler_type": ("linear", ["linear", "cosine", "constant"]),
        "seed": (42, None),
    }


def _training_arguments(tree: ast.Module, owner: str) -> Iterator[_Site]:
    """The TrainingArguments fields as `--name value` flags of the script's HfArgumentParser; a default the
    script gives one with `parser.set_defaults(name=...)` is its default, and is where approve writes one."""
    after = next(
        (
            (stmt, stmt.targets[0].id)
            for stmt in ast.walk(tree)
            if isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Call)
            and callee(stmt.value.func) == "HfArgumentParser"
        ),
        None,
    )
    given: dict[str, ast.expr] = {}
    for call in calls(tree):
        if isinstance(call.func, ast.Attribute) and call.func.attr == "set_defaults":
            given |= {k.arg: k.value for k in call.keywords if k.arg}
    line = after[0].lineno if after else 1
    for name, (default, choices) in trainer_fields().items():
        node = given.get(name)
        value = _literal_value(node) if node is not None else None
        site = _flag_site(
            "dataclass", name, default if value is None else value, node if value is not None else None,
            f"--{name}", line, owner=owner, keyword=name, choices=choices,
        )  # fmt: skip
        site.after = None if value is not None else after
        yield site
