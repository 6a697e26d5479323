"""A plain training script's hyperparameters, found on its syntax tree, and values written where they live.

A script that follows no contract still says what its hyperparameters are: argparse flags with defaults, click
and typer options, the fields of the dataclasses an `HfArgumentParser` parses, literal keyword arguments of
calls whose meaning is well known (`TrainingArguments`, torch optimizers, `nn.Dropout`, `DataLoader`,
scikit-learn estimators) and module-level numeric constants. They are read from the tree, never by importing
the script, so finding them runs none of its code.

A trial sets a hyperparameter by its command-line flag where it has one (the file stays as it is), and
otherwise by rewriting its literal in a copy of the script. `write_values` makes that copy, and approve writes
the measured values back through it as the script's own defaults: an argparse `default=`, a keyword literal, a
constant.
Literal seeds (`torch.manual_seed(0)`, `TrainingArguments(seed=42)`, an estimator's `random_state=0`) are
rewritten to each run's seed the same way, so that seeds differ between runs of a script that fixes its own.
"""

from __future__ import annotations

import ast
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from experiments.script_facts import callee, calls, family, imported, reported

Value = bool | int | float | str
Kind = Literal["argparse", "click", "typer", "dataclass", "keyword", "constant"]
FLAG_KINDS: tuple[Kind, ...] = ("argparse", "click", "typer", "dataclass")
SEED_NAMES = frozenset({"seed", "random_seed", "random_state", "rng_seed"})

_TRAINING_ARGUMENTS = (
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_ratio",
    "warmup_steps",
    "max_grad_norm",
    "lr_scheduler_type",
    "label_smoothing_factor",
    "adam_beta1",
    "adam_beta2",
)
_OPTIMIZER = ("lr", "weight_decay", "momentum", "nesterov", "alpha", "dampening")
_FOREST = ("n_estimators", "max_depth", "min_samples_split", "min_samples_leaf", "max_features", "criterion")
_BOOSTING = ("n_estimators", "learning_rate", "max_depth", "subsample", "min_samples_leaf")
_HIST_BOOSTING = ("learning_rate", "max_iter", "max_depth", "max_leaf_nodes", "l2_regularization")
_TREE = ("max_depth", "min_samples_split", "min_samples_leaf", "criterion")
_GBDT = ("n_estimators", "learning_rate", "max_depth", "num_leaves", "subsample", "colsample_bytree")
_GBDT += ("min_child_weight", "reg_alpha", "reg_lambda")

# Calls whose literal keyword arguments are hyperparameters, by the call's last dotted name; the keywords are
# the ones that tune the model (never `output_dir`, `n_jobs` or `verbose`). Data, so a reviewer can check it.
KNOWN_CALLS: dict[str, tuple[str, ...]] = {
    "TrainingArguments": _TRAINING_ARGUMENTS,
    "Seq2SeqTrainingArguments": _TRAINING_ARGUMENTS,
    **dict.fromkeys(
        ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"), _OPTIMIZER
    ),
    **dict.fromkeys(("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"), ("p",)),
    "DataLoader": ("batch_size",),
    "StepLR": ("step_size", "gamma"),
    "ExponentialLR": ("gamma",),
    **dict.fromkeys(("SVC", "SVR", "NuSVC"), ("C", "gamma", "kernel", "degree")),
    "LinearSVC": ("C",),
    "LogisticRegression": ("C", "max_iter"),
    **dict.fromkeys(("Ridge", "Lasso", "RidgeClassifier"), ("alpha",)),
    "ElasticNet": ("alpha", "l1_ratio"),
    **dict.fromkeys(("KNeighborsClassifier", "KNeighborsRegressor"), ("n_neighbors", "weights", "p")),
    **dict.fromkeys(
        ("MLPClassifier", "MLPRegressor"), ("alpha", "learning_rate_init", "batch_size", "max_iter")
    ),
    **dict.fromkeys(("DecisionTreeClassifier", "DecisionTreeRegressor"), _TREE),
    **dict.fromkeys(
        ("RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"),
        _FOREST,
    ),
    **dict.fromkeys(("GradientBoostingClassifier", "GradientBoostingRegressor"), _BOOSTING),
    **dict.fromkeys(("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"), _HIST_BOOSTING),
    **dict.fromkeys(("XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor"), _GBDT),
}
# Arguments passed by position: (call, index) -> keyword.
POSITIONAL: dict[tuple[str, int], str] = {
    **{(name, 0): "p" for name in KNOWN_CALLS if "Dropout" in name},
    **{(name, 1): "lr" for name, keywords in KNOWN_CALLS.items() if keywords is _OPTIMIZER},
    ("DataLoader", 1): "batch_size",
    ("SVC", 0): "C",
}
# A keyword whose own name says too little: `nn.Dropout(p=0.1)` is searched as `dropout`.
RENAMED: dict[str, str] = {"p": "dropout"}
# Calls that fix a model's randomness (never numpy's or `random`'s global seed, which often fix a data split).
SEED_CALLS = frozenset({"manual_seed", "manual_seed_all", "set_seed", "seed_everything"})
SEED_KEYWORDS = ("seed", "random_state")


