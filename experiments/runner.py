"""Builds Optuna studies and runs their trials in worker processes against shared storage.

Every trial starts life as a *ticket*: a WAITING trial enqueued when the study is created, carrying its seed, its
data fraction and any fixed values. Workers pop tickets until none are left, so N tickets give exactly N
finished trials however many workers share them, on one machine or many. A trial whose worker died is failed
and re-enqueued as a new ticket (up to MAX_RETRY times), so it is neither lost nor counted twice.

The coordinator here never runs trial code itself: generated code runs only in worker processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from agent.schemas import Metric, SearchParam, TrialRecord
from experiments import storage as storages

SPEC_ATTR = "research_loop"
PATCH_FILE = "patch.diff"
STORAGE_ENV = "RESEARCH_LOOP_STORAGE"
POLL_S = 0.25
HANG_GRACE_S = 30.0

optuna.logging.set_verbosity(optuna.logging.WARNING)


class RunnerError(RuntimeError):
    pass


class Ticket(BaseModel):
    """What one enqueued trial carries besides the sampler's choices."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="fixed values of searched parameters")
    hparams: dict[str, Any] = Field(default_factory=dict, description="fixed values of other hyperparameters")
    seed: int = 0
    data_fraction: float = 1.0
    holdout: bool = False


class StudySpec(BaseModel):
    """Everything a worker on any machine needs to run a study's trials; stored in the study itself."""

    name: str
    script: str = Field(description="file name of the training script inside the workspace")
    metric: Metric
    search_space: list[SearchParam] = Field(default_factory=list)
    sampler: str = "tpe"
    pruner: str = "none"
    seed: int = 0
    budget: int = 1
    device: str = "auto"
    trial_timeout_s: float = 600
    memory_limit_mb: int | None = None
    patch_sha256: str = ""


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


def workspace_sha256(workspace: Path) -> str:
    """Identifies the code a workspace runs: the hash of its patch (empty for an unpatched copy)."""
    patch = workspace / PATCH_FILE
    return hashlib.sha256(patch.read_bytes()).hexdigest() if patch.is_file() else ""


def load_spec(study: optuna.Study) -> StudySpec:
    try:
        return StudySpec.model_validate(study.user_attrs[SPEC_ATTR])
    except KeyError:
        raise RunnerError(f"study {study.study_name!r} was not created by research-loop") from None


def ensure_study(url: str, spec: StudySpec, tickets: list[Ticket]) -> optuna.Study:
    """Create the study and enqueue its tickets, or pick up where an interrupted creation stopped."""
    storage = storages.open_storage(url)
    study = optuna.create_study(
        storage=storage, study_name=spec.name, direction=spec.metric.direction, load_if_exists=True
    )
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    elif load_spec(study) != spec:
        raise RunnerError(f"study {spec.name!r} already exists in this storage with a different spec")
    enqueued = sum("failed_trial" not in t.system_attrs for t in study.get_trials(deepcopy=False))
    for ticket in tickets[enqueued:]:
        study.enqueue_trial(
            ticket.params, user_attrs={"ticket": ticket.model_dump(mode="json")}, skip_if_exists=False
        )
    return study


def retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Re-enqueue a trial whose worker died, as a fresh ticket with the same values (bounded retries)."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > storages.MAX_RETRY:
        return
    fixed = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={"ticket": trial.user_attrs.get("ticket", {})},
            system_attrs={"fixed_params": fixed, "retry_history": history, "failed_trial": trial.number},
        )
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(study: optuna.Study, dead: dict[int, str]) -> int:
    """Fail and retry RUNNING trials whose worker on this host is gone; return how many were reaped.

    `dead` maps the pids of workers this coordinator saw die to the reason. Trials of workers from an earlier,
    killed coordinator are found by their pid no longer existing. Workers on other hosts are covered by RDB
    heartbeats (Optuna's fail_stale_trials), which call the same `retry`.
    """
    host, count = socket.gethostname(), 0
    if isinstance(study._storage, optuna.storages.RDBStorage):
        count += len(optuna.storages.fail_stale_trials(study) or [])
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.system_attrs.get("worker", "")
        owner_host, _, pid_text = owner.rpartition(":")
        if owner_host != host or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid not in dead and _pid_alive(pid):
            continue
        reason = dead.get(pid, "worker process is gone")
        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue
        if not reason.startswith("hung"):
            retry(study, storage.get_trial(trial._trial_id))
        count += 1
    return count


def progress(study: optuna.Study, total: int, started: float) -> Progress:
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    counts = dict.fromkeys(TrialState, 0)
    for t in trials:
        counts[t.state] += 1
    lost = sum(t.state == TrialState.FAIL and t.number in retried for t in trials)
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if complete:
        best = max(complete) if study.direction == optuna.study.StudyDirection.MAXIMIZE else min(complete)
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


