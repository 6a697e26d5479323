"""The report's compression table: for the defaults and the finalists, the compressed model's held-out metric
beside the uncompressed one, its size and its CPU latency, from the metrics each run recorded."""

from __future__ import annotations

import statistics

from pydantic import Field

from experiments import records
from experiments.records import Compression, Model, TrialRecord

# Recorded by experiments.compression for each run (the compressed model's under the plain names).
MEASURES = ("size_bytes", "latency_ms", "latency_spread_ms", "nonzero_fraction")
LOAD = (records.LOAD, records.CORES)  # the machine's state when each run measured its latency


class CompressionRow(Model):
    """One group of runs (the defaults, the candidate, an arm), as means over its seeds."""

    label: str
    seeds: int
    compressed: float | None
    uncompressed: float | None
    measures: dict[str, float | None]
    uncompressed_measures: dict[str, float | None]


class CompressionView(Model):
    how: str
    metric: str
    rows: list[CompressionRow]
    load: list[float] = Field(default_factory=list, description="lowest and highest 1-minute load average")
    cpus: int | None = Field(default=None, description="CPUs of the machine that measured the latency")

    @property
    def loaded(self) -> bool:
        """Whether some latency was measured while more work waited than the machine has CPUs."""
        return bool(self.load and self.cpus and self.load[1] > self.cpus)


def compression_view(
    compression: Compression | None, metric: str, groups: list[tuple[str, list[TrialRecord]]]
) -> CompressionView | None:
    """The table for a plan that compressed its models; None for one that did not."""
    if compression is None:
        return None
    rows, loads, cpus = [], [], []
    for label, runs in groups:
        done = [r.metrics for r in runs if r.state == "COMPLETE"]
        if not done:
            continue
        loads += [m[LOAD[0]] for m in done if LOAD[0] in m]
        cpus += [int(m[LOAD[1]]) for m in done if LOAD[1] in m]
        rows.append(
            CompressionRow(
                label=label,
                seeds=len(done),
                compressed=_mean(done, f"test_{metric}"),
                uncompressed=_mean(done, f"uncompressed_test_{metric}"),
                measures={k: _mean(done, k) for k in MEASURES},
                uncompressed_measures={k: _mean(done, f"uncompressed_{k}") for k in MEASURES},
            )
        )
    return CompressionView(
        how=compression.describe(),
        metric=metric,
        rows=rows,
        load=[min(loads), max(loads)] if loads else [],
        cpus=min(cpus) if cpus else None,
    )


def _mean(metrics: list[dict[str, float]], key: str) -> float | None:
    values = [m[key] for m in metrics if key in m]
    return statistics.fmean(values) if values else None
