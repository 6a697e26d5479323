"""The measured core of every run: baseline over seeds, a tuning study, and the best candidate re-run over the
same seeds, all through the same worker code path, then compared on the held-out split.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, Field

from experiments import program, project, stats
from experiments import storage as storages
from experiments.records import Compression, Cost, SearchParam, StudyResult, TrialRecord
from experiments.registry import Task
from experiments.results import Progress, records
from experiments.runner import StudySpec, Ticket, run_study, workspace_sha256
from experiments.samplers import warm_start
from experiments.space import grid

BASELINE_DIR = "baseline"
WORKSPACE_DIR = "workspace"


class TuningConfig(BaseModel):
    sampler: str = "default"
    pruner: str = "median"
    trials: int = Field(default=20, ge=1)
    seeds: int = Field(default=3, ge=1)
    workers: int = Field(default=1, ge=1)
    seed: int = 0
    sampler_seed: int | None = Field(default=None, description="seeds the sampler; `seed` when None")
    device: str = "auto"
    data_fraction: float = Field(default=1.0, gt=0, le=1)
    trial_timeout_s: float = 600
    warm_start: list[dict[str, Any]] = Field(default_factory=list, description="configurations tried first")
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="hyperparameters every tuning trial runs with (an arm's settings)"
    )
    compression: Compression | None = Field(
        default=None, description="the plan's compression, applied to every run's final evaluation"
    )
    sandbox: Literal["auto", "require", "off"] = "auto"
    memory_limit_mb: int | None = None


ProgressFn = Callable[[str, Progress], None]


def prepare_workspaces(folder: Path, task: Task) -> tuple[Path, Path]:
    """Copy the task's script into the run, a user's with its repository (experiments.project): `baseline/`
    stays as it was, `workspace/` is what patches edit."""
    out = []
    for name in (BASELINE_DIR, WORKSPACE_DIR):
        target = folder / name
        target.mkdir(exist_ok=True)
        if not (target / task.entry).exists():
            if task.project is not None:
                project.copy(task.script, target, task.project)
            else:
                shutil.copy2(task.script, target / task.script.name)
            if task.script_args:
                program.write_args(target, task.script_args)
            if task.metric_regex:
                program.write_metric_regex(target, task.metric_regex)
        out.append(target)
    return out[0], out[1]


def _spec(
    name: str,
    task: Task,
    workspace: Path,
    cfg: TuningConfig,
    space: list[SearchParam],
    sampler: str,
    pruner: str,
) -> StudySpec:
    return StudySpec(
        name=name,
        script=task.entry,
        metric=task.metric,
        search_space=space,
        sampler=sampler,
        pruner=pruner,
        seed=cfg.seed if cfg.sampler_seed is None else cfg.sampler_seed,
        budget=cfg.trials,
        device=cfg.device,
        trial_timeout_s=cfg.trial_timeout_s,
        patch_sha256=workspace_sha256(workspace),
        compression=cfg.compression,
        sandbox=cfg.sandbox,
        memory_limit_mb=cfg.memory_limit_mb,
    )


def _reporter(label: str, on_progress: ProgressFn | None) -> Callable[[Progress], None] | None:
    return (lambda p: on_progress(label, p)) if on_progress else None


def evaluate(
    url: str,
    name: str,
    task: Task,
    workspace: Path,
    hparams: dict[str, Any],
    cfg: TuningConfig,
    on_progress: ProgressFn | None = None,
    label: str = "evaluate",
) -> list[TrialRecord]:
    """Fixed hyperparameters over cfg.seeds seeds, with validation and held-out test metrics."""
    tickets = [Ticket(hparams=hparams, seed=cfg.seed + s, holdout=True) for s in range(cfg.seeds)]
    spec = _spec(name, task, workspace, cfg, [], "random", "none")
    return run_study(url, spec, tickets, workspace, cfg.workers, _reporter(label, on_progress))


def tune(
    url: str,
    name: str,
    task: Task,
    workspace: Path,
    space: list[SearchParam],
    cfg: TuningConfig,
    on_progress: ProgressFn | None = None,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> list[TrialRecord]:
    """One tuning study on the validation split: cfg.trials tickets, warm starts first."""
    if cfg.sampler == "grid":
        points = grid(space, cfg.trials, cfg.seed)
    else:
        points = warm_start(space, cfg.warm_start)
        points = points[: cfg.trials] + [{}] * max(0, cfg.trials - len(points))
    tickets = [
        Ticket(params=p, hparams=cfg.fixed, seed=cfg.seed, data_fraction=cfg.data_fraction) for p in points
    ]
    spec = _spec(name, task, workspace, cfg, space, cfg.sampler, cfg.pruner)
    label = f"tune {cfg.sampler}"
    return run_study(
        url, spec, tickets, workspace, cfg.workers, _reporter(label, on_progress), timeout_s, stop
    )


def best_of(trials: list[TrialRecord], direction: str) -> TrialRecord | None:
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: (t.value, -t.number) if direction == "maximize" else (t.value, t.number))


def importances(url: str, name: str) -> dict[str, float]:
    """fANOVA importances of the tuning study; empty when too few trials completed to say."""
    study = optuna.load_study(study_name=name, storage=storages.open_storage(url))
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def pareto_front(study: optuna.Study) -> list[int]:
    """The numbers of a multi-objective study's non-dominated complete trials, as Optuna reads them from its
    storage (`best_trials`); empty for a single-objective study, which has a best trial instead."""
    return sorted(t.number for t in study.best_trials) if len(study.directions) > 1 else []


def summarize(url: str, name: str, task: Task, space: list[SearchParam], cfg: TuningConfig) -> StudyResult:
    """One tuning study as stored: its trials, best trial (on the first objective), importances and, with
    several objectives, its Pareto front."""
    trials = records(url, name)
    return StudyResult(
        study_name=name,
        storage=storages.redact(url),
        task=task.name,
        sampler=cfg.sampler,
        pruner=cfg.pruner,
        metric=task.metric,
        search_space=space,
        trials=trials,
        best=best_of(trials, task.metric.direction),
        cost=Cost(wall_s=sum(t.duration_s or 0.0 for t in trials), trials=len(trials), device=cfg.device),
        importances=importances(url, name),
        pareto=pareto_front(optuna.load_study(study_name=name, storage=storages.open_storage(url))),
    )


def tune_and_compare(
    url: str,
    run_id: str,
    folder: Path,
    task: Task,
    space: list[SearchParam],
    cfg: TuningConfig,
    on_progress: ProgressFn | None = None,
    device_name: str = "",
) -> StudyResult:
    """Baseline (original script, defaults) -> tuning (workspace script) -> best re-run -> comparison."""
    started = time.monotonic()
    baseline_dir, workspace = prepare_workspaces(folder, task)
    baseline = evaluate(url, f"{run_id}-baseline", task, baseline_dir, {}, cfg, on_progress, "baseline")
    name = f"{run_id}-tune-{cfg.sampler}"
    tune(url, name, task, workspace, space, cfg, on_progress)
    result = summarize(url, name, task, space, cfg)
    final: list[TrialRecord] = []
    if result.best is not None:
        final = evaluate(
            url, f"{run_id}-final", task, workspace, result.best.params, cfg, on_progress, "final"
        )
    return result.model_copy(
        update={
            "baseline": baseline,
            "final": final,
            "comparison": stats.compare(final, baseline, task.metric, "test"),
            "validation": stats.compare(final, baseline, task.metric, "validation"),
            "cost": Cost(
                wall_s=time.monotonic() - started,
                trials=len(result.trials) + len(baseline) + len(final),
                device=cfg.device,
                device_name=device_name,
            ),
        }
    )
