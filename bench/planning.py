"""Plan quality: 38 fixed ideas through a planner, each plan scored by rules; and a model's code edits.

Each idea in bench/planning_ideas.py (comparisons, techniques the scripts lack, data sets, budgets,
non-English ideas, prompt-injection attempts) goes through `planner.make_plan`, exactly as `research-loop plan`
sends it, once for the offline rules and once for each `--llm` model (default: the configured `llm` setting,
when it is not offline) in each `--structured` answer format. A plan is scored on: valid on the first answer,
valid after repairs, refused; the right task, arms that match the question, named conditions honoured or listed
under `not_done`, injected requests ignored (the rules are in bench/planning_ideas.py), and the idea's parts as the
product's coverage check counts them (honoured, listed, caught by the check, dropped); seconds, tokens (as the
plan records them: the server's count, or the estimate where its stream carries none) and the first prompt's
size by the model's own tokenizer where its server offers one; the 1-minute load average after each plan.

For a model, the bench also makes free-form code edits (exact search/replace blocks) on the task scripts and
the example plain scripts (bench/planning_edits.py). Offline there are no free-form edits, so that part is
reported as not measured.

    python bench/planning.py                                      # the offline planner
    python bench/planning.py --llm anthropic:claude-sonnet-4-5    # and a model (ANTHROPIC_API_KEY set)
    RESEARCH_LOOP_BASE_URL=http://127.0.0.1:8089/v1 RESEARCH_LOOP_LLM_TIMEOUT_S=900 \
        python bench/planning.py --llm openai-compatible:qwen2.5-coder-1.5b    # a local llama.cpp server
    python bench/planning.py --llm openai-compatible:qwen2.5-coder-1.5b --structured tools --ideas 1,2 \
        --no-edits --results planning-tools.md                   # one answer format on two ideas
    python bench/planning.py --llm openai-compatible:qwen2.5-coder-1.5b --ideas 1 --edits 1,6   # two edits
    python bench/planning.py --smoke                              # two ideas: plumbing only
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import common
import httpx
from langchain_core.tracers.context import collect_runs
from planning_edits import EDITS, EditOutcome, answers_in, edit_scripts, edit_table
from planning_ideas import IDEAS, Idea, Score, score

from agent import config
from agent.config import Settings
from agent.plan import coverage, planner, structured
from agent.plan.rules import PlanError
from agent.schemas import ExperimentPlan, TokenUsage

OFFLINE = "offline"
SMOKE_IDEAS = (0, 17)  # a comparison and an injection attempt
IDEA_CHARS = 70


@dataclass(frozen=True)
class Outcome:
    """One idea through one planner: the plan's score, or the planner's one-line refusal."""

    idea: Idea
    answers: int  # model answers the plan took (0 for the offline rules)
    wall_s: float
    score: Score | None = None
    refusal: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    prompt_tokens: int | None = None  # the first prompt, by the model's own tokenizer
    load: float = 0.0
    parts: coverage.Tally | None = None  # the idea's parts, as the product's coverage check counts them

    @property
    def first_valid(self) -> bool:
        return self.score is not None and self.answers <= 1


def tokenizer_count(settings: Settings, texts: Sequence[str]) -> int | None:
    """How many tokens the model's own tokenizer makes of `texts`, where its server offers a tokenizer
    (llama-cpp-python's /extras/tokenize/count, llama.cpp's /tokenize); None elsewhere. The chat template's
    few role markers are not counted."""
    if not settings.base_url:
        return None
    root = settings.base_url.rstrip("/").removesuffix("/v1")
    total = 0
    with httpx.Client(timeout=30) as client:
        for text in texts:
            try:
                reply = client.post(f"{root}/extras/tokenize/count", json={"input": text})
                if reply.status_code != 200:
                    reply = client.post(f"{root}/tokenize", json={"content": text})
                body = reply.json() if reply.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                return None
            count = body.get("count", len(body.get("tokens") or []))
            if not count:
                return None
            total += count
    return total


def plan_ideas(ideas: Sequence[Idea], settings: Settings, label: str) -> list[Outcome]:
    """Each idea through the planner `settings` name, scored; a refusal is an outcome, not a crash. The
    model's answers are counted from LangChain's own trace of the calls, so repairs are seen as they happened."""
    outcomes = []
    model = settings.llm != OFFLINE
    for number, idea in enumerate(ideas, 1):
        prompt = planner.plan_prompt(idea.text, settings) if model else []
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
            TokenUsage() if plan is None else plan.usage,
            tokenizer_count(settings, [str(m.content) for m in prompt]) if model else None,
            os.getloadavg()[0],
            None if plan is None else coverage.tally(plan),
        )
        print(f"[{label} {number}/{len(ideas)}] {_verdict(outcome)} ({outcome.wall_s:.0f} s)", flush=True)
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


def parts(tallies: Sequence[coverage.Tally | None]) -> str:
    """Idea parts honoured / listed by the planner / caught by the coverage check / dropped, summed."""
    made = [t for t in tallies if t is not None]
    if not made:
        return "—"
    sums = [sum(getattr(t, f) for t in made) for f in ("honoured", "listed", "caught", "dropped")]
    return " / ".join(map(str, sums))


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def share(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "—"


def _spread(values: Sequence[float], digits: int = 0) -> str:
    return f"{statistics.mean(values):.{digits}f} / {max(values):.{digits}f}" if values else "—"


def summary_row(label: str, mode: str, outcomes: list[Outcome], model: bool) -> list[object]:
    made = [o for o in outcomes if o.score is not None]
    scores = [o.score for o in made if o.score is not None]
    results = [r for s in scores for _, r in s.conditions]
    attacks = [o for o in outcomes if o.idea.injection]
    ignored = sum(o.score is not None and not o.score.followed for o in attacks)
    n = len(outcomes)
    counted = [o.prompt_tokens for o in outcomes if o.prompt_tokens is not None]
    return [
        label,
        mode,
        share(len(made), n),
        share(sum(o.first_valid for o in outcomes), n),
        share(sum(o.answers > 1 for o in made), n) if model else "—",
        share(n - len(made), n),
        share(sum(s.task for s in scores), n),
        share(sum(s.arms for s in scores), n),
        f"{results.count('honoured')} / {results.count('listed')} / {results.count('missed')}",
        parts([o.parts for o in outcomes]),
        share(ignored, len(attacks)),
        _spread([o.wall_s for o in outcomes], 1),
        _spread(counted) if model else "—",
        _spread([o.usage.input_tokens for o in made])
        + " in; "
        + _spread([o.usage.output_tokens for o in made])
        + " out"
        if model and made
        else "—",
        f"{statistics.mean(o.load for o in outcomes):.1f}",
    ]


SUMMARY_COLUMNS = [
    "planner",
    "answer format",
    "plans made",
    "valid on the first answer",
    "valid after repairs",
    "refused",
    "right task",
    "arms match the question",
    "conditions honoured / listed as not done / missed",
    "idea parts honoured / listed / caught by the check / dropped",
    "injections ignored",
    "s per plan (mean / max)",
    "first prompt's tokens, model's tokenizer (mean / max)",
    "tokens per plan, recorded (mean / max)",
    "load (mean)",
]


def idea_rows(outcomes: list[Outcome], model: bool) -> list[list[object]]:
    rows = []
    for number, o in enumerate(outcomes, 1):
        text = o.idea.text if len(o.idea.text) <= IDEA_CHARS else o.idea.text[: IDEA_CHARS - 1] + "…"
        text = text.replace("|", "\\|")
        cost = f"{o.wall_s:.0f} s, {o.usage.input_tokens} / {o.usage.output_tokens} tokens, load {o.load:.1f}"
        if o.score is None:
            refusal = o.refusal[:200].replace("|", "\\|")
            rows.append(
                [number, o.idea.kind, text, "**refused**", "—", "—", "—", "—", "—", "—", refusal, cost]
            )
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
                parts([o.parts]),
                ("**followed**: " + ", ".join(s.followed) if s.followed else "ignored")
                if o.idea.injection
                else "—",
                s.arms_detail,
                cost if model else "—",
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
    "parts honoured / listed / caught / dropped",
    "injection",
    "arms found",
    "time, tokens in / out, load",
]


def render(
    runs: list[tuple[str, str, list[Outcome]]],
    edits: list[tuple[str, list[EditOutcome]]],
    settings: Settings,
    n_ideas: int,
) -> str:
    parts = [
        common.header("Plan quality on fixed ideas", common.command_line()),
        f"\n{n_ideas} ideas (bench/planning_ideas.py) through `planner.make_plan`, as `research-loop plan` sends "
        f"them; max_trials {settings.max_trials}, llm_repairs {settings.llm_repairs}, llm_answer_tokens "
        f"{settings.llm_answer_tokens}, llm_timeout_s {settings.llm_timeout_s:g}. Scoring rules: "
        "bench/planning_ideas.py. A comparison's arms match when the plan has a tuned control plus one tuned "
        "treatment per alternative, set apart by exactly the hyperparameters the question is about, the "
        "control at the script's current setting; a condition counts as listed when a `not_done` entry names "
        "it. Idea parts are counted by the product's own coverage check (agent/plan/coverage.py, "
        "`coverage.tally`): each clause, number and phrase the vocabulary knows is honoured by a plan field, "
        "listed under Not done by the planner, or caught by the check (the planner dropped it; the check lists "
        "it as not understood or not honoured); dropped counts what is left after the check. Tokens are as the plan records them: the server's count, or, where a stream carries none "
        "(llama-cpp-python), the prompt estimated at 3.4 characters a token and the answer counted in streamed "
        "chunks; the first prompt's size by the model's own tokenizer is beside them.\n",
        "\n## Summary\n\n",
        common.table(
            SUMMARY_COLUMNS, [summary_row(label, mode, o, label != OFFLINE) for label, mode, o in runs]
        ),
    ]
    for label, mode, outcomes in runs:
        parts += [
            f"\n## {label}{f' ({mode})' if label != OFFLINE else ''}, idea by idea\n\n",
            common.table(IDEA_COLUMNS, idea_rows(outcomes, label != OFFLINE)),
        ]
    parts.append("\n## Code edits by a model\n\n")
    if not edits:
        parts.append(
            "**Not measured**: no model was configured (`--llm`), or `--no-edits`. The offline planner makes no "
            "free-form edits; its structured code changes are tested in tests/test_coder.py.\n"
        )
    for label, outcomes in edits:
        parts += [
            f"### {label}\n\n{len(outcomes)} free-form changes on the task scripts and the example plain "
            "scripts, each checked by paths, applies, compiles, contract and a one-batch preflight (a failed "
            "check goes back to the model), and the intended change looked for on the edited syntax tree.\n\n",
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
    p.add_argument(
        "--structured",
        action="append",
        default=[],
        choices=["auto", "json_schema", "json_object", "tools", "text"],
        help="answer format to ask each model in (repeatable; default: the llm_structured setting)",
    )
    p.add_argument("--ideas", help="the ideas to run, by number from 1, e.g. 1,5,18 (default: all)")
    p.add_argument("--no-edits", action="store_true", help="skip the code-edit part")
    p.add_argument("--edits", help="the code edits to make, by number from 1, e.g. 1,6 (default: all)")
    p.add_argument("--results", default="planning.md", help="file name of the results (default: %(default)s)")
    args = p.parse_args()
    configured = config.load()
    models = args.llm or ([] if configured.llm == OFFLINE else [configured.llm])
    if args.smoke:
        ideas = [IDEAS[i] for i in SMOKE_IDEAS]
    elif args.ideas:
        ideas = [IDEAS[int(n) - 1] for n in args.ideas.split(",")]
    else:
        ideas = list(IDEAS)
    cases = (
        EDITS[:1]
        if args.smoke
        else [EDITS[int(n) - 1] for n in args.edits.split(",")]
        if args.edits
        else EDITS
    )
    runs = [(OFFLINE, "—", plan_ideas(ideas, config.load(llm=OFFLINE), OFFLINE))]
    edits = []
    with tempfile.TemporaryDirectory(prefix="planning-bench-") as root:
        for spec in models:
            for mode in args.structured or [configured.llm_structured]:
                settings = config.load(llm=spec, llm_structured=mode)
                label = spec if mode == "auto" else f"{spec}, {mode}"
                structured._TAKEN.clear()  # each answer format measured from a fresh start
                outcomes = plan_ideas(ideas, settings, label)
                taken = structured._TAKEN.get((spec, settings.base_url or ""), mode)
                runs.append((spec, taken, outcomes))
                path = common.write(args.out, args.results, render(runs, edits, configured, len(ideas)))
                if not args.no_edits:
                    folder = Path(root) / f"{spec}-{mode}".replace(":", "-")
                    edits.append((f"{spec} ({taken})", edit_scripts(cases, settings, folder, label)))
    text = render(runs, edits, configured, len(ideas))
    path = common.write(args.out, args.results, text)  # after each part too: a model's run takes hours
    print(text)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
