"""research-loop's default search strategy: the warm start from a script's defaults and the sampler it picks."""

import math

import optuna
import pytest

from experiments import training
from experiments.records import SearchParam
from experiments.samplers import SobolStart, make_pruner, make_sampler, startup_trials, warm_start
from experiments.script import TrialPruned
from experiments.space import suggest

SPACE = [
    SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-1, log=True),
    SearchParam(name="weight_decay", kind="float", low=1e-6, high=1e-2, log=True),
    SearchParam(name="hidden_size", kind="int", low=8, high=128, step=8),
    SearchParam(name="activation", kind="categorical", choices=["relu", "tanh"]),
]


def test_warm_start_moves_defaults_into_the_searched_ranges():
    defaults = {
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "hidden_size": 30,
        "activation": "gelu",
        "epochs": 5,
    }
    assert warm_start(SPACE, [defaults]) == [{"learning_rate": 1e-3, "weight_decay": 1e-6, "hidden_size": 32}]


def test_warm_start_drops_duplicates_and_configurations_with_nothing_searched():
    first = {"learning_rate": 5.0, "activation": "tanh"}
    assert warm_start(SPACE, [first, {"learning_rate": 0.1, "activation": "tanh"}, {"epochs": 3}]) == [
        {"learning_rate": 0.1, "activation": "tanh"}
    ]


def test_default_strategy_runs_its_warm_start_first_then_searches_inside_the_space():
    """A default of 0 on a log range must not reach the model-based sampler as log(0)."""
    numeric = SPACE[:3]
    sampler = make_sampler("default", numeric, budget=12, seed=0)
    study = optuna.create_study(sampler=sampler)
    for params in warm_start(numeric, [{"learning_rate": 1e-3, "weight_decay": 0.0, "hidden_size": 32}]):
        study.enqueue_trial(params)
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, numeric)
        study.tell(trial, (params["learning_rate"] - 0.01) ** 2 + params["weight_decay"])
    first = study.trials[0].params
    assert first == {"learning_rate": 1e-3, "weight_decay": 1e-6, "hidden_size": 32}
    assert all(p.contains(t.params[p.name]) for t in study.trials for p in numeric)


def test_default_strategy_is_gp_up_to_64_trials_even_with_categoricals_and_grouped_tpe_beyond():
    small = make_sampler("default", SPACE, budget=64, seed=0)
    assert isinstance(small, SobolStart) and isinstance(small.model, optuna.samplers.GPSampler)
    larger = make_sampler("default", SPACE, budget=65, seed=0).model
    assert isinstance(larger, optuna.samplers.TPESampler) and larger._multivariate and larger._group


def _run(sampler, trials):
    study = optuna.create_study(sampler=sampler)
    for _ in range(trials):
        trial = study.ask()
        params = suggest(trial, SPACE[:2])
        study.tell(trial, (math.log10(params["learning_rate"]) + 2) ** 2)
    return [t.params for t in study.trials]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_default_strategy_starts_from_a_sobol_design_then_hands_over_to_the_model():
    startup = startup_trials(8)
    ours = _run(make_sampler("default", SPACE[:2], budget=8, seed=3), startup + 2)
    sobol = _run(optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=3), startup + 2)
    assert ours[:startup] == sobol[:startup]
    assert ours[startup:] != sobol[startup:]


@pytest.mark.parametrize(("pruner", "stops"), [("median", True), ("none", False)])
def test_training_report_stops_a_trial_only_when_the_study_has_a_pruner(pruner, stops):
    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner))
    for value in (0.9, 0.8, 0.85):
        trial = study.ask()
        training.report(trial, value, 0)
        training.report(trial, value, 1)
        study.tell(trial, value)
    trial = study.ask()
    training.report(trial, 0.1, 0)
    if stops:
        with pytest.raises(TrialPruned):
            training.report(trial, 0.1, 1)
    else:
        training.report(trial, 0.1, 1)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_default_strategy_counts_pruned_trials_as_design_points():
    def pruned_then_one(sampler: optuna.samplers.BaseSampler, pruned: int) -> list[dict]:
        study = optuna.create_study(sampler=sampler)
        for _ in range(pruned):
            trial = study.ask()
            suggest(trial, SPACE[:2])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        suggest(study.ask(), SPACE[:2])
        return [t.params for t in study.trials]

    startup = startup_trials(16)
    ours = pruned_then_one(make_sampler("default", SPACE[:2], budget=16, seed=5), startup)
    sobol = pruned_then_one(optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=5), startup)
    assert ours[:startup] == sobol[:startup]
    assert ours[startup] != sobol[startup], "after `startup` pruned trials the design hands over"
