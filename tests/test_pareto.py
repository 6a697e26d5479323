"""Multi-objective compression studies (metric against model size) on a real small run: the stored front is
exactly the non-dominated stored trials, the report draws and lists it, a front that is not the stored one is
refused, and the planner's trade-off words ask for such a study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from pydantic import ValidationError
from report_lint import lint

from agent import runs
from agent.config import Settings
from agent.plan import planner
from agent.report import render as reporting
from agent.report.checks import ReportError
from agent.schemas import RunInfo
from experiments import registry, worker
from experiments import storage as storages
from experiments.boxed import Result
from experiments.records import Compression, Metric, SearchParam, StudyResult
from experiments.runner import StudySpec, Ticket, ensure_study
from experiments.samplers import make_sampler
from experiments.tuning import TuningConfig, tune_and_compare

pytestmark = pytest.mark.usefixtures("no_provider_env", "one_torch_thread")

MULTI = Compression(kind="int8_dynamic", objective="multi")
SPACE = [
    SearchParam(name="channels", kind="categorical", choices=[2, 4, 8]),
    SearchParam(name="learning_rate", kind="float", low=3e-3, high=3e-2, log=True),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `study` run of digits-cnn under int8 quantization, size the second objective, tiny budgets."""
    task = registry.get("digits-cnn")
    info = RunInfo(
        run_id=runs.new_run_id("pareto"), command=["research-loop", "study"], kind="study", task=task.name
    )
    folder = runs.create(tmp_path_factory.mktemp("reports"), info)
    cfg = TuningConfig(
        sampler="default", pruner="none", trials=6, seeds=1, workers=2, device="cpu", compression=MULTI,
        fixed={"epochs": 2},
    )  # fmt: skip
    url = str(folder / "study.journal")
    result = tune_and_compare(url, info.run_id, folder, task, SPACE, cfg)
    (folder / "results.json").write_text(result.model_dump_json(indent=2))
    info.status, info.storage = "finished", url
    runs.save(folder, info)
    reporting.render(folder, Settings())
    return folder


def results(folder: Path) -> StudyResult:
    return StudyResult.model_validate_json((folder / "results.json").read_text())


def test_the_front_is_exactly_the_non_dominated_stored_trials(run: Path) -> None:
    result = results(run)
    storage = storages.open_storage(str(run / "study.journal"))
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    stored = study.get_trials(deepcopy=False)
    assert [t.state.name for t in stored] == ["COMPLETE"] * 6  # no trial tried to report to the pruner
    points = {t.number: (t.values[0], t.values[1]) for t in stored}
    assert all(t.values[1] == t.user_attrs["metrics"]["size_bytes"] for t in stored)
    assert len({size for _, size in points.values()}) > 1  # channels change the size: there is a trade-off

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and a != b

    front = sorted(n for n, p in points.items() if not any(dominates(q, p) for q in points.values()))
    assert result.pareto == front
    # selection still goes by the metric alone, value 0
    assert result.best is not None and result.best.value == max(p[0] for p in points.values())


def test_the_report_draws_and_lists_the_stored_front(run: Path) -> None:
    result = results(run)
    (view,) = reporting.load_data(run / "report.json").pareto
    assert sorted(p.trial for p in view.front) == result.pareto
    assert sorted(p.trial for p in view.front + view.dominated) == [t.number for t in result.trials]
    by_number = {t.number: t for t in result.trials}
    for point in view.front:
        trial = by_number[point.trial]
        assert (point.value, point.size_bytes) == (trial.value, trial.metrics["size_bytes"])
        assert point.latency_ms == trial.metrics["latency_ms"]
    assert (run / "pareto.png").stat().st_size > 0
    text = (run / "report.md").read_text()
    assert "### Pareto front" in text and "](pareto.png)" in text
    for point in view.front:
        assert f"| default | #{point.trial} | " in text
    assert f"{len(view.front)} of {len(result.trials)} complete trials on the front" in text


@pytest.mark.parametrize(
    "change",
    [lambda front, dominated: front[1:], lambda front, dominated: sorted(front + dominated[:1])],
    ids=["a-front-trial-dropped", "a-dominated-trial-added"],
)
def test_a_front_that_is_not_the_stored_one_is_refused(run: Path, tmp_path: Path, change) -> None:
    folder = tmp_path / run.name
    shutil.copytree(run, folder)
    raw = json.loads((folder / "results.json").read_text())
    dominated = [t["number"] for t in raw["trials"] if t["number"] not in raw["pareto"]]
    assert dominated, "the fixture run must leave a dominated trial, or this test would check nothing"
    raw["pareto"] = change(raw["pareto"], dominated)
    (folder / "results.json").write_text(json.dumps(raw))
    with pytest.raises(ReportError, match="Pareto front of .* is not the front of its stored trials"):
        reporting.render(folder, Settings())


