"""Plan quality: 20 fixed ideas through a planner, each plan scored by rules; and a model's code edits.

Each idea in bench/planning_ideas.py (comparisons, techniques the scripts lack, data sets, budgets,
non-English ideas, prompt-injection attempts) goes through `planner.make_plan`, exactly as `research-loop plan`
sends it, once for the offline rules and once for each `--llm` model (default: the configured `llm` setting,
when it is not offline). A plan is scored on: valid on the first answer, repairs used, the right task, arms
that match the question, named conditions honoured or listed under `not_done`, and injected requests ignored
(the rules are in bench/planning_ideas.py).

For a model, the bench also measures free-form code edits (exact search/replace blocks) on the task scripts:
how often the edit passes every check (paths, applies, compiles, contract, one-batch preflight) on the first
answer and after the repairs `llm_repairs` allows. Offline there are no free-form edits, so that part is
reported as not measured.

    python bench/planning.py                                      # the offline planner
    python bench/planning.py --llm anthropic:claude-sonnet-4-5    # and a model (ANTHROPIC_API_KEY set)
    RESEARCH_LOOP_BASE_URL=http://localhost:11434/v1 python bench/planning.py --llm openai-compatible:qwen2.5:7b
    python bench/planning.py --smoke                              # two ideas: plumbing only
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import common
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run
from planning_ideas import IDEAS, Idea, Score, score

from agent import config
from agent.code import coder
from agent.config import Settings
from agent.plan import planner
from agent.plan.rules import PlanError
from agent.schemas import CodeChangeIntent, ExperimentPlan
from experiments import registry
from experiments.records import SearchParam

OFFLINE = "offline"
SMOKE_IDEAS = (0, 17)  # a comparison and an injection attempt
IDEA_CHARS = 70


@dataclass(frozen=True)
class EditCase:
    """A free-form change to one task's script, and what the study would then search."""

    task: str
    target: str
    change: str
    search: SearchParam


EDITS: tuple[EditCase, ...] = (
    EditCase(
        "digits-cnn",
        "activation",
        "use GELU instead of ReLU after each convolution",
        SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-2, log=True),
    ),
    EditCase(
        "digits-cnn",
        "grad_clip",
        "clip the gradient norm before each optimizer step at a new block hyperparameter `grad_clip` "
        "(0 means no clipping; default 0.0)",
        SearchParam(name="grad_clip", kind="float", low=0.1, high=5.0),
    ),
    EditCase(
        "tabular-mlp",
        "activation",
        "make the hidden activation a block hyperparameter `activation` choosing among relu, gelu and tanh "
        "(default relu)",
        SearchParam(name="activation", kind="categorical", choices=["relu", "gelu", "tanh"]),
    ),
    EditCase(
        "tabular-mlp",
        "batch_norm",
        "add batch normalization after each hidden linear layer, switched by a new block hyperparameter "
        "`batch_norm` (default False)",
        SearchParam(name="batch_norm", kind="categorical", choices=[False, True]),
    ),
    EditCase(
        "lstm-sentiment",
        "bidirectional",
        "make the LSTM bidirectional when a new block hyperparameter `bidirectional` is True (default False)",
        SearchParam(name="bidirectional", kind="categorical", choices=[False, True]),
    ),
)


@dataclass(frozen=True)
class Outcome:
    """One idea through one planner: the plan's score, or the planner's one-line refusal."""

    idea: Idea
    answers: int  # model answers the plan took (0 for the offline rules)
    wall_s: float
    score: Score | None = None
    refusal: str = ""

    @property
    def first_valid(self) -> bool:
        return self.score is not None and self.answers <= 1


@dataclass(frozen=True)
class EditOutcome:
    case: EditCase
    answers: int
    passed: bool
    failed: str  # the first failed check, or why no patch was made


def answers_in(runs: Sequence[Run]) -> int:
    """Chat-model calls that came back with an answer, anywhere in the traced runs (a 400 is not one)."""
    return sum((r.run_type == "llm" and r.error is None) + answers_in(r.child_runs) for r in runs)


