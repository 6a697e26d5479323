"""Reads a finished round and decides the next: typed findings, then a plan revision that follows from them.

The offline revision is by rule, so the same stored trials always give the same next round. Each rule is the
written-down version of what an engineer does after looking at a study: widen a range whose best value sits on
its edge, try the levels the sampler barely touched, stop pruning when pruning cut configurations that were
learning as well as the best, and stop when nothing beats the baseline's own noise.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from agent.results import Finding
from experiments.records import Direction, SearchParam, StudyResult, TrialRecord

EDGE_SHARE = 0.05
IMPORTANT = 0.25
IDENTICAL_DIGITS = 12
WIDEN_LOG_FACTOR = 3.0
# hard limits a widened range never crosses, by hyperparameter name
LIMITS: dict[str, tuple[float, float]] = {
    "dropout": (0.0, 0.9),
    "hidden_dropout": (0.0, 0.9),
    "attention_dropout": (0.0, 0.9),
    "momentum": (0.0, 0.999),
    "warmup_ratio": (0.0, 0.5),
    "learning_rate": (1e-7, 1.0),
}


class Revision(BaseModel):
    """The next round's changes: a revised space, configurations to try first, and the pruner."""

    search_space: list[SearchParam]
    warm_start: list[dict[str, Any]] = Field(default_factory=list)
    pruner: str
    changes: list[str] = Field(default_factory=list)


def _finished(trials: list[TrialRecord]) -> list[TrialRecord]:
    return [t for t in trials if t.state == "COMPLETE" and t.value is not None]


def _ranked(trials: list[TrialRecord], direction: Direction) -> list[TrialRecord]:
    return sorted(_finished(trials), key=lambda t: t.value, reverse=direction == "maximize")


def _position(param: SearchParam, value: float) -> float:
    """Where a value sits in its range, 0 at low and 1 at high (in log space for log ranges)."""
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return 0.5 if high == low else (value - low) / (high - low)


def importance_findings(result: StudyResult) -> list[Finding]:
    return [
        Finding(
            kind="importance",
            param=name,
            message=f"{name} explains {share:.0%} of the variation in {result.metric.name}",
            evidence={"importance": share},
        )
        for name, share in result.importances.items()
        if share >= IMPORTANT
    ]


def edge_findings(result: StudyResult) -> list[Finding]:
    ranked = _ranked(result.trials, result.metric.direction)
    if len(ranked) < 3:
        return []
    best, out = ranked[0], []
    for param in result.search_space:
        if param.kind == "categorical" or param.name not in best.params:
            continue
        pos = _position(param, float(best.params[param.name]))
        side = "high" if pos >= 1 - EDGE_SHARE else "low" if pos <= EDGE_SHARE else None
        if side:
            out.append(
                Finding(
                    kind="edge",
                    param=param.name,
                    message=f"best {param.name} = {best.params[param.name]:.4g} sits on the {side} edge of "
                    f"{param.describe()}: the optimum may lie outside the range",
                    evidence={
                        "value": best.params[param.name],
                        "side": side,
                        "low": param.low,
                        "high": param.high,
                    },
                )
            )
    return out


def under_explored_findings(result: StudyResult) -> list[Finding]:
    """Categorical values and integer levels that the sampler barely tried."""
    tried = [t for t in result.trials if t.state in ("COMPLETE", "PRUNED")]
    if len(tried) < 6:
        return []
    out = []
    for param in result.search_space:
        if param.kind == "categorical":
            levels = list(param.choices or [])
        elif param.kind == "int" and (param.high - param.low) / (param.step or 1) <= 6:  # type: ignore[operator]
            levels = list(range(int(param.low), int(param.high) + 1, int(param.step or 1)))  # type: ignore[arg-type]
        else:
            continue
        counts = Counter(t.params.get(param.name) for t in tried)
        share = 1 / len(levels)
        for level in levels:
            if counts[level] < max(1, 0.25 * share * len(tried)):
                out.append(
                    Finding(
                        kind="under_explored",
                        param=param.name,
                        message=f"{param.name} = {level} was tried in {counts[level]} of {len(tried)} trials",
                        evidence={"value": level, "count": counts[level], "trials": len(tried)},
                    )
                )
    return out


def pruning_findings(result: StudyResult) -> list[Finding]:
    """Pruned trials that, at the step they were stopped, were doing as well as the eventual best."""
    ranked = _ranked(result.trials, result.metric.direction)
    if not ranked or not ranked[0].intermediate:
        return []
    curve, sign = ranked[0].intermediate, 1 if result.metric.direction == "maximize" else -1
    cut = []
    for t in result.trials:
        if t.state != "PRUNED" or not t.intermediate:
            continue
        step = max(t.intermediate)
        if step in curve and sign * (t.intermediate[step] - curve[step]) >= 0:
            cut.append(t.number)
    if not cut:
        return []
    return [
        Finding(
            kind="pruning_bias",
            message=f"{len(cut)} pruned trial(s) were level with or ahead of the final best trial when stopped "
            f"(trials {', '.join(map(str, cut))}): pruning may be cutting slow starters",
            evidence={"trials": cut},
        )
    ]