class DiscoveryError(ValueError):
    """A value that cannot be written where the script keeps it; the message names it."""


class Hyperparameter(BaseModel):
    """One hyperparameter of a plain script: the name the plan searches it by, its default, where it lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    default: Value
    kind: Kind
    line: int
    flag: str | None = None
    negative: str | None = None
    toggle: bool = False
    choices: list[Value] | None = None
    owner: str | None = None
    keyword: str | None = None

    @property
    def where(self) -> str:
        """Where the value lives, for a person reading the list (`--lr (argparse, line 12)`)."""
        if self.kind == "dataclass":
            return f"{self.flag} (HfArgumentParser field {self.owner}.{self.keyword}, line {self.line})"
        if self.kind in FLAG_KINDS:
            return f"{self.flag} ({self.kind}, line {self.line})"
        if self.kind == "constant":
            return f"constant {self.owner} (line {self.line})"
        return f"{self.owner}({self.keyword}=...) (line {self.line})"


class Discovery(BaseModel):
    """What a plain script offers: its hyperparameters, how it takes a seed, and what it reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hyperparameters: list[Hyperparameter]
    seed_flag: str | None = None
    seed_sites: int = 0
    family: str = "user"
    reported: list[str] = []

    @property
    def defaults(self) -> dict[str, Value]:
        return {h.name: h.default for h in self.hyperparameters}

    def by_flag(self) -> dict[str, Hyperparameter]:
        return {h.name: h for h in self.hyperparameters if h.kind in FLAG_KINDS}


@dataclass
class _Site:
    """A hyperparameter and the literal nodes that hold its default (None: a flag with no `default=`)."""

    param: Hyperparameter
    nodes: list[ast.expr | None]
    call: ast.Call | None = None


@dataclass
class _Scan:
    tree: ast.Module
    sites: list[_Site] = field(default_factory=list)
    seeds: list[ast.expr] = field(default_factory=list)
    seed_flag: str | None = None


def discover(source: str, where: str = "script") -> Discovery:
    """The script's hyperparameters in the order a person reads them: flags, then keyword literals, then
    constants. Raises SyntaxError when the script does not parse."""
    scan = _scan(source, where)
    return Discovery(
        hyperparameters=[s.param for s in scan.sites],
        seed_flag=scan.seed_flag,
        seed_sites=len(scan.seeds),
        family=family(scan.tree),
        reported=reported(scan.tree),
    )


def write_values(source: str, values: dict[str, Any], seed: int | None = None, where: str = "script") -> str:
    """The script with `values` as the defaults of the named hyperparameters (and every literal seed set to
    `seed`); everything else in the file is kept byte for byte."""
    scan = _scan(source, where)
    sites = {s.param.name: s for s in scan.sites}
    splices: list[tuple[int, int, str]] = []
    text = _Text(source)
    for name, value in values.items():
        if name not in sites:
            raise DiscoveryError(
                f"{where}: has no hyperparameter {name!r} (it has {', '.join(sites) or 'none'})"
            )
        site = sites[name]
        for node in site.nodes:
            if node is not None:
                splices.append((text.start(node), text.end(node), _literal(value, name)))
            elif site.call is not None:  # a store_true flag without `default=` gets one
                end = text.end(site.call) - 1
                splices.append((end, end, f", default={_literal(value, name)}"))
    if seed is not None:
        splices += [(text.start(n), text.end(n), str(int(seed))) for n in scan.seeds]
    return text.splice(splices)


# --- scanning -----------------------------------------------------------------------------------------------


def _scan(source: str, where: str) -> _Scan:
    """Every site in reading order, each under a name of its own; the seed flag and literal seeds with them.
    A seed-named option is the seed flag, never a hyperparameter: a study must not tune its seeds."""
    tree = ast.parse(source, filename=where)
    scan = _Scan(tree)
    packages = imported(tree)
    flags: list[_Site] = [*_argparse(tree, scan)]
    if "click" in packages:
        flags += _click(tree)
    if "typer" in packages:
        flags += _typer(tree)
    flags += _dataclasses(tree)
    taken: set[str] = set()
    for site in flags:
        if site.param.name in SEED_NAMES:
            scan.seed_flag = scan.seed_flag or site.param.flag
            continue
        scan.sites.append(_named(site, taken))
    grouped: dict[tuple[str, str, Value], _Site] = {}
    for site in _keywords(tree, scan):
        key = (site.param.owner or "", site.param.name, site.param.default)
        if key in grouped:  # the same call with the same literal in several places: one hyperparameter
            grouped[key].nodes += site.nodes
        else:
            grouped[key] = _named(site, taken)
            scan.sites.append(grouped[key])
    scan.sites += [_named(site, taken) for site in _constants(tree)]
    return scan