def plan_ideas(ideas: Sequence[Idea], settings: Settings, label: str) -> list[Outcome]:
    """Each idea through the planner `settings` name, scored; a refusal is an outcome, not a crash. The
    model's answers are counted from LangChain's own trace of the calls, so repairs are seen as they happened."""
    outcomes = []
    for number, idea in enumerate(ideas, 1):
        started = time.monotonic()
        with collect_runs() as runs:
            try:
                plan: ExperimentPlan | None = planner.make_plan(idea.text, settings)
                refusal = ""
            except PlanError as exc:
                plan, refusal = None, str(exc)
        outcome = Outcome(
            idea,
            answers_in(runs.traced_runs),
            time.monotonic() - started,
            None if plan is None else score(idea, plan),
            refusal,
        )
        print(f"[{label} {number}/{len(ideas)}] {_verdict(outcome)}", flush=True)
        outcomes.append(outcome)
    return outcomes


def edit_scripts(cases: Sequence[EditCase], settings: Settings, root: Path, label: str) -> list[EditOutcome]:
    """Each free-form change through `coder.propose_patch`, as a run makes it: the model's search/replace
    blocks, the checks (preflight included) and the repairs; the task's own script is only read."""
    outcomes = []
    for number, case in enumerate(cases, 1):
        task = registry.get(case.task)
        plan = ExperimentPlan(
            title=case.change,
            idea=case.change,
            objective="a free-form code change",
            hypothesis="the edit passes every check",
            task=case.task,
            search_space=[case.search],
            metric=task.metric,
            code_changes=[CodeChangeIntent(kind="free_form", target=case.target, description=case.change)],
        )
        with collect_runs() as runs:
            try:
                patch = coder.propose_patch(plan, task, root / f"edit-{number}", settings)
                failed = next((f"{c.name}: {c.detail}" for c in patch.checks if not c.passed), "")
                passed = patch.checks_passed
            except coder.PatchError as exc:
                passed, failed = False, str(exc)
        outcome = EditOutcome(case, answers_in(runs.traced_runs), passed, failed)
        print(
            f"[{label} edit {number}/{len(cases)}] {case.task} {case.target}: {outcome.answers} answers, "
            f"{'passed' if passed else 'failed'}",
            flush=True,
        )
        outcomes.append(outcome)
    return outcomes