def _spawn(
    url: str, study_name: str, workspace: Path, index: int, workers: int, log: Path
) -> subprocess.Popen:
    env = {**os.environ, STORAGE_ENV: url}
    gpus = _gpu_count()
    if gpus > 1:
        env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    cmd = [sys.executable, "-m", "experiments.worker", "--study", study_name, "--workspace", str(workspace)]
    cmd += ["--attached", "--index", str(index), "--workers", str(workers)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def execute(
    url: str,
    study_name: str,
    workspace: Path,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    timeout_s: float | None = None,
) -> Progress:
    """Run worker processes until the study has no tickets left (or the time is up); return the last progress.

    Dead workers are replaced while tickets remain; their trials are failed and retried. Interrupting this
    function (Ctrl-C) stops the workers and leaves unrun tickets WAITING for `resume`.
    """
    study = optuna.load_study(study_name=study_name, storage=storages.open_storage(url))
    spec = load_spec(study)
    total = sum("failed_trial" not in t.system_attrs for t in study.get_trials(deepcopy=False))
    log = workspace.parent / "workers.log"
    started = time.monotonic()
    deadline = started + timeout_s if timeout_s else None
    procs: dict[int, subprocess.Popen] = {}
    dead: dict[int, str] = {}
    spawned, max_spawns = 0, workers + total
    running_since: dict[int, float] = {}
    current = progress(study, total, started)
    try:
        while True:
            for pid, proc in list(procs.items()):
                if proc.poll() is not None:
                    dead.setdefault(pid, f"worker process died (exit code {proc.returncode})")
                    del procs[pid]
            reap(study, dead)
            current = progress(study, total, started)
            if on_progress:
                on_progress(current)
            if current.waiting == 0 and current.running == 0:
                break
            if deadline and time.monotonic() > deadline:
                break
            if current.waiting and len(procs) < min(workers, current.waiting + current.running):
                if spawned >= max_spawns:
                    if not procs:
                        raise RunnerError(f"workers keep dying; see {log}")
                else:
                    proc = _spawn(url, study_name, workspace, spawned, workers, log)
                    procs[proc.pid] = proc
                    spawned += 1
            _stop_hung(study, procs, dead, spec.trial_timeout_s + HANG_GRACE_S, running_since)
            time.sleep(POLL_S)
    finally:
        _stop(procs, dead)
        reap(study, dead)
    return progress(study, total, started)


def _stop_hung(
    study: optuna.Study,
    procs: dict[int, subprocess.Popen],
    dead: dict[int, str],
    limit_s: float,
    since: dict[int, float],
) -> None:
    """Kill a worker whose trial ignored its own time limit (a hang in native code)."""
    now = time.monotonic()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        since.setdefault(trial.number, now)
        if now - since[trial.number] < limit_s:
            continue
        pid_text = trial.system_attrs.get("worker", "").rpartition(":")[2]
        if pid_text.isdigit() and int(pid_text) in procs:
            dead[int(pid_text)] = f"hung past the {limit_s:.0f} s time limit; worker killed"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_text), signal.SIGKILL)


def _stop(procs: dict[int, subprocess.Popen], dead: dict[int, str]) -> None:
    for pid, proc in procs.items():
        dead.setdefault(pid, "stopped by the coordinator")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        proc.wait()
    procs.clear()


def to_record(trial: FrozenTrial) -> TrialRecord:
    ticket = trial.user_attrs.get("ticket", {})
    duration = trial.duration.total_seconds() if trial.duration else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params={**ticket.get("hparams", {}), **trial.params},
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        metrics=trial.user_attrs.get("metrics", {}),
        intermediate=dict(trial.intermediate_values),
        seed=ticket.get("seed"),
        duration_s=duration,
        error=trial.user_attrs.get("error"),
        retry_of=trial.system_attrs.get("failed_trial"),
    )


def records(url: str, study_name: str) -> list[TrialRecord]:
    study = optuna.load_study(study_name=study_name, storage=storages.open_storage(url))
    return [to_record(t) for t in study.get_trials(deepcopy=False)]


def run_study(
    url: str,
    spec: StudySpec,
    tickets: list[Ticket],
    workspace: Path,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    timeout_s: float | None = None,
) -> list[TrialRecord]:
    """Create (or resume) a study, run all its tickets, and return its trials as stored."""
    ensure_study(url, spec, tickets)
    execute(url, spec.name, workspace, workers, on_progress, timeout_s)
    return records(url, spec.name)
