"""The run's answer: the rounds, the baseline and the finalists' runs become one RunResult, the patch's
candidate and the arms' comparisons on the held-out split.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agent.analyse.comparisons import answer
from agent.loop.arms import select_arms, validation_mean
from agent.loop.sequential import Sequential
from agent.results import RoundResult, RunResult
from agent.schemas import ExperimentPlan
from experiments import stats
from experiments.records import Cost, StudyResult, TrialRecord
from experiments.registry import Task

if TYPE_CHECKING:
    from agent.loop.drive import Loop


def conclude(
    run_id: str,
    plan: ExperimentPlan,
    task: Task,
    rounds: list[RoundResult],
    baseline: list[TrialRecord],
    finals: dict[str, list[list[TrialRecord]]],
    loop: Loop,
    stop_reason: str,
    sequential: Sequential,
) -> RunResult:
    """Per arm, pick the finalist by mean validation value (never by test); the arms' question is answered by
    the treatments against the control on the held-out split. The patch carries the treatment judged better
    that is best on validation, else the control (no arm's change is supported), compared with the defaults
    on the held-out split."""
    arms = plan.arm_list()
    results, shared = select_arms(plan, task, rounds, finals)
    looks = sequential.looks
    comparisons = answer(plan, results, task.metric, looks)
    supported = {c.treatment for c in comparisons if c.verdict == "better" and c.kind == "vs control"}
    pool = results
    if comparisons:  # a plan with a control: only a treatment judged better displaces it
        pool = [
            a for a in results if a.name in supported or (not supported and a.role == "control")
        ] or results
    top = max(pool, key=lambda a: validation_mean(a.final, task))
    studies: list[StudyResult] = [s for r in rounds for s in r.studies]
    return RunResult(
        run_id=run_id,
        plan=plan,
        rounds=rounds,
        best=top.best,
        best_strategy=top.strategy,
        best_arm=top.name if len(arms) > 1 else None,
        baseline=baseline,
        final=top.final,
        comparison=stats.compare(top.final, baseline, task.metric, "test", looks),
        validation=stats.compare(top.final, baseline, task.metric, "validation", looks),
        arms=results if len(arms) > 1 else [],
        comparisons=comparisons,
        compared_at=shared,
        seeds_used=sequential.seeds,
        looks=looks,
        stopping=sequential.reason,
        cost=Cost(
            wall_s=time.monotonic() - loop.started,
            trials=sum(len(s.trials) for s in studies)
            + len(baseline)
            + sum(len(f) for arm_finals in finals.values() for f in arm_finals),
            device=loop.options.device,
            device_name=loop.options.device_name,
            tokens=plan.usage.input_tokens + plan.usage.output_tokens,
            usd=plan.usage.cost_usd,
        ),
        stop_reason=stop_reason,
    )


def baseline_summary(runs_: list[TrialRecord]) -> tuple[float | None, float]:
    """Mean validation value of the baseline seeds, and their spread (the noise floor)."""
    values = [r.value for r in runs_ if r.value is not None]
    if not values:
        return None, 0.0
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, spread