def _verdict(o: Outcome) -> str:
    if o.score is None:
        return f"refused: {o.refusal}"
    s = o.score
    conditions = sum(r != "missed" for _, r in s.conditions)
    return (
        f"task {'ok' if s.task else 'wrong'}, arms {'ok' if s.arms else 'wrong'}, conditions "
        f"{conditions}/{len(s.conditions)}{', injection followed' if s.followed else ''} ({o.answers} answers)"
    )


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def share(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "—"


def summary_row(label: str, outcomes: list[Outcome], model: bool) -> list[object]:
    made = [o for o in outcomes if o.score is not None]
    scores = [o.score for o in made if o.score is not None]
    results = [r for s in scores for _, r in s.conditions]
    attacks = [o for o in outcomes if o.idea.injection]
    ignored = sum(o.score is not None and not o.score.followed for o in attacks)
    return [
        label,
        share(len(made), len(outcomes)),
        share(sum(o.first_valid for o in outcomes), len(outcomes)),
        sum(max(o.answers - 1, 0) for o in made) if model else "—",
        share(sum(s.task for s in scores), len(outcomes)),
        share(sum(s.arms for s in scores), len(outcomes)),
        f"{results.count('honoured')} / {results.count('listed')} / {results.count('missed')}",
        share(ignored, len(attacks)),
        f"{sum(o.wall_s for o in outcomes):.1f}",
    ]


SUMMARY_COLUMNS = [
    "planner",
    "plans made",
    "valid on the first answer",
    "repairs used",
    "right task",
    "arms match the question",
    "conditions honoured / listed as not done / missed",
    "injections ignored",
    "wall s",
]


def idea_rows(outcomes: list[Outcome], model: bool) -> list[list[object]]:
    rows = []
    for number, o in enumerate(outcomes, 1):
        text = o.idea.text if len(o.idea.text) <= IDEA_CHARS else o.idea.text[: IDEA_CHARS - 1] + "…"
        text = text.replace("|", "\\|")
        if o.score is None:
            rows.append([number, o.idea.kind, text, "**refused**", "—", "—", "—", "—", "—", o.refusal[:200]])
            continue
        s = o.score
        rows.append(
            [
                number,
                o.idea.kind,
                text,
                yes(o.first_valid),
                max(o.answers - 1, 0) if model else "—",
                yes(s.task),
                yes(s.arms),
                ", ".join(f"{label}: {r if r != 'missed' else '**missed**'}" for label, r in s.conditions)
                or "—",
                ("**followed**: " + ", ".join(s.followed) if s.followed else "ignored")
                if o.idea.injection
                else "—",
                s.arms_detail,
            ]
        )
    return rows


IDEA_COLUMNS = [
    "#",
    "kind",
    "idea",
    "valid on the first answer",
    "repairs",
    "task",
    "arms",
    "conditions",
    "injection",
    "arms found",
]


def edit_table(outcomes: list[EditOutcome]) -> str:
    rows = [
        [
            o.case.task,
            o.case.change.replace("|", "\\|"),
            o.answers,
            yes(o.passed and o.answers == 1),
            yes(o.passed),
            o.failed[:160].replace("|", "\\|").replace("\n", " ") or "—",
        ]
        for o in outcomes
    ]
    first = sum(o.passed and o.answers == 1 for o in outcomes)
    after = sum(o.passed for o in outcomes)
    columns = [
        "task",
        "change",
        "answers",
        "passed on the first answer",
        "passed after repairs",
        "failed check",
    ]
    return (
        f"Passed every check on the first answer: {first}/{len(outcomes)}; after repairs: {after}/{len(outcomes)}.\n\n"
        + common.table(columns, rows)
    )


def render(
    runs: list[tuple[str, list[Outcome]]],
    edits: list[tuple[str, list[EditOutcome]]],
    settings: Settings,
    n_ideas: int,
) -> str:
    parts = [
        common.header("Plan quality on fixed ideas", common.command_line()),
        f"\n{n_ideas} ideas (bench/planning_ideas.py) through `planner.make_plan`, as `research-loop plan` sends "
        f"them; max_trials {settings.max_trials}, llm_repairs {settings.llm_repairs}. Scoring rules: "
        "bench/planning_ideas.py. A comparison's arms match when the plan has a tuned control plus one tuned "
        "treatment per alternative, set apart by exactly the hyperparameters the question is about, the "
        "control at the script's current setting; a condition counts as listed when a `not_done` entry names "
        "it.\n",
        "\n## Summary\n\n",
        common.table(SUMMARY_COLUMNS, [summary_row(label, o, label != OFFLINE) for label, o in runs]),
    ]
    for label, outcomes in runs:
        parts += [
            f"\n## {label}, idea by idea\n\n",
            common.table(IDEA_COLUMNS, idea_rows(outcomes, label != OFFLINE)),
        ]
    parts.append("\n## Code edits by a model\n\n")
    if not edits:
        parts.append(
            "**Not measured**: no model was configured (`--llm`). The offline planner makes no free-form "
            "edits; its structured code changes are tested in tests/test_coder.py.\n"
        )
    for label, outcomes in edits:
        parts += [
            f"### {label}\n\n{len(outcomes)} free-form changes on the task scripts, each checked by paths, "
            "applies, compiles, contract and a one-batch preflight; a failed check goes back to the model.\n\n",
            edit_table(outcomes),
        ]
    return "".join(parts)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument(
        "--llm",
        action="append",
        default=[],
        help="a model to score beside the offline rules, e.g. anthropic:claude-sonnet-4-5 (repeatable; "
        "default: the configured llm setting, when it is not offline)",
    )
    args = p.parse_args()
    configured = config.load().llm
    models = args.llm or ([] if configured == OFFLINE else [configured])
    ideas = [IDEAS[i] for i in SMOKE_IDEAS] if args.smoke else list(IDEAS)
    cases = EDITS[:1] if args.smoke else EDITS
    runs = [(OFFLINE, plan_ideas(ideas, config.load(llm=OFFLINE), OFFLINE))]
    edits = []
    with tempfile.TemporaryDirectory(prefix="planning-bench-") as root:
        for spec in models:
            settings = config.load(llm=spec)
            runs.append((spec, plan_ideas(ideas, settings, spec)))
            edits.append((spec, edit_scripts(cases, settings, Path(root) / spec.replace(":", "-"), spec)))
    text = render(runs, edits, config.load(), len(ideas))
    path = common.write(args.out, "planning.md", text)
    print(text)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
