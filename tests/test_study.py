"""Real studies on the real tasks with tiny budgets, through worker processes and real storages."""

import optuna
import pytest

from experiments import registry, runner
from experiments.runner import StudySpec, Ticket
from experiments.tuning import TuningConfig, prepare_workspaces, tune, tune_and_compare

TASK = registry.get("tabular-mlp")
TINY = TuningConfig(trials=4, seeds=2, workers=1, sampler="random", pruner="none", data_fraction=0.5)


def test_tune_and_compare_on_journal_storage(tmp_path):
    url = str(tmp_path / "study.journal")
    space = [p for p in TASK.search_space if p.name in ("learning_rate", "epochs")]
    result = tune_and_compare(url, "t1", tmp_path, TASK, space, TINY)
    assert len(result.trials) == 4 and result.counts()["COMPLETE"] == 4
    assert [r.seed for r in result.baseline] == [0, 1]
    assert all("test_accuracy" in r.metrics for r in result.baseline + result.final)
    assert not any(k.startswith("test_") for t in result.trials for k in t.metrics), (
        "tuning saw the test split"
    )
    assert result.best is not None and result.best.value == max(t.value for t in result.trials)
    assert result.comparison is not None and result.comparison.n_seeds == 2
    # every number comes from the storage: reload it with Optuna directly
    stored = optuna.load_study(study_name="t1-tune-random", storage=runner.storages.open_storage(url))
    assert sorted(t.value for t in stored.trials) == sorted(t.value for t in result.trials)


@pytest.mark.parametrize("scheme", ["sqlite"])
def test_rdb_storage_runs_the_same_study(tmp_path, scheme):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    baseline_dir, workspace = prepare_workspaces(tmp_path, TASK)
    trials = tune(url, "sq", TASK, workspace, TASK.search_space[:2], TINY.model_copy(update={"trials": 3}))
    assert [t.state for t in trials] == ["COMPLETE"] * 3


def test_two_workers_on_one_journal_finish_exactly_the_requested_trials(tmp_path):
    url = str(tmp_path / "study.journal")
    _, workspace = prepare_workspaces(tmp_path, TASK)
    cfg = TINY.model_copy(update={"trials": 6, "workers": 2, "sampler": "tpe"})
    trials = tune(url, "two", TASK, workspace, TASK.search_space, cfg)
    assert len(trials) == 6 and {t.state for t in trials} == {"COMPLETE"}
    assert len({t.number for t in trials}) == 6
    workers = {
        t.system_attrs["worker"]
        for t in optuna.load_study(study_name="two", storage=runner.storages.open_storage(url)).trials
    }
    assert len(workers) == 2, "both worker processes should have run trials"


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path):
    script = tmp_path / "ws" / "flaky.py"
    script.parent.mkdir()
    script.write_text(
        "# --- hyperparameters ---\nx = 0.5\n# --- end hyperparameters ---\n\n"
        "def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device='auto'):\n"
        "    if hparams['x'] > 0.5:\n"
        "        raise ValueError('x too large for this model')\n"
        "    return {'accuracy': hparams['x']}\n"
    )
    task = registry.from_script(script)
    spec = StudySpec(name="flaky", script="flaky.py", metric=task.metric, search_space=task.search_space)
    tickets = [Ticket(params={"x": v}) for v in (0.2, 0.7, 0.4)]
    trials = runner.run_study(str(tmp_path / "j.journal"), spec, tickets, script.parent)
    states = {t.params["x"]: t.state for t in trials}
    assert states == {0.2: "COMPLETE", 0.7: "FAIL", 0.4: "COMPLETE"}
    failed = next(t for t in trials if t.state == "FAIL")
    assert failed.error.startswith("ValueError: x too large for this model")


def test_the_spec_a_remote_worker_needs_is_stored_in_the_study(tmp_path):
    url = str(tmp_path / "study.journal")
    _, workspace = prepare_workspaces(tmp_path, TASK)
    tune(url, "attrs", TASK, workspace, TASK.search_space[:1], TINY.model_copy(update={"trials": 1}))
    study = optuna.load_study(study_name="attrs", storage=runner.storages.open_storage(url))
    spec = study.user_attrs[runner.SPEC_ATTR]
    assert spec["script"] == "tabular_mlp.py" and spec["metric"]["direction"] == "maximize"
    assert set(spec) >= {"name", "script", "search_space", "sampler", "pruner", "trial_timeout_s"}
