"""The report's Pareto fronts: for each multi-objective study, its trials on the front and the trials they
dominate, as metric against the compressed model's size.

Which trials are on a front is the study's own `pareto` list, which report_checks has read back against
Optuna's storage; the points are the trials' verified records, so the plot and the table show stored numbers
only.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agent.report.checks import ReportError
from experiments.records import MODEL_SIZE, Model, StudyResult, TrialRecord

LATENCY = "latency_ms"  # recorded beside the size by experiments.compression


class ParetoPoint(Model):
    """One complete tuning trial: its validation metric (the first objective) against its model's size."""

    trial: int
    params: dict[str, Any]
    value: float
    size_bytes: float
    latency_ms: float | None = None


class ParetoFront(Model):
    """One multi-objective study: the trials on its front (smallest model first) and the ones they dominate."""

    label: str
    study: str
    front: list[ParetoPoint]
    dominated: list[ParetoPoint] = Field(default_factory=list)


def pareto_fronts(studies: list[tuple[str, StudyResult]]) -> list[ParetoFront]:
    """The front of each labelled study that has one; ReportError where it lists a trial that did not complete."""
    fronts = []
    for label, study in studies:
        if not study.pareto:
            continue
        done = {t.number: t for t in study.trials if t.state == "COMPLETE" and t.value is not None}
        missing = sorted(set(study.pareto) - set(done))
        if missing:
            raise ReportError(
                f"the Pareto front of {study.study_name!r} lists trials {missing}, which are not complete "
                "trials of the study"
            )
        points = {n: _point(t) for n, t in done.items()}
        front = sorted((points[n] for n in study.pareto), key=lambda p: (p.size_bytes, p.trial))
        dominated = [p for n, p in sorted(points.items()) if n not in study.pareto]
        fronts.append(ParetoFront(label=label, study=study.study_name, front=front, dominated=dominated))
    return fronts


def _point(trial: TrialRecord) -> ParetoPoint:
    if MODEL_SIZE.name not in trial.metrics:
        raise ReportError(f"trial {trial.number} of a multi-objective study recorded no {MODEL_SIZE.name}")
    return ParetoPoint(
        trial=trial.number,
        params=trial.params,
        value=trial.value,  # type: ignore[arg-type]  (complete trials only)
        size_bytes=trial.metrics[MODEL_SIZE.name],
        latency_ms=trial.metrics.get(LATENCY),
    )