def gain_findings(result: StudyResult, baseline_value: float | None, noise_floor: float) -> list[Finding]:
    ranked = _ranked(result.trials, result.metric.direction)
    if baseline_value is None or not ranked:
        return []
    sign = 1 if result.metric.direction == "maximize" else -1
    gain = sign * (ranked[0].value - baseline_value)  # type: ignore[operator]
    if gain > noise_floor:
        return []
    return [
        Finding(
            kind="no_gain",
            message=f"best {result.metric.name} {ranked[0].value:.4f} is {gain:+.4f} from the baseline's "
            f"{baseline_value:.4f}, within its noise floor of {noise_floor:.4f}",
            evidence={"gain": gain, "noise_floor": noise_floor},
        )
    ]


def identical_findings(result: StudyResult) -> list[Finding]:
    """Different configurations with every metric equal to many digits: a broken script, not a finding.

    All metrics are compared, not just the objective: accuracy on a small split is discrete and often ties,
    while a loss almost never does unless the hyperparameters had no effect.
    """
    groups: dict[tuple, set[str]] = {}
    for t in _finished(result.trials):
        scores = t.metrics or {"value": t.value}
        key = tuple(sorted((k, round(v, IDENTICAL_DIGITS)) for k, v in scores.items()))
        groups.setdefault(key, set()).add(repr(sorted(t.params.items())))
    return [
        Finding(
            kind="identical_metrics",
            message=f"{len(configs)} different configurations scored exactly the same "
            f"({', '.join(f'{k}={v:.6g}' for k, v in key)}): check that the script uses its hyperparameters",
            evidence={"metrics": dict(key), "configurations": len(configs)},
        )
        for key, configs in groups.items()
        if len(configs) >= 3
    ]


def analyse(result: StudyResult, baseline_value: float | None, noise_floor: float) -> list[Finding]:
    return (
        importance_findings(result)
        + edge_findings(result)
        + under_explored_findings(result)
        + pruning_findings(result)
        + gain_findings(result, baseline_value, noise_floor)
        + identical_findings(result)
    )


def _widen(param: SearchParam, side: str) -> SearchParam:
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.log:
        low, high = (low, high * WIDEN_LOG_FACTOR) if side == "high" else (low / WIDEN_LOG_FACTOR, high)
    else:
        width = (high - low) or max(abs(high), 1.0)
        low, high = (low, high + width / 2) if side == "high" else (low - width / 2, high)
    # a range that started non-negative (or at 1 for counts) stays so, whatever the widening
    floor, ceiling = LIMITS.get(param.name, (0.0 if param.low >= 0 else -math.inf, math.inf))  # type: ignore[operator]
    if param.kind == "int" and param.low >= 1:  # type: ignore[operator]
        floor = max(floor, 1.0)
    low, high = max(low, floor), min(high, ceiling)
    if param.kind == "int":
        low, high = math.floor(low), math.ceil(high)
    return param.model_copy(update={"low": low, "high": high})


def revise(
    space: list[SearchParam],
    findings: list[Finding],
    pruner: str,
    best: TrialRecord | None,
) -> Revision:
    """The offline revision rules: every change names the finding it follows from."""
    by_name = {p.name: p for p in space}
    warm: list[dict[str, Any]] = [dict(best.params)] if best else []
    changes: list[str] = []
    seen: set[tuple[str, str | None, str]] = set()
    for f in findings:
        key = (f.kind, f.param, str(f.evidence.get("side", f.evidence.get("value", ""))))
        if key in seen:  # the same finding from two strategies' studies acts once
            continue
        seen.add(key)
        if f.kind == "edge" and f.param in by_name:
            widened = _widen(by_name[f.param], f.evidence["side"])
            if widened != by_name[f.param]:
                changes.append(
                    f"widened {f.param} from {by_name[f.param].describe()} to {widened.describe()} (edge)"
                )
                by_name[f.param] = widened
        elif f.kind == "under_explored" and best is not None and f.param in by_name:
            warm.append({**best.params, f.param: f.evidence["value"]})
            changes.append(
                f"enqueued the best configuration with {f.param} = {f.evidence['value']} (under-explored)"
            )
        elif f.kind == "pruning_bias" and pruner != "none":
            changes.append(f"switched the pruner from {pruner} to none (pruning bias)")
            pruner = "none"
    if best is not None:
        changes.insert(0, "warm start: the best configuration so far is tried first")
    return Revision(search_space=list(by_name.values()), warm_start=warm, pruner=pruner, changes=changes)
