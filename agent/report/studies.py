"""One view over both kinds of results (a study's `StudyResult`, a loop's `RunResult`), and what the report
computes from it: each strategy's label, the finalists, their learning curves and the title.

`data.collect` builds its sections over this view, so it does not branch on the run's kind for each of them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from agent.loop.arms import MATCHED
from agent.report.checks import ReportError
from agent.report.curves import LearningCurve, learning_curve
from agent.results import ArmResult, RunResult
from agent.schemas import ExperimentPlan, RunInfo
from experiments.records import Comparison, Cost, Metric, Model, StudyResult, TrialRecord

Results = StudyResult | RunResult


class Studies(Model):
    """A study run and a loop run, seen the same way: tuning studies by round, then the evaluations."""

    studies: list[tuple[int | None, float, StudyResult]]
    best: TrialRecord | None
    best_strategy: str | None
    baseline: list[TrialRecord]
    final: list[TrialRecord]
    comparison: Comparison | None
    validation: Comparison | None
    cost: Cost
    metric: Metric
    task: str
    storage: str
    stop_reason: str = ""


def normalise(results: Results) -> Studies:
    if isinstance(results, StudyResult):
        return Studies(
            studies=[(None, 1.0, results)],
            best=results.best,
            best_strategy=results.sampler if results.best else None,
            baseline=results.baseline,
            final=results.final,
            comparison=results.comparison,
            validation=results.validation,
            cost=results.cost,
            metric=results.metric,
            task=results.task,
            storage=results.storage,
        )
    studies = [(r.round, r.data_fraction, s) for r in results.rounds for s in r.studies]
    return Studies(
        studies=studies,
        best=results.best,
        best_strategy=results.best_strategy,
        baseline=results.baseline,
        final=results.final,
        comparison=results.comparison,
        validation=results.validation,
        cost=results.cost,
        metric=results.plan.metric,
        task=results.plan.task,
        storage=studies[0][2].storage if studies else "",
        stop_reason=results.stop_reason,
    )


def searched_rounds(view: Studies) -> int:
    """The rounds that searched: the matched re-runs after them are not a round of their own."""
    return len({r for r, _, s in view.studies if s.sampler != MATCHED})


def strategy_label(
    round_: int | None, fraction: float, study: StudyResult, rounds: int, arms: bool = False
) -> str:
    """A study's row name: its arm (with `arms`), its round when there were several, its sampler, a subset's
    share."""
    if study.sampler == MATCHED:
        label = "matched re-runs"
    else:
        label = study.sampler if rounds <= 1 else f"round {round_} {study.sampler}"
    label = label if fraction >= 1 else f"{label} ({fraction:.0%} data)"
    return f"{study.arm}: {label}" if arms and study.arm else label


def searched_ranges(view: Studies) -> dict[str, list[str]]:
    """Each searched hyperparameter's ranges in the order the rounds searched them, each with its first round,
    so that a range the analyst widened is stated beside the initial one."""
    ranges: dict[str, dict[str, int | None]] = {}
    for round_, _, study in view.studies:
        if study.sampler != MATCHED:
            for p in study.search_space:
                ranges.setdefault(p.name, {}).setdefault(p.describe(), round_)
    return {
        name: [d if len(seen) == 1 else f"{d} from round {r}" for d, r in seen.items()]
        for name, seen in ranges.items()
    }


def finalists(view: Studies, arms: list[ArmResult]) -> list[tuple[str, list[TrialRecord]]]:
    """The runs the comparison rests on: the defaults, then each arm (or, without arms, the candidate)."""
    groups = [("untuned defaults", view.baseline)]
    return groups + ([(a.label or a.name, a.final) for a in arms] or [("tuned candidate", view.final)])


def curves(view: Studies, arms: list[ArmResult]) -> list[LearningCurve]:
    """The defaults' learning curve, then each arm's (or, without arms, the tuned candidate's)."""
    curves = [
        learning_curve(label, "reference" if i == 0 else "candidate", runs, view.metric.name)
        for i, (label, runs) in enumerate(finalists(view, arms))
    ]
    return [c for c in curves if c is not None]


def study_title(view: Studies) -> str:
    samplers = ", ".join(sorted({s.sampler for _, _, s in view.studies})) or "no"
    trials = sum(len(s.trials) for _, _, s in view.studies)
    return f"{view.task}, {samplers} search over {trials} trials"


RESULTS_FILE = "results.json"
PLAN_FILE = "plan.json"


def load_results(folder: Path, info: RunInfo) -> Results | None:
    """The run's results.json as its kind's results; None before it has any."""
    path = folder / RESULTS_FILE
    if not path.is_file():
        return None
    kind = RunResult if info.kind == "run" else StudyResult
    try:
        return kind.model_validate_json(path.read_text())
    except (ValidationError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is corrupted ({type(exc).__name__}); the run cannot be reported") from None


def plan_of(folder: Path, results: Results | None) -> ExperimentPlan | None:
    """The plan a run followed: the one its results carry, else its plan.json (a study's run has none)."""
    if isinstance(results, RunResult):
        return results.plan
    path = folder / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return ExperimentPlan.model_validate_json(path.read_text())
    except (ValidationError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is corrupted ({type(exc).__name__})") from None
