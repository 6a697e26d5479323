"""Samplers and pruners by name: each is Optuna's own class, configured once here."""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from agent.schemas import SearchParam

SAMPLERS = ("random", "grid", "tpe", "gp", "cmaes", "qmc", "default")
PRUNERS = ("none", "median", "hyperband")


def startup_trials(budget: int) -> int:
    """Random trials before a model-based sampler takes over: a quarter of the budget, between 3 and 10."""
    return max(3, min(10, budget // 4))


def resolve_default(space: list[SearchParam], budget: int) -> str:
    """research-loop's own choice: GP on small all-numeric spaces, multivariate TPE otherwise."""
    numeric = all(p.kind != "categorical" for p in space)
    return "gp" if numeric and budget <= 64 else "tpe"


def make_sampler(name: str, space: list[SearchParam], budget: int, seed: int) -> BaseSampler:
    if name == "default":
        name = resolve_default(space, budget)
    startup = startup_trials(budget)
    if name in ("random", "grid"):
        # grid points are enqueued as fixed trials; the sampler is never asked for them
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
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
