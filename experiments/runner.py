"""Builds Optuna studies and runs their trials in worker processes against shared storage.

Every trial starts life as a *ticket*: a WAITING trial enqueued when the study is created, carrying its seed, its
data fraction and any fixed values. Workers pop tickets until none are left, so N tickets give exactly N
finished trials however many workers share them, on one machine or many. A trial whose worker died is failed
and re-enqueued as a new ticket (up to MAX_RETRY times), so it is neither lost nor counted twice.

The coordinator here never runs trial code itself: generated code runs only in worker processes. What a study
holds once it has run (its progress, its trials as records) is read back by `results`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from experiments import storage as storages
from experiments.records import Compression, Metric, SearchParam, TrialRecord
from experiments.results import Progress, pending, progress, records

SPEC_ATTR = "research_loop"
PATCH_FILE = "patch.diff"
STORAGE_ENV = "RESEARCH_LOOP_STORAGE"
POLL_S = 0.25
# The coordinator polls every POLL_S, or less often (up to POLL_MAX_S) when a poll is slow, so that polling takes
# at most POLL_SHARE of a core from the trials: a PostgreSQL read of a study costs tens of ms of CPU.
POLL_SHARE = 0.05
POLL_MAX_S = 2.0
HANG_GRACE_S = 2.0
HUNG = "hung past"
UNCLAIMED_S = 10.0
REFUSED = 2  # a worker's exit code for "cannot run this study here": respawning it would not help
REFUSAL_PREFIX = "worker refused: "

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
    sandbox: Literal["auto", "require", "off"] = Field(
        default="auto", description="how the workers box task code (experiments.sandbox)"
    )
    patch_sha256: str = ""
    compression: Compression | None = Field(
        default=None, description="compress each run's model before its final evaluation"
    )

    def objectives(self) -> list[Metric]:
        """The recorded metrics the study optimizes: the task's metric (value 0), then any compression adds."""
        return self.compression.objectives(self.metric) if self.compression else [self.metric]


def workspace_sha256(workspace: Path) -> str:
    """Identifies the code a workspace runs: a hash over its Python files and its patch, by relative path.

    Workers on other machines compare it with the study's, so a stale or different copy of the code is refused
    instead of silently mixing two versions' trials in one study.
    """
    digest = hashlib.sha256()
    files = [p for p in workspace.rglob("*") if p.suffix == ".py" or p.name == PATCH_FILE]
    for path in sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(workspace).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_spec(study: optuna.Study) -> StudySpec:
    try:
        return StudySpec.model_validate(study.user_attrs[SPEC_ATTR])
    except KeyError:
        raise RunnerError(f"study {study.study_name!r} was not created by research-loop") from None


def ensure_study(url: str, spec: StudySpec, tickets: list[Ticket]) -> optuna.Study:
    """Create the study and enqueue its tickets, or pick up where an interrupted creation stopped."""
    storage = storages.open_storage(url)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        directions=[m.direction for m in spec.objectives()],
        load_if_exists=True,
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _local_pid(trial: FrozenTrial) -> int | None:
    """The pid of the worker running a trial, when that worker runs on this host."""
    owner_host, _, pid_text = trial.system_attrs.get("worker", "").rpartition(":")
    return int(pid_text) if owner_host == socket.gethostname() and pid_text.isdigit() else None


def fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str, again: bool) -> bool:
    """Mark a RUNNING trial failed with a reason, and retry it when `again`; False if it had already ended."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "error", reason)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if again:
        storages.retry(study, storage.get_trial(trial._trial_id))
    return True


def reap(study: optuna.Study, dead: dict[int, str], trials: list[FrozenTrial] | None = None) -> int:
    """Fail and retry RUNNING trials whose worker is gone; return how many this call reaped.

    `dead` maps the pids of workers this coordinator saw die to the reason. On a journal file, which only one
    host can share, a trial of a worker from an earlier, killed coordinator is found by its pid no longer
    existing. On an RDB storage that is left to heartbeats (workers anywhere, reaped after GRACE_S): a pid
    means nothing on another machine, even one that shares this host name.
    """
    rdb = storages.is_shared(study._storage)
    if rdb:
        storages.fail_stale(study)
    count = 0
    for trial in _running(study, trials):
        pid = _local_pid(trial)
        if pid is None or (pid not in dead and (rdb or _pid_alive(pid))):
            continue
        reason = dead.get(pid, "worker process is gone")
        count += fail_trial(study, trial, reason, again=not reason.startswith(HUNG))
    return count


def _running(study: optuna.Study, trials: list[FrozenTrial] | None) -> list[FrozenTrial]:
    if trials is None:
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in trials if t.state == TrialState.RUNNING]


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


def hang_limit(spec: StudySpec) -> float:
    """How long the coordinator lets a trial run before killing its worker: past the worker's own alarm, with
    room for the worker to record the timeout itself."""
    return spec.trial_timeout_s * 1.1 + HANG_GRACE_S


def execute(
    url: str,
    study_name: str,
    workspace: Path,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> Progress:
    """Run worker processes until the study has no tickets left (or the time is up, or `stop` is set by a
    caller running several studies at once); return the last progress.

    Dead workers are replaced while tickets remain; their trials are failed and retried. A worker that refuses
    to start (wrong code, unreadable script) stops the study with its reason instead of being respawned.
    Interrupting this function (Ctrl-C) stops the workers and leaves unrun tickets WAITING for `resume`.
    """
    study = optuna.load_study(study_name=study_name, storage=storages.open_storage(url))
    spec = load_spec(study)
    total = sum("failed_trial" not in t.system_attrs for t in study.get_trials(deepcopy=False))
    log = workspace.parent / "workers.log"
    log_start = log.stat().st_size if log.is_file() else 0
    started = time.monotonic()
    deadline = started + timeout_s if timeout_s else None
    procs: dict[int, subprocess.Popen] = {}
    dead: dict[int, str] = {}
    spawned, max_spawns = 0, workers + total
    running_since: dict[int, float] = {}
    try:
        while True:
            for pid, proc in list(procs.items()):
                if proc.poll() is None:
                    continue
                del procs[pid]
                if proc.returncode == REFUSED:
                    raise RunnerError(_refusal(log, log_start))
                dead.setdefault(pid, f"worker process died ({_exit_reason(proc.returncode)})")
            poll_started = time.monotonic()
            trials = study.get_trials(deepcopy=False)  # one read per poll: the coordinator should cost little
            if reap(study, dead, trials):
                trials = study.get_trials(deepcopy=False)
            current = progress(study, total, started, trials)
            polled = time.monotonic() - poll_started
            if on_progress:
                on_progress(current)
            if current.waiting == 0 and current.running == 0:
                break
            if (deadline and time.monotonic() > deadline) or (stop is not None and stop.is_set()):
                break
            if current.waiting and len(procs) < min(workers, current.waiting + current.running):
                if spawned >= max_spawns:
                    if not procs:
                        raise RunnerError(f"workers keep dying; see {log}")
                else:
                    proc = _spawn(url, study_name, workspace, spawned, workers, log)
                    procs[proc.pid] = proc
                    spawned += 1
            _stop_hung(study, trials, procs, dead, hang_limit(spec), running_since)
            time.sleep(min(POLL_MAX_S, max(POLL_S, polled / POLL_SHARE)))
    finally:
        _stop(procs, dead)
        reap(study, dead)
    return progress(study, total, started)


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _refusal(log: Path, start: int) -> str:
    """The refusing worker's own one-line reason, from what the workers logged since this study started."""
    with log.open("rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    reasons = [line.removeprefix(REFUSAL_PREFIX) for line in lines if line.startswith(REFUSAL_PREFIX)]
    return reasons[-1] if reasons else f"a worker refused to start; see {log}"


def _stop_hung(
    study: optuna.Study,
    trials: list[FrozenTrial],
    procs: dict[int, subprocess.Popen],
    dead: dict[int, str],
    limit_s: float,
    since: dict[int, float],
) -> None:
    """Kill a worker whose trial ignored its own time limit (a hang in native code), and fail a trial that no
    worker claimed within UNCLAIMED_S: a worker names itself right after taking a ticket, so the ticket was
    taken by a worker that died at once, or whose storage connection dropped as it took it."""
    now = time.monotonic()
    for trial in _running(study, trials):
        age = now - since.setdefault(trial.number, now)
        if "worker" not in trial.system_attrs:
            if age >= UNCLAIMED_S:
                fail_trial(study, trial, "taken by a worker that never started it", again=True)
            continue
        pid = _local_pid(trial)
        if age >= limit_s and pid in procs:
            dead[pid] = f"{HUNG} the {limit_s:.0f} s time limit; worker killed"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _stop(procs: dict[int, subprocess.Popen], dead: dict[int, str]) -> None:
    for pid, proc in procs.items():
        dead.setdefault(pid, "stopped by the coordinator")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        proc.wait()
    procs.clear()


def code_folder(run_folder: Path, url: str, study_name: str) -> Path:
    """The folder of a run that holds the code a study runs: its script, with the study's code hash."""
    spec = load_spec(optuna.load_study(study_name=study_name, storage=storages.open_storage(url)))
    for folder in sorted(p for p in run_folder.iterdir() if (p / spec.script).is_file()):
        if not spec.patch_sha256 or workspace_sha256(folder) == spec.patch_sha256:
            return folder
    raise RunnerError(
        f"no folder in {run_folder} holds the code study {study_name!r} runs ({spec.script}, hash "
        f"{spec.patch_sha256[:12]}); copy the run folder from the coordinator's machine again"
    )


def join(
    url: str,
    run_folder: Path,
    run_id: str,
    study: str | None = None,
    workers: int = 1,
    wait_s: float = 0,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[Progress]:
    """Work on a run's studies from this machine: every one with tickets waiting (or just `study`), each in
    the run's folder that holds its code, until none is left and none has appeared for wait_s seconds.

    This is the coordinator's own loop (`execute`), so workers here are respawned, reaped and stopped when
    hung just as on the machine that started the run.
    """
    done: list[Progress] = []
    idle_since = time.monotonic()
    while True:
        names = pending(url, run_id, study)
        for name in names:
            done.append(execute(url, name, code_folder(run_folder, url, name), workers, on_progress))
        if names:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= wait_s:
            return done
        else:
            time.sleep(min(1.0, wait_s))


def run_study(
    url: str,
    spec: StudySpec,
    tickets: list[Ticket],
    workspace: Path,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> list[TrialRecord]:
    """Create (or resume) a study, run all its tickets, and return its trials as stored."""
    ensure_study(url, spec, tickets)
    execute(url, spec.name, workspace, workers, on_progress, timeout_s, stop)
    return records(url, spec.name)
