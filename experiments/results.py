"""A study read back from its storage: how far it has got, its trials as records, and which of a run's studies
still have tickets waiting.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel

from experiments import storage as storages
from experiments.records import TrialRecord

LOST = f"worker lost: no heartbeat for {storages.GRACE_S} s"  # failed by Optuna, which leaves no reason


class Progress(BaseModel):
    study: str
    total: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    lost: int = 0
    best: float | None = None
    elapsed_s: float = 0.0

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.failed


def progress(
    study: optuna.Study, total: int, started: float, trials: list[FrozenTrial] | None = None
) -> Progress:
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    counts = dict.fromkeys(TrialState, 0)
    for t in trials:
        counts[t.state] += 1
    lost = sum(t.state == TrialState.FAIL and t.number in retried for t in trials)
    # the first objective: a multi-objective study has no single `value`
    complete = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
    best = None
    if complete:
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        best = max(complete) if maximize else min(complete)
    return Progress(
        study=study.study_name,
        total=total,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL] - lost,
        running=counts[TrialState.RUNNING],
        waiting=counts[TrialState.WAITING],
        lost=lost,
        best=best,
        elapsed_s=time.monotonic() - started,
    )


def to_record(trial: FrozenTrial) -> TrialRecord:
    ticket = trial.user_attrs.get("ticket", {})
    duration = trial.duration.total_seconds() if trial.duration else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params={**ticket.get("hparams", {}), **trial.params},
        # the first objective, the task's metric, in a multi-objective study too (its size is in `metrics`)
        value=trial.values[0] if trial.state == TrialState.COMPLETE and trial.values else None,
        metrics=trial.user_attrs.get("metrics", {}),
        intermediate=dict(trial.intermediate_values),
        curve=trial.user_attrs.get("curve", []),
        confusion=trial.user_attrs.get("confusion", []),
        measured=trial.user_attrs.get("measured", {}),
        seed=ticket.get("seed"),
        duration_s=duration,
        error=trial.user_attrs.get("error") or (LOST if trial.state == TrialState.FAIL else None),
        retry_of=trial.system_attrs.get("failed_trial"),
    )


def records(url: str, study_name: str) -> list[TrialRecord]:
    study = optuna.load_study(study_name=study_name, storage=storages.open_storage(url))
    return [to_record(t) for t in study.get_trials(deepcopy=False)]


def pending(url: str, run_id: str, study: str | None = None) -> list[str]:
    """A run's studies (named `<run_id>-...`, or just `study`) that still have tickets waiting, oldest first."""
    storage = storages.open_storage(url)
    names = []
    for name in storages.study_names(storage):
        if name == study if study else name.startswith(f"{run_id}-"):
            study_id = storage.get_study_id_from_name(name)
            if storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
                names.append(name)
    return names
