"""Hyperparameters a script writes as literals: the keyword arguments of calls whose meaning is well known
(KNOWN_CALLS) and module-level numeric constants, with the literal seeds of known calls.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator

from experiments.hyperparameters import SEED_NAMES, Hyperparameter, Value, _Scan, _Site
from experiments.script_facts import callee, calls

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
