"""The planning bench's code edits: free-form changes a model makes to the task scripts and to the example plain
scripts, each scored by what the checks say and by whether the intended change is on the syntax tree.

An edit is scored on: applied (every `old` found exactly once, the `applies` check), preflight passed (the
edited script trains one tiny run), the intended change made (a rule per case over the edited script's syntax
tree: a GELU call where ReLU was, a new flag, a keyword), answers, seconds and tokens.
"""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import common
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run

from agent.code import coder
from agent.config import Settings
from agent.schemas import CodeChangeIntent, ExperimentPlan, TokenUsage
from experiments import registry
from experiments.records import SearchParam

EXAMPLES = common.REPO / "examples"


def called(tree: ast.Module, name: str) -> bool:
    """Whether the script calls something named `name` (`nn.GELU()`, `GELU()`, `F.gelu(x)`)."""
    return any(
        isinstance(n, ast.Call)
        and (getattr(n.func, "attr", None) == name or getattr(n.func, "id", None) == name)
        for n in ast.walk(tree)
    )


def assigned(tree: ast.Module, name: str) -> bool:
    """Whether the script assigns `name` (a hyperparameter block line `name = literal`)."""
    return any(
        isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets)
        for n in ast.walk(tree)
    )


def keyword(tree: ast.Module, call: str, key: str) -> bool:
    """Whether some call of `call` passes the keyword `key`."""
    return any(
        isinstance(n, ast.Call)
        and (getattr(n.func, "attr", None) == call or getattr(n.func, "id", None) == call)
        and any(k.arg == key for k in n.keywords)
        for n in ast.walk(tree)
    )


def flag(tree: ast.Module, name: str) -> bool:
    """Whether an argparse `add_argument` defines the flag `name`."""
    return any(
        isinstance(n, ast.Call)
        and getattr(n.func, "attr", None) == "add_argument"
        and any(isinstance(a, ast.Constant) and a.value == name for a in n.args)
        for n in ast.walk(tree)
    )


@dataclass(frozen=True)
class EditCase:
    """A free-form change to one script, what the study would then search, and how to see it made."""

    script: str  # a registered task's name, or an example's file name
    target: str
    change: str
    search: SearchParam
    made: Callable[[ast.Module], bool]

    def task(self) -> registry.Task:
        if self.script in registry.TASKS:
            return registry.get(self.script)
        return registry.register(registry.from_script(EXAMPLES / self.script))


def _cat(name: str, *choices: object) -> SearchParam:
    return SearchParam(name=name, kind="categorical", choices=list(choices))


LR = SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-2, log=True)
EDITS: tuple[EditCase, ...] = (
    EditCase(
        "digits-cnn",
        "activation",
        "use GELU instead of ReLU after each convolution",
        LR,
        lambda t: called(t, "GELU") and not called(t, "ReLU"),
    ),
    EditCase(
        "digits-cnn",
        "grad_clip",
        "clip the gradient norm before each optimizer step at a new block hyperparameter `grad_clip` "
        "(0 means no clipping; default 0.0)",
        SearchParam(name="grad_clip", kind="float", low=0.1, high=5.0),
        lambda t: assigned(t, "grad_clip") and called(t, "clip_grad_norm_"),
    ),
    EditCase(
        "tabular-mlp",
        "activation",
        "make the hidden activation a block hyperparameter `activation` choosing among relu, gelu and tanh "
        "(default relu)",
        _cat("activation", "relu", "gelu", "tanh"),
        lambda t: assigned(t, "activation") and (called(t, "GELU") or called(t, "gelu")),
    ),
    EditCase(
        "tabular-mlp",
        "batch_norm",
        "add batch normalization after each hidden linear layer, switched by a new block hyperparameter "
        "`batch_norm` (default False)",
        _cat("batch_norm", False, True),
        lambda t: assigned(t, "batch_norm") and called(t, "BatchNorm1d"),
    ),
    EditCase(
        "lstm-sentiment",
        "bidirectional",
        "make the LSTM bidirectional when a new block hyperparameter `bidirectional` is True (default False)",
        _cat("bidirectional", False, True),
        lambda t: assigned(t, "bidirectional") and keyword(t, "LSTM", "bidirectional"),
    ),
    EditCase(
        "torch_mlp.py",
        "activation",
        "add a command-line flag --activation choosing the hidden activation, relu or gelu (default relu)",
        _cat("activation", "relu", "gelu"),
        lambda t: flag(t, "--activation") and called(t, "GELU"),
    ),
    EditCase(
        "sklearn_digits.py",
        "criterion",
        "add a command-line flag --criterion for the forest's split criterion, gini or entropy (default "
        "gini), passed to the RandomForestClassifier",
        _cat("criterion", "gini", "entropy"),
        lambda t: flag(t, "--criterion") and keyword(t, "RandomForestClassifier", "criterion"),
    ),
)


