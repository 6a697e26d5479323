"""The rows of a report's tables, built from loaded results: one function per table, none reads a file.

`data.collect` reads and checks the run folder, then hands the loaded records to these, so every row can be
built (and tested) from records alone.
"""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import Field

from agent.analyse.ablation import contribution
from agent.analyse.verdict import better
from agent.report.checks import identical_groups
from agent.results import AblationRow, ArmResult, Finding, RoundResult
from agent.schemas import ExperimentPlan
from experiments.records import Comparison, Metric, Model, StudyResult, TrialRecord
from experiments.stats import metric_values


class SeedRow(Model):
    """One seed of the paired comparison: both runs' held-out and validation values."""

    seed: int
    baseline: float | None = None
    candidate: float | None = None
    baseline_validation: float | None = None
    candidate_validation: float | None = None

    @property
    def difference(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline


class StrategyRow(Model):
    """One search strategy's study: how many trials it ran and when it found its best."""

    label: str
    sampler: str
    study: str
    round: int | None = None
    data_fraction: float = 1.0
    trials: int
    complete: int
    pruned: int
    failed: int
    retried: int
    best_value: float | None = None
    best_trial: int | None = None
    reached_at: int | None = Field(default=None, description="trials run until the best value first appeared")
    values: list[float | None] = Field(default_factory=list, description="each trial's value, in order")
    best_so_far: list[float | None] = Field(default_factory=list, description="after each trial, in order")
    importances: dict[str, float] = Field(default_factory=dict)


class TrialRow(Model):
    strategy: str
    number: int
    value: float
    params: dict[str, Any]
    duration_s: float | None = None


class IdenticalGroup(Model):
    """Trials with different hyperparameters but the same metrics to many digits: flagged, not a finding."""

    trials: list[str]
    params: list[dict[str, Any]]
    metrics: dict[str, float]


class RoundNote(Model):
    round: int
    phase: str
    data_fraction: float
    findings: list[Finding] = Field(default_factory=list)
    revision: list[str] = Field(default_factory=list)


def round_notes(rounds: list[RoundResult], run_id: str) -> list[RoundNote]:
    """Each round's findings (once each, named by the study they were read off) and revisions."""
    return [
        RoundNote(
            round=r.round,
            phase=r.phase,
            data_fraction=r.data_fraction,
            findings=list(
                {
                    (f.kind, f.message, f.study): f.model_copy(
                        update={"study": f.study.removeprefix(f"{run_id}-")}
                    )
                    for f in r.findings
                }.values()
            ),
            revision=r.revision,
        )
        for r in rounds
    ]


class ArmRow(Model):
    """One arm as the report shows it: its definition, its effort, and its selected configuration's runs."""

    name: str
    role: str
    label: str
    definition: str
    trials: int
    strategy: str | None = None
    best_trial: int | None = None
    best_validation: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    test: dict[int, float] = Field(default_factory=dict, description="held-out metric per seed")
    validation: dict[int, float] = Field(default_factory=dict, description="validation metric per seed")
    test_mean: float | None = None
    test_std: float | None = None


class AblationView(Model):
    """One leave-one-out variant: the candidate without one change, and what that change was worth."""

    param: str
    reference: Any = None
    candidate: Any = None
    without_mean: float | None = None
    without_std: float | None = None
    contribution: Comparison | None = Field(default=None, description="candidate - variant, held-out")


def strategy_row(label: str, round_: int | None, fraction: float, study: StudyResult) -> StrategyRow:
    ordered = sorted(study.trials, key=lambda t: t.number)
    curve: list[float | None] = []
    best: TrialRecord | None = None
    reached = None
    for position, trial in enumerate(ordered, 1):
        finished = trial.state == "COMPLETE" and trial.value is not None
        if finished and (best is None or better(trial.value, best.value, study.metric.direction)):  # type: ignore[arg-type]
            best, reached = trial, position
        curve.append(best.value if best else None)
    counts = study.counts()
    return StrategyRow(
        label=label,
        sampler=study.sampler,
        study=study.study_name,
        round=round_,
        data_fraction=fraction,
        trials=len(ordered),
        complete=counts["COMPLETE"],
        pruned=counts["PRUNED"],
        failed=counts["FAIL"],
        retried=sum(t.retry_of is not None for t in ordered),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        reached_at=reached,
        values=[t.value if t.state == "COMPLETE" else None for t in ordered],
        best_so_far=curve,
        importances=study.importances,
    )


def seed_rows(metric: str, baseline: list[TrialRecord], final: list[TrialRecord]) -> list[SeedRow]:
    rows: dict[int, SeedRow] = {}
    for role, records in (("baseline", baseline), ("candidate", final)):
        for r in records:
            if r.seed is None or r.state != "COMPLETE":
                continue
            row = rows.setdefault(r.seed, SeedRow(seed=r.seed))
            setattr(row, role, r.metrics.get(f"test_{metric}"))
            setattr(row, f"{role}_validation", r.metrics.get(metric))
    return [rows[s] for s in sorted(rows)]


def identical(labelled: list[tuple[str, float, TrialRecord]]) -> list[IdenticalGroup]:
    out = []
    for fraction in sorted({f for _, f, _ in labelled}):
        for group in identical_groups((label, t) for label, f, t in labelled if f == fraction):
            out.append(
                IdenticalGroup(
                    trials=[f"{label} #{t.number}" for label, t in group],
                    params=[t.params for _, t in group],
                    metrics=group[0][1].metrics,
                )
            )
    return out


def arm_rows(plan: ExperimentPlan | None, results: list[ArmResult], metric: Metric) -> list[ArmRow]:
    arms = {a.name: a for a in plan.arms} if plan else {}
    rows = []
    for r in results:
        test = metric_values(r.final, f"test_{metric.name}")
        values = list(test.values())
        rows.append(
            ArmRow(
                name=r.name,
                role=r.role,
                label=r.label or r.name,
                definition=arms[r.name].describe() if r.name in arms else "",
                trials=r.trials,
                strategy=r.strategy,
                best_trial=r.best.number if r.best else None,
                best_validation=r.best.value if r.best else None,
                params=r.best.params if r.best else {},
                test=test,
                validation=metric_values(r.final, metric.name),
                test_mean=statistics.fmean(values) if values else None,
                test_std=statistics.stdev(values) if len(values) > 1 else None,
            )
        )
    return rows


def ablation_view(row: AblationRow, final: list[TrialRecord], metric: Metric) -> AblationView:
    values = list(metric_values(row.runs, f"test_{metric.name}").values())
    return AblationView(
        param=row.param,
        reference=row.reference,
        candidate=row.candidate,
        without_mean=statistics.fmean(values) if values else None,
        without_std=statistics.stdev(values) if len(values) > 1 else None,
        contribution=contribution(final, row, metric),
    )
