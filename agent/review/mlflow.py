"""`research-loop export RUN --mlflow [URI]`: a finished run as MLflow runs, for a team's tracking server.

Nothing is re-run or recomputed: the export reads report.json (the numbers the report showed, checked against
the run's Optuna storage when it was rendered) and results.json (the trials themselves). One experiment holds
one parent MLflow run for the research-loop run (its answer, the held-out comparison, the plots and the report
as artifacts) with child runs for the untuned defaults, each arm (its selected configuration, held-out value
per seed as steps, its comparison with the control) and each study, whose trials are nested under it
(parameters, metrics, intermediate values by step, state).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from agent import runs
from agent.report import render as reporting
from agent.report.data import ReportData
from agent.report.rows import ArmRow, StrategyRow
from agent.report.studies import load_results
from agent.results import ArmComparison, RunResult
from experiments.records import Comparison, Model, StudyResult, TrialRecord

RUN_TAG = "research_loop.run_id"
PART_TAG = "research_loop.part"
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # the run's description in MLflow's UI
# MLflow 3's UI opens an experiment of this kind on its training runs, not on GenAI traces
KIND_TAGS = {"mlflow.experimentKind": "custom_model_development"}
STATUS = {
    "COMPLETE": "FINISHED",
    "PRUNED": "KILLED",
    "FAIL": "FAILED",
    "RUNNING": "RUNNING",
    "WAITING": "SCHEDULED",
}
ARTIFACTS = ("report.md", "report.html", "report.json", "patch.diff")


class ExportError(RuntimeError):
    """An export that cannot be made; the message is one line."""


class Exported(Model):
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    runs: int
    trials: int


def _text(value: Any) -> str:
    return str(value)[:MAX_PARAM_VAL_LENGTH]


def _metrics(values: dict[str, float | None], step: int = 0) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items() if v is not None]


def _series(name: str, values: Iterable[tuple[int, float | None]]) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(name, float(v), now, step) for step, v in values if v is not None]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _comparison(prefix: str, c: Comparison | None) -> dict[str, float | None]:
    if c is None:
        return {}
    values = {"difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value,
              "candidate_mean": c.candidate_mean, "baseline_mean": c.baseline_mean,
              "noise_floor": c.noise_floor, "n_seeds": c.n_seeds}  # fmt: skip
    return {f"{prefix}{k}": v for k, v in values.items()}


class _Writer:
    """Creates the MLflow runs of one export, remembering them to undo a failed one."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.made: list[str] = []

    def run(
        self,
        name: str,
        part: str,
        parent: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: list[Metric] | None = None,
        tags: dict[str, Any] | None = None,
        status: str = "FINISHED",
    ) -> str:
        """One MLflow run, logged whole and closed with `status`; returns its id."""
        all_tags = {RUN_TAG: self.run_id, PART_TAG: part, **{k: _text(v) for k, v in (tags or {}).items()}}
        if parent is not None:
            all_tags[PARENT_TAG] = parent
        made = self.client.create_run(self.experiment_id, run_name=name[:250], tags=all_tags).info.run_id
        self.made.append(made)
        items = [Param(k, _text(v)) for k, v in (params or {}).items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(made, params=chunk)
        for chunk in _chunks(metrics or [], MAX_METRICS_PER_BATCH):
            self.client.log_batch(made, metrics=chunk)
        self.client.set_terminated(made, status=status)
        return made

    def undo(self) -> None:
        """Delete the runs made so far: a failed export leaves no half of a run behind."""
        for made in reversed(self.made):
            self.client.delete_run(made)


def _studies(results: StudyResult | RunResult) -> dict[str, StudyResult]:
    if isinstance(results, StudyResult):
        return {results.study_name: results}
    return {s.study_name: s for r in results.rounds for s in r.studies}


def _arm(w: _Writer, parent: str, data: ReportData, arm: ArmRow, against: ArmComparison | None) -> None:
    metric = data.metric.name
    metrics = _series(f"test_{metric}", arm.test.items()) + _series(metric, arm.validation.items())
    values = {f"best_validation_{metric}": arm.best_validation, f"test_{metric}_mean": arm.test_mean,
              f"test_{metric}_std": arm.test_std, "trials": arm.trials}  # fmt: skip
    tags = {"arm": arm.name, "role": arm.role, "definition": arm.definition, "strategy": arm.strategy or ""}
    if against is not None:
        values |= _comparison("vs_control_", against.comparison) | {
            "vs_control_p_adjusted": against.p_adjusted
        }
        tags |= {"verdict": against.verdict, "control": against.control, NOTE_TAG: against.statement}
    w.run(f"arm {arm.label} ({arm.role})", "arm", parent, arm.params, metrics + _metrics(values), tags)


def _trial(w: _Writer, parent: str, metric: str, trial: TrialRecord) -> None:
    metrics = _metrics({**trial.metrics, metric: trial.value, "duration_s": trial.duration_s})
    metrics += _series("intermediate_value", sorted(trial.intermediate.items()))
    tags = {"state": trial.state, "trial": trial.number, "seed": "" if trial.seed is None else trial.seed}
    if trial.error:
        tags["error"] = trial.error
    w.run(f"trial {trial.number}", "trial", parent, trial.params, metrics, tags, STATUS[trial.state])


def _study(w: _Writer, parent: str, data: ReportData, row: StrategyRow, study: StudyResult | None) -> int:
    values = {"best_value": row.best_value, "trials": row.trials, "complete": row.complete,
              "pruned": row.pruned, "failed": row.failed, "retried": row.retried}  # fmt: skip
    metrics = _metrics(values) + _series("best_so_far", enumerate(row.best_so_far, 1))
    tags = {"study": row.study, "sampler": row.sampler, "round": row.round or "",
            "data_fraction": row.data_fraction, "arm": study.arm if study else "",
            "pruner": study.pruner if study else ""}  # fmt: skip
    arm = f" (arm {study.arm})" if study and study.arm else ""
    made = w.run(f"study {row.label}{arm}", "study", parent, metrics=metrics, tags=tags)
    trials = study.trials if study else []
    for trial in trials:
        _trial(w, made, data.metric.name, trial)
    return len(trials)


def _parent(w: _Writer, folder: Path, data: ReportData) -> str:
    plan = data.plan
    params = {"task": data.task, "metric": data.metric.name, "direction": data.metric.direction,
              "seeds": ",".join(map(str, data.repro.seeds)), "command": data.repro.command,
              "samplers": ",".join(sorted({s.sampler for s in data.strategies})),
              "trials": sum(s.trials for s in data.strategies)}  # fmt: skip
    if plan is not None:
        params |= {"arms": ",".join(a.name for a in plan.arms), "pruner": plan.pruner}
    values = _comparison("held_out_", data.comparison) | _comparison("validation_", data.validation)
    values |= {"wall_s": data.cost.wall_s}
    tags = {"kind": data.kind, "task": data.task, "status": data.status, "outcome": data.verdict.outcome,
            "idea": data.idea or "", "candidate_arm": data.candidate_arm or "",
            NOTE_TAG: "\n\n".join([*(f"**{c.verdict}**: {c.statement}" for c in data.comparisons),
                                   f"**{data.verdict.outcome}**: {data.verdict.summary}"])}  # fmt: skip
    made = w.run(data.title, "run", params=params, metrics=_metrics(values), tags=tags)
    for plot in data.plots:
        w.client.log_artifact(made, str(folder / plot.file), "plots")
    for name in ARTIFACTS:
        if (folder / name).is_file():
            w.client.log_artifact(made, str(folder / name))
    return made


def _write(w: _Writer, folder: Path, data: ReportData, results: StudyResult | RunResult) -> int:
    """Every MLflow run of the export; returns the number of trials written."""
    parent = _parent(w, folder, data)
    metric, seeds = data.metric.name, data.seeds
    defaults = _series(f"test_{metric}", [(s.seed, s.baseline) for s in seeds])
    defaults += _series(metric, [(s.seed, s.baseline_validation) for s in seeds])
    w.run("untuned defaults (baseline)", "baseline", parent, data.plan_defaults, defaults)
    by_treatment = {c.treatment: c for c in data.comparisons if c.kind == "vs control"}
    for arm in data.arms:
        _arm(w, parent, data, arm, by_treatment.get(arm.name))
    if not data.arms and data.candidate is not None:
        candidate = _series(f"test_{metric}", [(s.seed, s.candidate) for s in seeds])
        w.run("candidate (best trial)", "candidate", parent, data.candidate.params, candidate)
    studies = _studies(results)
    return sum(_study(w, parent, data, row, studies.get(row.study)) for row in data.strategies)


def export(folder: Path, tracking_uri: str | None = None, experiment: str | None = None) -> Exported:
    """Export a reported run to MLflow at `tracking_uri` (None: MLflow's own default, $MLFLOW_TRACKING_URI or
    a local mlflow.db with artifacts in ./mlruns) under `experiment` (default: the run id)."""
    info = runs.load(folder)
    try:
        data = reporting.load_data(folder / reporting.DATA)
        results = load_results(folder, info)
    except reporting.ReportError as exc:
        raise ExportError(
            f"{exc}; export sends what the report checked: `research-loop report {info.run_id}`"
        ) from None
    if results is None:
        raise ExportError(f"run {info.run_id} has no results.json: it has no trials to export")
    name = experiment or info.run_id
    w: _Writer | None = None
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name, tags=KIND_TAGS)
        earlier = client.search_runs(
            [experiment_id],
            f"tags.`{RUN_TAG}` = '{info.run_id}' and tags.`{PART_TAG}` = 'run'",
            max_results=1,
        )
        if earlier:
            raise ExportError(
                f"run {info.run_id} is already in experiment {name!r} at {client.tracking_uri} (MLflow run "
                f"{earlier[0].info.run_id}); delete it there to export again, or give --experiment"
            )
        w = _Writer(client, experiment_id, info.run_id)
        trials = _write(w, folder, data, results)
    except (MlflowException, OSError) as exc:
        if w is not None:
            w.undo()
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise ExportError(
            f"MLflow at {tracking_uri or 'its default URI'}: {message.splitlines()[0]}"
        ) from None
    return Exported(tracking_uri=client.tracking_uri, experiment=name, experiment_id=experiment_id,
                    parent_run_id=w.made[0], runs=len(w.made), trials=trials)  # fmt: skip
