"""Samplers and pruners by name: each is Optuna's own class, configured once here."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from experiments.records import SearchParam

SAMPLERS = ("random", "grid", "tpe", "gp", "cmaes", "qmc", "default")
PRUNERS = ("none", "median", "hyperband")
GP_MAX_TRIALS = 64


def startup_trials(budget: int) -> int:
    """Trials before a model-based sampler takes over: a quarter of the budget, between 4 and 10."""
    return max(4, min(10, budget // 4))


def resolve_default(space: list[SearchParam], budget: int) -> str:
    """research-loop's own choice, from the measurements in bench/results/efficiency.md: Gaussian-process
    search up to GP_MAX_TRIALS trials, whatever the space holds (on the HPOLib problems, which mix categorical
    and numeric parameters, GP beat multivariate TPE at every budget up to 64); multivariate, grouped TPE
    beyond, where GP's cost per trial keeps growing with the trials and TPE had caught up.
    """
    return "gp" if budget <= GP_MAX_TRIALS else "tpe"


def warm_start(space: list[SearchParam], configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixed values of the first tickets: each configuration cut to the searched parameters and moved
    into their ranges, duplicates dropped.

    A script's default often lies outside the range searched around it (weight_decay = 0 on a log range):
    it starts at the range's nearest end instead, because a value outside the distribution would reach the
    model-based samplers as log(0). A categorical value the space lacks is left to the sampler.
    """
    fixed: list[dict[str, Any]] = []
    for config in configs:
        point = {p.name: _inside(p, config[p.name]) for p in space if p.name in config}
        point = {k: v for k, v in point.items() if v is not None}
        if point and point not in fixed:
            fixed.append(point)
    return fixed


def _inside(param: SearchParam, value: Any) -> Any:
    if param.kind == "categorical":
        return value if param.contains(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    value = min(max(float(value), low), high)
    if param.step:
        value = min(low + param.step * round((value - low) / param.step), high)
    return int(round(value)) if param.kind == "int" else value


@contextlib.contextmanager
def _deliberate() -> Iterator[None]:
    """Silence Optuna's "experimental" warning for features research-loop opts into on purpose (QMC, grouped
    TPE): otherwise every worker's log repeats it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


class SobolStart(BaseSampler):
    """Scrambled Sobol points for the first `startup` finished trials, then the model-based sampler.

    A model-based sampler starts from random points; a low-discrepancy design covers the space more evenly
    with the same few trials, which is what a small budget lives on (bench/results/efficiency.md). The phase is
    fixed per trial when it starts, so one trial never mixes the two samplers. A pruned trial counts as a design
    point too: under a pruner most trials are pruned, and the design would otherwise never hand over.
    """

    def __init__(self, model: BaseSampler, startup: int, seed: int) -> None:
        self.model = model
        self.startup = startup
        with _deliberate():
            self.design = optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
            )
        self._phase: dict[int, BaseSampler] = {}

    def _active(self, trial: FrozenTrial) -> BaseSampler:
        return self._phase.get(trial.number, self.model)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        self._phase[trial.number] = self.design if finished < self.startup else self.model
        self._active(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._active(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict[str, Any]:
        return self._active(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._active(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._phase.pop(trial.number, self.model).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.model.reseed_rng()
        self.design.reseed_rng()


def make_sampler(
    name: str, space: list[SearchParam], budget: int, seed: int, objectives: int = 1
) -> BaseSampler:
    """`objectives` > 1: a multi-objective study, where "default" is the same Sobol start-up followed by
    Optuna's own default sampler for several objectives (TPE) instead of GP, which was measured on one."""
    startup = startup_trials(budget)
    if name == "default" and objectives > 1:
        return SobolStart(optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup), startup, seed)
    if name == "default":
        return SobolStart(make_sampler(resolve_default(space, budget), space, budget, seed), startup, seed)
    if name in ("random", "grid"):
        # grid points are enqueued as fixed trials; the sampler is never asked for them
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        with _deliberate():
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
            )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False
        )
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_asynchronous_seeding=False)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> BasePruner:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
