"""The arms' side of a run: whose trials are whose, which configurations each arm re-runs on the held-out
split (`finalists`), and which finalist each arm is compared with, at which shared values (`select_arms`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.results import ArmResult, RoundResult
from agent.schemas import Arm, ExperimentPlan
from experiments.records import StudyResult, TrialRecord
from experiments.registry import Task

if TYPE_CHECKING:
    from agent.loop.drive import Loop

FINALISTS = 2
MATCHED = "matched"  # the match round's phase, and its studies' strategy


def finalists(
    loop: Loop, plan: ExperimentPlan, task: Task, rounds: list[RoundResult], matched: RoundResult | None
) -> dict[str, list[list[TrialRecord]]]:
    """Per arm, the configurations re-run on all the data over the seeds with held-out metrics: its best
    from the full-data rounds (from every round if none used all the data) and, with several arms, its
    matched trials (`match`); with one arm, its best distinct configurations. Selection among them uses
    validation only."""
    loop.stage("final")
    full = [r for r in rounds if r.data_fraction == 1.0] or rounds
    arms = plan.arm_list()
    out: dict[str, list[list[TrialRecord]]] = {}
    for arm in arms:
        chosen: list[TrialRecord] = []
        for trial in _ranked(own_trials(full, arm, arms), task):
            if all(trial.params != c.params for c in chosen):
                chosen.append(trial)
            if len(chosen) == (1 if matched else FINALISTS):
                break
        if matched and chosen:
            chosen += _ranked(own_trials([matched], arm, arms), task)
        out[arm.name] = [
            loop.final_runs(plan, task, arm, k, c.params, plan.budget.seeds) for k, c in enumerate(chosen)
        ]
    return out


def compared_finals(
    plan: ExperimentPlan, task: Task, finals: dict[str, list[list[TrialRecord]]]
) -> tuple[dict[str, list[TrialRecord]], dict[str, Any]]:
    """Per arm, the finalist it is compared with, and the shared values they share.

    With several arms: the shared values that every arm ran at and that are best on validation averaged over
    the arms, so the arms differ only in what defines them. Otherwise, or when no shared values ran in every
    arm (a matched trial failed), each arm's finalist best on validation, and no shared values."""
    arms = plan.arm_list()
    each = {
        a.name: max(finals.get(a.name, []), key=lambda f: validation_mean(f, task), default=[]) for a in arms
    }
    if len(arms) < 2:
        return each, {}
    shared = shared_names(plan)
    by_values = {
        a.name: {key: f for f in finals.get(a.name, []) if (key := _values(f, shared)) is not None}
        for a in arms
    }
    common = [k for k in by_values[arms[0].name] if all(k in by_values[a.name] for a in arms)]
    if not common:
        return each, {}
    top = max(common, key=lambda k: sum(validation_mean(by_values[a.name][k], task) for a in arms))
    return {a.name: by_values[a.name][top] for a in arms}, dict(top)  # type: ignore[arg-type]


def _values(runs_: list[TrialRecord], shared: set[str]) -> tuple[tuple[str, Any], ...] | None:
    """A finalist's shared values, as a key; None for one that never completed."""
    done = next((r for r in runs_ if r.state == "COMPLETE"), None)
    return None if done is None else tuple(sorted((k, v) for k, v in done.params.items() if k in shared))


def select_arms(
    plan: ExperimentPlan, task: Task, rounds: list[RoundResult], finals: dict[str, list[list[TrialRecord]]]
) -> tuple[list[ArmResult], dict[str, Any]]:
    """Per arm, its compared finalist (`compared_finals`, chosen on validation, never test), as the tuning
    trial that found it and its runs over the seeds; and the shared values the arms were compared at."""
    arms = plan.arm_list()
    chosen_finals, values = compared_finals(plan, task, finals)
    results: list[ArmResult] = []
    for arm in arms:
        final = chosen_finals[arm.name]
        best = next((r for r in final if r.state == "COMPLETE"), None)
        pool = [
            (s.sampler, t)
            for r in rounds
            for s in r.studies
            if _of(s, arm, arms)
            for t in s.trials
            if best is not None and t.params == best.params
        ]
        # the search's own trial where it found these values, the matched trial only where it did not
        chosen = min(pool, key=lambda item: (item[0] == MATCHED, item[1].number), default=(None, None))
        results.append(
            ArmResult(
                name=arm.name,
                role=arm.role,
                label=arm.title,
                best=chosen[1],
                final=final,
                strategy=chosen[0],
                # its search's effort: the matched trials re-run other arms' values, one arm more than another
                # where an arm's own best already had them
                trials=sum(
                    _counted(s.trials)
                    for r in rounds
                    if r.phase != MATCHED
                    for s in r.studies
                    if _of(s, arm, arms)
                ),
            )
        )
    return results, values


def validation_mean(runs_: list[TrialRecord], task: Task) -> float:
    """Mean validation value, signed so that larger is better: what selection among finalists uses."""
    sign = 1 if task.metric.direction == "maximize" else -1
    values = [r.value for r in runs_ if r.value is not None]
    return sign * sum(values) / len(values) if values else -float("inf")


def _counted(trials: list[TrialRecord]) -> int:
    """Trials that count against the budget: one that failed and was run again counts once."""
    retried = {t.retry_of for t in trials if t.retry_of is not None}
    return sum(t.number not in retried for t in trials)


def study_name(run_id: str, arms: list[Arm], arm: Arm, stage: str, suffix: str) -> str:
    """`<run>-r1-default`, `<run>-final-0`; with several arms the arm's name comes before the suffix."""
    return f"{run_id}-{stage}-{suffix}" if len(arms) == 1 else f"{run_id}-{stage}-{arm.name}-{suffix}"


def _of(study: StudyResult, arm: Arm, arms: list[Arm]) -> bool:
    """Whether a study tuned `arm` (a run from before arms had one arm, its studies no name)."""
    return study.arm == arm.name or (len(arms) == 1 and not study.arm)


def own_trials(rounds: list[RoundResult], arm: Arm, arms: list[Arm]) -> list[TrialRecord]:
    return [t for r in rounds for s in r.studies if _of(s, arm, arms) for t in s.trials]


def _ranked(trials: list[TrialRecord], task: Task) -> list[TrialRecord]:
    """The completed trials, best first."""
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    return sorted(done, key=lambda t: t.value, reverse=task.metric.direction == "maximize")  # type: ignore[arg-type, return-value]


def shared_names(plan: ExperimentPlan) -> set[str]:
    """The searched hyperparameters every arm tunes alike (an arm's own never overlap them: ExperimentPlan)."""
    return {p.name for p in plan.search_space}
