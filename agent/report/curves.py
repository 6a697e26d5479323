"""The report's learning curves and confusion matrix, computed from the finalists' trial records.

The scripts note each epoch's training loss and validation metrics (experiments.training.report) and, on the
held-out split, a confusion matrix (record_confusion); the worker stores both with the trial, and the report
checks them against storage with the rest of the record. A script that notes no curve still reports its
validation metric each epoch for the pruner: that becomes its curve, with the metric alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from pydantic import Field

from experiments.records import Model, TrialRecord

TRAIN_LOSS = "train_loss"


class LearningCurve(Model):
    """One group of finalist runs (the defaults, the candidate, an arm): per-epoch means over its seeds."""

    label: str
    role: str = Field(description="reference (the untuned defaults) or candidate")
    seeds: int
    epochs: list[int]
    series: dict[str, list[float | None]] = Field(
        description="train_loss, the validation loss and metric: the mean over seeds at each epoch"
    )

    @property
    def has_train_loss(self) -> bool:
        """False for a script that notes no curve: its line is the metric it reported to the pruner."""
        return TRAIN_LOSS in self.series


class ConfusionView(Model):
    """The candidate's held-out confusion matrix, summed over its seeds (rows true class, columns predicted)."""

    label: str
    seeds: int
    matrix: list[list[int]]

    @property
    def per_class(self) -> list[float | None]:
        """Recall of each class: the share of its held-out examples predicted as it."""
        return [row[i] / sum(row) if sum(row) else None for i, row in enumerate(self.matrix)]


def points(record: TrialRecord, metric: str) -> list[dict[str, float]]:
    """A run's learning curve: what its script noted, else the metric it reported to the pruner each epoch."""
    if record.curve:
        return record.curve
    return [{"epoch": float(step), metric: value} for step, value in sorted(record.intermediate.items())]


def learning_curve(label: str, role: str, runs: Iterable[TrialRecord], metric: str) -> LearningCurve | None:
    """The mean curve over the completed runs that have one; None when none has."""
    curves = [points(r, metric) for r in runs if r.state == "COMPLETE"]
    curves = [c for c in curves if c]
    if not curves:
        return None
    by_epoch: dict[int, list[dict[str, float]]] = {}
    for curve in curves:
        for point in curve:
            by_epoch.setdefault(int(point["epoch"]), []).append(point)
    epochs = sorted(by_epoch)
    keys = [k for k in (TRAIN_LOSS, "loss", metric) if any(k in p for c in curves for p in c)]
    series = {
        key: [_mean(p.get(key) for p in by_epoch[e]) for e in epochs]  # runs stopped early count no further
        for key in keys
    }
    return LearningCurve(label=label, role=role, seeds=len(curves), epochs=epochs, series=series)


def confusion_view(label: str, runs: Iterable[TrialRecord]) -> ConfusionView | None:
    """The held-out confusion matrices of the completed runs, summed; None when no run noted one."""
    matrices = [r.confusion for r in runs if r.state == "COMPLETE" and r.confusion]
    if not matrices or len({len(m) for m in matrices}) != 1:
        return None
    size = len(matrices[0])
    total = [[sum(m[i][j] for m in matrices) for j in range(size)] for i in range(size)]
    return ConfusionView(label=label, seeds=len(matrices), matrix=total)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None