def _named(site: _Site, taken: set[str]) -> _Site:
    """The site under a name no earlier one has: `dropout`, then `dropout_2`, ..."""
    name, n = site.param.name, 1
    while name in taken:
        n += 1
        name = f"{site.param.name}_{n}"
    taken.add(name)
    return (
        site
        if name == site.param.name
        else _Site(site.param.model_copy(update={"name": name}), site.nodes, site.call)
    )


def _literal_value(node: ast.expr | None) -> Value | None:
    """The node's value when it is a number, string or boolean literal (a negative number too)."""
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, bool | int | float | str) else None


def _strings(nodes: Iterable[ast.expr]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _choices(node: ast.expr | None) -> list[Value] | None:
    if not isinstance(node, ast.List | ast.Tuple):
        return None
    values = [_literal_value(e) for e in node.elts]
    return None if not values or any(v is None for v in values) else values  # type: ignore[return-value]


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
            default = _literal_value(node)
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
    """Fields with literal defaults of the dataclasses an `HfArgumentParser` parses (`--name value` flags)."""
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


def _keywords(tree: ast.Module, scan: _Scan) -> Iterator[_Site]:
    """Literal arguments of KNOWN_CALLS (and the literal seeds of known calls, for `scan.seeds`)."""
    for call in sorted(calls(tree), key=lambda c: (c.lineno, c.col_offset)):
        name = callee(call.func)
        if name in SEED_CALLS and call.args and isinstance(_literal_value(call.args[0]), int):
            scan.seeds.append(call.args[0])
        if name not in KNOWN_CALLS:
            continue
        for k in call.keywords:
            if k.arg in SEED_KEYWORDS and isinstance(_literal_value(k.value), int):
                scan.seeds.append(k.value)
        given = [(k.arg, k.value) for k in call.keywords if k.arg in KNOWN_CALLS[name]]
        given += [(POSITIONAL[(name, i)], a) for i, a in enumerate(call.args) if (name, i) in POSITIONAL]
        for keyword, node in given:
            default = _literal_value(node)
            if default is None:
                continue
            param = Hyperparameter(
                name=RENAMED.get(keyword, keyword),  # type: ignore[arg-type]
                default=default,
                kind="keyword",
                line=node.lineno,
                owner=name,
                keyword=keyword,
            )
            yield _Site(param, [node])


def _constants(tree: ast.Module) -> Iterator[_Site]:
    """Module-level `NAME = number` assigned once and never declared `global`; searched in lower case."""
    assigned: dict[str, int] = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets += [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    assigned[n.id] = assigned.get(n.id, 0) + 1
    declared = {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            continue
        owner = stmt.targets[0].id
        value = _literal_value(stmt.value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or assigned.get(owner) != 1
            or owner in declared
            or owner.startswith("__")
            or owner.lower() in SEED_NAMES
        ):
            continue
        param = Hyperparameter(
            name=owner.lower(), default=value, kind="constant", line=stmt.lineno, owner=owner
        )
        yield _Site(param, [stmt.value])


# --- writing ------------------------------------------------------------------------------------------------


def _literal(value: Any, name: str) -> str:
    """Python source for a value: `repr` round-trips floats exactly; strings in double quotes."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DiscoveryError(f"{name}: {value!r} cannot be written as a default")
    if not isinstance(value, bool | int | float | str):
        raise DiscoveryError(f"{name}: {value!r} is not a number, string or boolean")
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


class _Text:
    """Character offsets for the tree's (line, UTF-8 byte column) positions, and splices at them."""

    def __init__(self, text: str):
        self.text = text
        self.lines = io.StringIO(text, newline="\n").readlines()
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def _offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def start(self, node: ast.AST) -> int:
        return self._offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self._offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def splice(self, splices: list[tuple[int, int, str]]) -> str:
        out, pos = [], 0
        for start, end, new in sorted(splices):
            if start < pos:
                raise DiscoveryError(f"two values would be written at offset {start}")
            out += [self.text[pos:start], new]
            pos = end
        return "".join([*out, self.text[pos:]])
