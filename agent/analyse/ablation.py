"""What made the difference: the patch's candidate with each of its differences reverted alone.

A candidate that beats the defaults after changing the learning rate and dropout says nothing about which of
the two helped. Leave-one-out answers it at the cost of one evaluation per difference: each variant reverts one
value to the reference (the patched script's defaults, under the plan's conditions) and runs over the same
seeds, so `candidate - variant` per seed is what that one change is worth with the others kept.
"""

from __future__ import annotations

from typing import Any

from agent.results import AblationRow
from experiments import stats
from experiments.records import Comparison, Metric, TrialRecord

MAX_VARIANTS = 6


def differences(candidate: dict[str, Any], reference: dict[str, Any], first: list[str]) -> list[str]:
    """The candidate's values that differ from the reference; those in `first` (what the arms compare) lead."""
    changed = [k for k, v in candidate.items() if k in reference and reference[k] != v]
    return sorted(changed, key=lambda k: (k not in first, list(candidate).index(k)))


def variants(
    candidate: dict[str, Any], reference: dict[str, Any], first: list[str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(param, the candidate with that param reverted) for up to MAX_VARIANTS differences, and the rest.

    A single difference needs no ablation: the comparison with the reference already is that change alone."""
    changed = differences(candidate, reference, first)
    if len(changed) < 2:
        return [], []
    chosen = changed[:MAX_VARIANTS]
    return [(k, {**candidate, k: reference[k]}) for k in chosen], changed[MAX_VARIANTS:]


def contribution(final: list[TrialRecord], row_: AblationRow, metric: Metric) -> Comparison | None:
    """candidate - variant on the held-out split, paired by seed: what the reverted change was worth."""
    return stats.compare(final, row_.runs, metric, "test")
