"""The report's compression table: for the defaults and the finalists, the compressed model's held-out metric
beside the uncompressed one, its size and its CPU latency, from the metrics each run recorded."""

from __future__ import annotations

import statistics

from experiments.records import Compression, Model, TrialRecord

# Recorded by experiments.compression for each run (the compressed model's under the plain names).
MEASURES = ("size_bytes", "latency_ms", "nonzero_fraction")


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


def compression_view(
    compression: Compression | None, metric: str, groups: list[tuple[str, list[TrialRecord]]]
) -> CompressionView | None:
    """The table for a plan that compressed its models; None for one that did not."""
    if compression is None:
        return None
    rows = []
    for label, runs in groups:
        done = [r.metrics for r in runs if r.state == "COMPLETE"]
        if not done:
            continue
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
    return CompressionView(how=compression.describe(), metric=metric, rows=rows)


def _mean(metrics: list[dict[str, float]], key: str) -> float | None:
    values = [m[key] for m in metrics if key in m]
    return statistics.fmean(values) if values else None
