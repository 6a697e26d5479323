"""More seeds until the answer is clear (`--seeds auto`): the seeds at each planned look, the level corrected
for the looks, and when the comparison is settled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.analyse.comparisons import compare_arms
from agent.loop.arms import select_arms, validation_mean
from agent.results import RoundResult
from agent.schemas import ExperimentPlan
from experiments import stats
from experiments.records import TrialRecord
from experiments.registry import Task

if TYPE_CHECKING:
    from agent.loop.drive import Loop


class Sequential(BaseModel):
    """How many seeds the final comparison used, over how many planned looks, and why it stopped there."""

    seeds: int
    looks: int = 1
    reason: str


def more_seeds(
    loop: Loop,
    plan: ExperimentPlan,
    task: Task,
    rounds: list[RoundResult],
    baseline: list[TrialRecord],
    finals: dict[str, list[list[TrialRecord]]],
) -> tuple[list[TrialRecord], dict[str, list[list[TrialRecord]]], Sequential]:
    """With `--seeds auto`, two more seeds at a time for the baseline and every finalist, until the answer
    is clear or the cap is reached. Each of the K planned looks tests at alpha / K (Bonferroni over
    looks), and so does the reported comparison, so stopping early does not inflate the error rate."""
    start = plan.budget.seeds
    if not loop.options.seeds_auto:
        return baseline, finals, Sequential(seeds=start, reason=f"fixed: the plan's {start} seeds")
    cap = max(start, loop.options.max_seeds)
    sizes = look_sizes(start, cap)
    arms, looks = plan.arm_list(), len(sizes)
    for i, n in enumerate(sizes):
        if i:
            loop.stage(f"seeds-{n}")
            baseline = loop.baseline_runs(plan, task, n)
            finals = {
                arm.name: [
                    loop.final_runs(plan, task, arm, k, runs_[0].params, n)
                    for k, runs_ in enumerate(finals[arm.name])
                    if runs_
                ]
                for arm in arms
            }
        baseline = _first(loop, baseline, n)
        finals = {a: [_first(loop, f, n) for f in fs] for a, fs in finals.items()}
        why = settled(plan, task, rounds, baseline, finals, looks)
        if why:
            return (
                baseline,
                finals,
                Sequential(
                    seeds=n, looks=looks, reason=f"stopped at {n} seeds (look {i + 1} of {looks}): {why}"
                ),
            )
    return (
        baseline,
        finals,
        Sequential(
            seeds=sizes[-1],
            looks=looks,
            reason=f"the cap of {cap} seeds was reached (look {looks} of {looks}) with an interval that still "
            "includes 0",
        ),
    )


def _first(loop: Loop, records: list[TrialRecord], n: int) -> list[TrialRecord]:
    """The runs of the first n seeds (a resumed run may have stored more)."""
    return [r for r in records if r.seed is not None and r.seed - loop.options.seed < n]


def look_sizes(start: int, cap: int) -> list[int]:
    """Seeds at each look: the plan's, then two more at a time, ending at the cap."""
    sizes = list(range(start, cap + 1, 2)) or [start]
    return sizes if sizes[-1] == cap else [*sizes, cap]


def settled(
    plan: ExperimentPlan,
    task: Task,
    rounds: list[RoundResult],
    baseline: list[TrialRecord],
    finals: dict[str, list[list[TrialRecord]]],
    looks: int,
) -> str:
    """Why the answer is clear, or "" while it is not: every treatment judged better or worse than the
    control (and every head-to-head pair one way or the other), or (without arms) the patch's interval against the defaults excludes 0, at the level corrected
    for `looks`. Seeds that all give the same values are settled too: more of them repeat the same run."""
    results, _ = select_arms(plan, task, rounds, finals)
    level = f"every interval at the {100 * (1 - 0.05 / looks):.4g}% level excludes 0"
    repeated = "every seed gave the same result, so the seed does not reach the script and more cannot help"
    if plan.arms:
        judged = compare_arms(plan.arms, results, task.metric, looks, plan.head_to_head)
        if any(c.verdict == "not measurable" for c in judged):
            return repeated
        return level if judged and all(c.verdict in ("better", "worse") for c in judged) else ""
    top = max(results, key=lambda a: validation_mean(a.final, task))
    c = stats.compare(top.final, baseline, task.metric, "test", looks)
    if c is not None and c.seeds_identical:
        return repeated
    return level if c is not None and c.excludes_zero else ""
