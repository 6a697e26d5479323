"""What a plain script builds and what it reports, read from its syntax tree: the model family (which the
planner's written-down priors are keyed by) and the metric names it prints, saves or returns.

The registry picks the metric a study judges a plain script by from these names and its own table of
directions, so the direction never comes from the script's text, only the name does.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

# torch.optim's own weight_decay defaults where they are not 0.
OWN_WEIGHT_DECAY = {"AdamW": 0.01}
# Calls whose text a script prints its metrics with.
PRINT_CALLS = frozenset({"print", "info", "write", "log", "echo", "secho", "debug", "warning"})
# How a script names a validation metric besides its plain name; `test_` names the held-out split.
METRIC_PREFIXES = ("eval_", "val_", "valid_", "validation_")
ALIASES = {"acc": "accuracy", "f1_score": "f1", "auroc": "roc_auc", "auc": "roc_auc", "ppl": "perplexity"}
_NAMED_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*(?:%|\{[^}]*\})")
_NAME_BEFORE_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*$")


def callee(node: ast.expr) -> str | None:
    """The last name of a dotted reference (`nn.Sequential` -> 'Sequential', `range` -> 'range')."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def calls(tree: ast.AST) -> Iterator[ast.Call]:
    """Every call under `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def imported(tree: ast.Module) -> set[str]:
    """Top-level package names the script imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def family(tree: ast.Module) -> str:
    """The model family, from what the script imports and builds; `user` when nothing says."""
    called = {callee(c.func) for c in calls(tree)}
    if "transformers" in imported(tree):
        return "transformer"
    if called & {"LSTM", "GRU", "RNN"}:
        return "lstm"
    if called & {"Conv1d", "Conv2d", "Conv3d"}:
        return "cnn"
    if "Linear" in called:
        return "mlp"
    return "user"


def metric_name(key: str) -> str:
    """A reported key as the metric it names: without its validation prefix, its short form spelled out
    (`eval_accuracy`, `val_acc` -> `accuracy`); a `test_` key keeps its prefix (`test_acc` ->
    `test_accuracy`)."""
    test = key.startswith("test_")
    key = key.removeprefix("test_")
    for prefix in METRIC_PREFIXES:
        if key.startswith(prefix):
            key = key.removeprefix(prefix)
            break
    key = ALIASES.get(key, key)
    return f"test_{key}" if test else key


def reported(tree: ast.Module) -> list[str]:
    """Validation metric names the script appears to report, in the order they appear: `report_metrics(...)`
    keywords, `name=` / `name:` before a value in printed text, and the keys `compute_metrics` returns (the
    Hugging Face Trainer reports them, and its own `loss`)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and callee(node.func) == "report_metrics":
            found += [k.arg for k in node.keywords if k.arg and k.arg != "step"]
        elif isinstance(node, ast.Call) and callee(node.func) in PRINT_CALLS:
            for arg in node.args:
                found += _printed_names(arg)
        elif isinstance(node, ast.FunctionDef) and node.name == "compute_metrics":
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                    found += [
                        k.value
                        for k in ret.value.keys
                        if isinstance(k, ast.Constant) and isinstance(k.value, str)
                    ]
        elif isinstance(node, ast.Call) and callee(node.func) in ("Trainer", "Seq2SeqTrainer"):
            found.append("loss")
    names = [metric_name(n) for n in found if not n.startswith("train_")]
    return list(dict.fromkeys(n for n in names if not n.startswith("test_")))


def _printed_names(arg: ast.expr) -> list[str]:
    """`f"accuracy={acc:.4f}"`, `"accuracy: %.4f" % acc`, `"accuracy={}".format(acc)` -> ['accuracy']."""
    if isinstance(arg, ast.JoinedStr):
        parts = arg.values
        return [
            m.group(1)
            for piece, after in zip(parts, parts[1:], strict=False)
            if isinstance(piece, ast.Constant) and isinstance(after, ast.FormattedValue)
            for m in [_NAME_BEFORE_VALUE.search(str(piece.value))]
            if m
        ]
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod):
        arg = arg.left
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format":
        arg = arg.func.value
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return _NAMED_VALUE.findall(arg.value)
    return []
