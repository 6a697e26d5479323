"""The offline planner's reading of a compression-aware idea: which evaluation transform the plan names.

"Keep accuracy after int8 dynamic quantization" makes every run's model quantized before its final evaluation,
so the study tunes the quantized model's accuracy; "70% sparsity" or "magnitude pruning" does the same with
global magnitude pruning ("fine-tune" adds one epoch of training after it). Beside a transform, "Pareto",
"trade-off", "accuracy vs size" or "smallest model" ask for a multi-objective study of the compressed metric
against the compressed model's size. The transform applies where a script ends with
`training.final_metrics(...)` (the built-in digits, tabular and image tasks); elsewhere the plan says so under
Not done.
"""

from __future__ import annotations

import re

from agent.plan.offline import words
from agent.plan.rules import matched
from agent.schemas import NotDone
from experiments.records import Compression
from experiments.registry import Task

# "70% sparsity", "sparsity of 70", and "sparsify the CNN to 50%" (read as "sparsity the cnn to 50")
_SPARSITY = re.compile(
    r"\b([1-9][0-9]?) (?:percent )?(?:sparsity|sparse)\b|\bsparsity (?:of )?([1-9][0-9]?)\b|"
    r"\bsparsity(?: [a-z]\w*){0,3}? (?:to|at|by) ([1-9][0-9]?)\b"
)
FINAL_EVALUATION = "final_metrics("


def read(text: str, spec: Task, notes: list[str], not_done: list[NotDone]) -> Compression | None:
    """The transform normalized `text` asks for on `spec`, noting why; None when it asks for none or the
    task's script cannot take one (then a Not done line says so)."""
    compression = _named(text)
    if compression is None:
        return None
    if FINAL_EVALUATION not in spec.script.read_text():
        not_done.append(
            NotDone(
                condition=compression.describe(),
                reason=f"{spec.name}'s script evaluates with its own code, which the loop cannot compress",
                remedy="end run() with experiments.training.final_metrics(model, splits, holdout, trial)",
            )
        )
        return None
    notes.append(
        f"every run's model (the defaults', each trial's, the finalists') gets {compression.describe()} "
        f"before its final evaluation: the study tunes the compressed model's {spec.metric.name}; the "
        f"uncompressed {spec.metric.name}, size in bytes and CPU latency per batch are recorded beside it"
    )
    if not matched(text, words.TRADE_OFF_TERMS):
        return compression
    notes.append(
        f"the idea asks for a trade-off, so each tuning study is multi-objective: the compressed model's "
        f"{spec.metric.name} against its size in bytes (minimized), without a pruner (Optuna prunes one "
        f"objective only); the report draws the Pareto front, and the finalists and the comparison still go "
        f"by {spec.metric.name}"
    )
    return compression.model_copy(update={"objective": "multi"})


def _named(text: str) -> Compression | None:
    if matched(text, words.QUANTIZATION_TERMS):
        return Compression(kind="int8_dynamic")
    weights = matched(text, words.WEIGHT_PRUNING_TERMS)
    if weights or (matched(text, words.PRUNING_TERMS) and matched(text, words.COMPRESSION_TERMS)):
        found = _SPARSITY.search(text)
        sparsity = int(found.group(1) or found.group(2) or found.group(3)) / 100 if found else None
        finetune = 1 if matched(text, words.FINETUNE_TERMS) else 0
        return Compression(kind="magnitude_pruning", sparsity=sparsity, finetune_epochs=finetune)
    return None
