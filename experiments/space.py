"""Search spaces: SearchParam <-> Optuna distributions, suggestions, and grids."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from experiments.hyperparameters import Hyperparameter
from experiments.records import SearchParam

GRID_POINTS = 4


def to_distribution(param: SearchParam) -> BaseDistribution:
    if param.kind == "categorical":
        return CategoricalDistribution(param.choices or [])
    if param.kind == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def suggest(trial: optuna.Trial, space: list[SearchParam]) -> dict[str, Any]:
    """Ask the trial for every parameter; fixed (enqueued) values come back unchanged."""
    params: dict[str, Any] = {}
    for p in space:
        if p.kind == "categorical":
            params[p.name] = trial.suggest_categorical(p.name, p.choices or [])
        elif p.kind == "int":
            params[p.name] = trial.suggest_int(
                p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def points(param: SearchParam, n: int = GRID_POINTS) -> list[Any]:
    """The values a grid search tries for one parameter: its choices, or n points across the range."""
    if param.kind == "categorical":
        return list(param.choices or [])
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.log:
        values = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (n - 1)) for i in range(n)]
    elif param.step:
        count = int(round((high - low) / param.step)) + 1
        values = (
            [low + param.step * round(i * (count - 1) / (n - 1)) for i in range(n)]
            if count > n
            else [low + param.step * i for i in range(count)]
        )
    else:
        values = [low + i * (high - low) / (n - 1) for i in range(n)]
    if param.kind == "int":
        return sorted({int(round(v)) for v in values})
    return sorted(set(values))


def grid(space: list[SearchParam], limit: int, seed: int) -> list[dict[str, Any]]:
    """Up to `limit` grid points, in an order shuffled by the seed so a short budget still spreads out."""
    combos = [
        dict(zip([p.name for p in space], values, strict=True))
        for values in itertools.product(*(points(p) for p in space))
    ]
    random.Random(seed).shuffle(combos)
    return combos[:limit]


# the words of a hyperparameter that sizes an evaluation split (`max_eval_samples`, `validation_split_percentage`,
# `test_size`): changing it changes what is measured, not the model, so it is never searched by default
_SPLIT_WORDS = frozenset({"eval", "val", "valid", "validation", "test", "dev", "holdout"})
_SIZE_WORDS = frozenset(
    {"size", "samples", "examples", "split", "fraction", "percentage", "percent", "ratio"}
)


def sizes_evaluation(name: str) -> bool:
    words = set(name.lower().split("_"))
    return bool(words & _SPLIT_WORDS and words & _SIZE_WORDS)


def found(param: Hyperparameter) -> SearchParam | None:
    """A found hyperparameter's range: its argparse / click choices, else one around its default; none for
    one that sizes an evaluation split."""
    if sizes_evaluation(param.name):
        return None
    if param.choices:
        return SearchParam(name=param.name, kind="categorical", choices=list(param.choices))
    return around((param.name, param.default))


def around(item: tuple[str, Any]) -> SearchParam | None:
    """A default search range for a user's hyperparameter, from its name and default value."""
    name, value = item
    if isinstance(value, bool):
        return SearchParam(name=name, kind="categorical", choices=[False, True])
    if name == "weight_decay":
        return SearchParam(name=name, kind="float", low=1e-6, high=1e-2, log=True)
    if isinstance(value, float) and value > 0 and ("rate" in name or name == "lr"):
        return SearchParam(name=name, kind="float", low=value / 30, high=value * 30, log=True)
    if isinstance(value, float) and 0 <= value < 1:
        return SearchParam(name=name, kind="float", low=0.0, high=min(0.9, max(0.5, value * 2)))
    if isinstance(value, float) and value >= 1:  # TrainingArguments' num_train_epochs=3.0, a gradient norm
        return SearchParam(name=name, kind="float", low=value / 2, high=value * 2)
    if isinstance(value, int) and value > 0:
        return SearchParam(name=name, kind="int", low=max(1, value // 2), high=value * 2)
    return None
