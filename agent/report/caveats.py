"""The caveats a report computes rather than leaves to the reader: a reference at the metric's bound, and ties
among the best trials that a tie-break decided.

A comparison whose reference scores the metric's best possible value on every seed (every seed at 1.0
accuracy) cannot show a gain however the other side does, and a candidate picked from several trials tied on
validation was picked by the tie-break, not by its score; both read as evidence unless the report says so.
"""

from __future__ import annotations

from agent.analyse.verdict import fmt
from agent.loop.arms import MATCHED
from agent.results import ArmResult
from agent.schemas import ExperimentPlan
from experiments.records import Comparison, Metric, StudyResult, TrialRecord

# Metrics whose best value is a known bound, by a word in the name: proportions reach 1, errors and losses 0.
PROPORTIONS = ("accuracy", "acc", "f1", "auc", "precision", "recall", "iou", "dice")
ERRORS = ("loss", "mse", "mae", "rmse", "error", "err")
TIE_BREAK = (
    "the earliest trial among those tied, then the finalist with the best validation mean over the seeds"
)


def bound(metric: Metric) -> float | None:
    """The metric's best possible value when its name says it (1 for a maximized proportion, 0 for a minimized
    error), else None: an unnamed score has no known ceiling."""
    words = metric.name.lower().replace("-", "_").split("_")
    if metric.direction == "maximize" and any(w in PROPORTIONS for w in words):
        return 1.0
    if metric.direction == "minimize" and any(w in ERRORS for w in words):
        return 0.0
    return None


def _at_bound(runs: list[TrialRecord], key: str, limit: float) -> bool:
    values = [r.metrics[key] for r in runs if r.state == "COMPLETE" and key in r.metrics]
    return bool(values) and all(v == limit for v in values)


def at_bound(metric: Metric, split: str, references: list[tuple[str, list[TrialRecord]]]) -> list[str]:
    """One caveat per reference (the defaults, the control) whose every seed scored the metric's bound."""
    limit = bound(metric)
    if limit is None:
        return []
    side = "ceiling" if metric.direction == "maximize" else "floor"
    key = f"{split}_{metric.name}"
    return [
        f"every seed of {label} scored {fmt(limit)} {split} {metric.name}, the metric's {side}: a comparison "
        f"with it cannot show a gain, only a loss"
        for label, runs in references
        if _at_bound(runs, key, limit)
    ]


def ties(metric: Metric, groups: list[tuple[str, list[TrialRecord]]]) -> list[str]:
    """One caveat per arm (or the one search) whose best validation value was reached by several trials."""
    out = []
    for label, trials in groups:
        done = [t.value for t in trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            continue
        best = max(done) if metric.direction == "maximize" else min(done)
        tied = sum(v == best for v in done)
        if tied > 1:
            out.append(
                f"{tied} of {label}'s {len(done)} completed trials tied at the best validation {metric.name} "
                f"{fmt(best)}: the one carried on was picked by the tie-break ({TIE_BREAK}), not by its score"
            )
    return out


def caveats(
    metric: Metric,
    comparison: Comparison | None,
    baseline: list[TrialRecord],
    arms: list[ArmResult],
    plan: ExperimentPlan | None,
    studies: list[tuple[int | None, float, StudyResult]],
) -> list[str]:
    """Every computed caveat of a report: the defaults or the control at the bound, then the ties among the
    full-data tuning trials each arm's finalists were chosen from."""
    control = plan.control() if plan and plan.arms else None
    references = [("the untuned defaults", baseline)]
    references += [(f"the control arm {a.name}", a.final) for a in arms if control and a.name == control.name]
    tuning: dict[str, list[TrialRecord]] = {}
    for _, fraction, study in studies:
        if fraction >= 1 and study.sampler != MATCHED:
            label = f"arm {study.arm}" if plan and plan.arms and study.arm else "the search"
            tuning.setdefault(label, []).extend(study.trials)
    split = comparison.split if comparison else "test"
    return at_bound(metric, split, references) + ties(metric, list(tuning.items()))