@dataclass(frozen=True)
class EditOutcome:
    case: EditCase
    answers: int
    applied: bool
    preflight: bool
    made: bool
    failed: str  # the first failed check, or why no patch was made
    wall_s: float
    usage: TokenUsage
    load: float


def answers_in(runs: Sequence[Run]) -> int:
    """Chat-model calls that came back with an answer, anywhere in the traced runs (a 400 is not one)."""
    return sum((r.run_type == "llm" and r.error is None) + answers_in(r.child_runs) for r in runs)


def edit_scripts(cases: Sequence[EditCase], settings: Settings, root: Path, label: str) -> list[EditOutcome]:
    """Each free-form change through `coder.propose_patch`, as a run makes it: the model's search/replace
    blocks, the checks (preflight included) and the repairs; the script itself is only read."""
    outcomes = []
    for number, case in enumerate(cases, 1):
        task = case.task()
        plan = ExperimentPlan(
            title=case.change,
            idea=case.change,
            objective="a free-form code change",
            hypothesis="the edit passes every check",
            task=task.name,
            search_space=[case.search],
            metric=task.metric,
            code_changes=[CodeChangeIntent(kind="free_form", target=case.target, description=case.change)],
        )
        folder = root / f"edit-{number}"
        started = time.monotonic()
        usage = TokenUsage()
        with collect_runs() as runs:
            try:
                patch = coder.propose_patch(plan, task, folder, settings)
                usage = coder.load_record(folder).usage
                checks = {c.name: c for c in patch.checks}
                failed = next((f"{c.name}: {c.detail}" for c in patch.checks if not c.passed), "")
                made = _made(case, patch.files.get(task.script.name))
            except coder.PatchError as exc:
                checks, failed, made = {}, str(exc), False
        outcome = EditOutcome(
            case,
            answers_in(runs.traced_runs),
            bool(checks.get("applies") and checks["applies"].passed),
            bool(checks.get("preflight") and checks["preflight"].passed),
            made,
            failed,
            time.monotonic() - started,
            usage,
            os.getloadavg()[0],
        )
        print(
            f"[{label} edit {number}/{len(cases)}] {case.script} {case.target}: {outcome.answers} answers, "
            f"{'passed' if not failed else 'failed'}, intended change {'made' if made else 'not made'}, "
            f"{outcome.wall_s:.0f} s",
            flush=True,
        )
        outcomes.append(outcome)
    return outcomes


def _made(case: EditCase, edited: str | None) -> bool:
    """Whether the edited script holds the intended change; an edit that does not parse holds none."""
    if edited is None:
        return False
    try:
        return case.made(ast.parse(edited))
    except SyntaxError:
        return False


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def edit_table(outcomes: list[EditOutcome]) -> str:
    rows = [
        [
            o.case.script,
            o.case.change.replace("|", "\\|"),
            o.answers,
            _yes(o.applied),
            _yes(o.preflight),
            _yes(o.made),
            f"{o.wall_s:.0f}",
            f"{o.usage.input_tokens} / {o.usage.output_tokens}",
            f"{o.load:.1f}",
            o.failed[:160].replace("|", "\\|").replace("\n", " ") or "—",
        ]
        for o in outcomes
    ]
    first = sum(not o.failed and o.answers == 1 for o in outcomes)
    after = sum(not o.failed for o in outcomes)
    made = sum(o.made for o in outcomes)
    columns = [
        "script",
        "change",
        "answers",
        "edit applied",
        "preflight passed",
        "intended change made",
        "s",
        "tokens in / out",
        "load",
        "failed check",
    ]
    return (
        f"Passed every check on the first answer: {first}/{len(outcomes)}; after repairs: {after}/{len(outcomes)}; "
        f"the intended change made: {made}/{len(outcomes)}.\n\n" + common.table(columns, rows)
    )