@pytest.mark.parametrize(
    "idea",
    [
        "The smallest model that keeps the digits CNN accurate after int8 dynamic quantization",
        "Accuracy vs. size Pareto front of the digits CNN under int8 quantization",
        "The trade-off between accuracy and model size of the tabular MLP pruned to 70% sparsity",
    ],
)
def test_trade_off_words_with_a_transform_plan_a_multi_objective_study(idea: str) -> None:
    plan = planner.make_plan(idea, Settings())
    assert plan.compression is not None and plan.compression.objective == "multi"
    assert plan.pruner == "none"
    sizes = {"digits-cnn": "channels", "tabular-mlp": "hidden_size"}[plan.task]
    assert sizes in [p.name for p in plan.search_space]
    assert "Pareto front" in plan.objective


def test_without_trade_off_words_or_a_transform_the_study_keeps_one_objective() -> None:
    quantized = planner.make_plan(
        "Keep accuracy of the digits CNN after int8 dynamic quantization", Settings()
    )
    assert quantized.compression is not None and quantized.compression.objective == "metric"
    assert planner.make_plan("The smallest digits CNN that keeps accuracy", Settings()).compression is None


def test_a_multi_objective_plan_refuses_a_pruner_and_cmaes_and_samples_with_optunas_default() -> None:
    plan = planner.make_plan(
        "Accuracy vs size Pareto front of the digits CNN under int8 quantization", Settings()
    )
    with pytest.raises(ValidationError, match="cannot be pruned"):
        plan.model_validate({**plan.model_dump(), "pruner": "median"})
    with pytest.raises(ValidationError, match="cmaes cannot search"):
        plan.model_validate({**plan.model_dump(), "samplers": ["cmaes"]})
    sampler = make_sampler("default", SPACE, 6, 0, objectives=2)
    assert type(sampler.model) is optuna.samplers.TPESampler  # after the Sobol start-up


def _worker_values(url: str, sampler: str) -> list[tuple[float, float]]:
    """Ten trials of a two-objective study through the worker's own trial loop (tickets, background writes),
    on a toy objective that needs no training: accuracy x, size 1000 y."""
    space = [SearchParam(name=n, kind="float", low=0.0, high=1.0) for n in ("x", "y")]
    spec = StudySpec(
        name=sampler, script="toy.py", metric=Metric(name="accuracy", direction="maximize"),
        search_space=space, sampler=sampler, budget=10, compression=MULTI,
    )  # fmt: skip
    ensure_study(url, spec, [Ticket()] * 10)
    sampling = make_sampler(sampler, space, 10, 0, objectives=2)
    study = optuna.load_study(study_name=sampler, storage=storages.open_storage(url), sampler=sampling)
    toy = SimpleNamespace(  # where the worker's trials run: here, the toy objective instead of a boxed child
        run=lambda trial, call, timeout_s: Result(
            metrics={"accuracy": call["hparams"]["x"], "size_bytes": 1000 * call["hparams"]["y"]}
        )
    )
    recorder, tickets = worker.Recorder(), worker.Tickets(study)
    while (trial := tickets.pop()) is not None:
        worker.run_trial(study, trial, toy, spec, {}, recorder)
    recorder.close()
    return [tuple(t.values) for t in study.get_trials()]


def test_a_model_based_sampler_leaves_its_start_up_in_a_worker(tmp_path: Path) -> None:
    """The worker tells results on its recorder thread; the sampler must still see them, or a model-based
    sampler stays in its random start-up for good (as it did: TPE matched random search trial for trial)."""
    url = str(tmp_path / "toy.journal")
    searched, random = _worker_values(url, "tpe"), _worker_values(url, "random")
    assert searched[:4] == random[:4]  # TPE's start-up draws what random search draws at the same seed
    assert searched[4:] != random[4:]  # and then its own choices


def test_the_compression_report_states_only_what_the_study_stored(run: Path) -> None:
    assert lint(run) == []
    # each latency is stored with its spread over the repeats and the machine's load when it was measured
    assert all({"latency_spread_ms", "load_1m", "cores"} <= set(t.metrics) for t in results(run).trials)
