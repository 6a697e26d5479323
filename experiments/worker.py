"""The worker process: imports a workspace's training script once, then runs the study's tickets until none
are left. Start it from any machine that has the project installed and the run's workspace:

    RESEARCH_LOOP_STORAGE=postgresql://... python -m experiments.worker --study NAME --workspace DIR
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from experiments import compression, entry
from experiments import storage as storages
from experiments.program import ProgramError
from experiments.runner import (
    REFUSAL_PREFIX,
    REFUSED,
    STORAGE_ENV,
    RunnerError,
    StudySpec,
    Ticket,
    load_spec,
    workspace_sha256,
)
from experiments.samplers import make_pruner, make_sampler
from experiments.script import ScriptContractError
from experiments.space import suggest
from experiments.training import TrialPruned, resolve_device, take_notes, torch_threads

PR_SET_PDEATHSIG = 1


class TrialTimeout(BaseException):
    """A BaseException, so that a script's own `except Exception` cannot swallow the time limit."""


class WorkerError(RuntimeError):
    pass


# Why a worker cannot run a study on this machine at all; the coordinator stops instead of respawning it.
# (KeyError: Optuna's "no such study".)
REFUSALS = (WorkerError, RunnerError, ScriptContractError, storages.StorageUnavailable, KeyError, OSError)


def die_with_parent() -> None:
    """Linux: be killed when the coordinator dies, so a killed run leaves no orphan training trials."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise TrialTimeout(f"trial timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Record heartbeats for RDB storages, so other machines' coordinators can tell this trial is alive."""
    if not storages.is_shared(storage):
        yield
        return
    storage.record_heartbeat(trial_id)  # before the trial names its worker: a named trial always has a beat
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storages.HEARTBEAT_S):
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Tickets:
    """Takes the study's WAITING trials, never creating one, so a study runs exactly its tickets.

    The waiting list is read once and claimed down, and read again only when it runs out (to find retries the
    coordinator queued): on PostgreSQL each read loads every waiting trial, which cost more than the claim
    itself. Worker `index` of `workers` first tries the tickets whose number is `index` modulo `workers`, so
    workers started together rarely try the same one; a ticket another worker took costs one query to skip.
    """

    def __init__(self, study: optuna.Study, index: int = 0, workers: int = 1) -> None:
        self._study, self._index, self._workers = study, index, max(workers, 1)
        self._queue: list[int] = []

    def pop(self) -> optuna.Trial | None:
        trial = self._claim()
        if trial is None:
            self._read()
            trial = self._claim()
        return trial

    def _claim(self) -> optuna.Trial | None:
        while self._queue:
            trial_id = self._queue.pop(0)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                if self._study._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return optuna.Trial(self._study, trial_id)
        return None

    def _read(self) -> None:
        storage, study_id = self._study._storage, self._study._study_id
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        ordered = sorted(waiting, key=lambda t: t.number % self._workers != self._index % self._workers)
        self._queue = [t._trial_id for t in ordered]


class Recorder:
    """Writes finished trials to the storage on a background thread, so the worker takes its next ticket (a
    claim, a heartbeat and its name, a commit each) while the last result is stored: each write is an fsync on a
    journal file and a few queries on PostgreSQL (bench/results/overhead.md). The next suggestion waits for it.

    One thread, so results are stored in the order trials finished. A write that failed is raised from the next
    `record` or from `close`, so a storage that went away still stops the worker. A worker killed before a
    write completes loses nothing: its trial is still RUNNING, and the coordinator fails it and queues a retry.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._last: Future | None = None

    def record(self, write: Callable[[], None]) -> None:
        self._raise_failure()
        self._last = self._pool.submit(write)

    def wait(self) -> None:
        """Block until every handed write is stored."""
        if self._last is not None:
            self._last.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._last is not None and self._last.done():
            self._last.result()


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    module: entry.Entry,
    spec: StudySpec,
    defaults: dict,
    recorder: Recorder,
) -> None:
    """Run one claimed ticket; its outcome is handed to `recorder`, with the heartbeat kept up until stored."""
    storage = study._storage
    ticket = Ticket.model_validate(trial.user_attrs.get("ticket", {}))
    with contextlib.ExitStack() as alive:
        alive.enter_context(heartbeat(storage, trial._trial_id))
        try:
            storage.set_trial_system_attr(trial._trial_id, "worker", f"{socket.gethostname()}:{os.getpid()}")
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # failed as unclaimed while this worker was stalled; its retry is queued
        recorder.wait()  # the sampler must see the last trial's result before it suggests this one
        # ... and read it afresh: samplers read trials through a per-thread cache that only study.ask clears,
        # and results are told on the recorder's thread, so without this TPE, GP and CMA-ES never saw a trial
        # end after the first and sampled at random throughout
        study._thread_local.cached_all_trials = None
        try:
            params = suggest(trial, spec.search_space)
            hparams = {**defaults, **ticket.hparams, **params}
            with time_limit(spec.trial_timeout_s):
                metrics = module.run(
                    hparams,
                    trial=trial,
                    seed=ticket.seed,
                    data_fraction=ticket.data_fraction,
                    holdout=ticket.holdout,
                    device=spec.device,
                )
            values = [_objective(metrics, m.name) for m in spec.objectives()]
            outcome: tuple[dict[str, Any], list[float] | None, TrialState] = (
                {"metrics": {k: float(v) for k, v in metrics.items()}},
                values,
                TrialState.COMPLETE,
            )
        except (TrialPruned, optuna.TrialPruned):
            outcome = ({}, None, TrialState.PRUNED)
        except (Exception, TrialTimeout) as exc:
            outcome = ({"error": _describe(exc)}, None, TrialState.FAIL)
        # the learning curve and confusion matrix the script noted go into the same write as its metrics
        outcome = ({**take_notes(trial), **outcome[0]}, *outcome[1:])
        beating = alive.pop_all()

    def write() -> None:
        with beating:
            _finish(study, trial, *outcome)

    recorder.record(write)


def _finish(
    study: optuna.Study,
    trial: optuna.Trial,
    attrs: dict[str, Any],
    values: list[float] | None,
    state: TrialState,
) -> None:
    """Record the outcome, unless the coordinator already failed the trial (it stopped beating, e.g. while
    the storage was down): then the retry it enqueued is the trial's record, and this result is dropped."""
    try:
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        study.tell(trial, values, state=state, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def _objective(metrics: Any, name: str) -> float:
    if not isinstance(metrics, dict) or name not in metrics:
        keys = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        raise WorkerError(f"run() must return a dict with {name!r}; got {keys}")
    value = float(metrics[name])
    if not math.isfinite(value):
        raise WorkerError(f"metric {name!r} is {value}")
    return value


def _describe(exc: BaseException) -> str:
    """Type, message and the innermost frame: enough to act on, without a wall of traceback. A plain script's
    failure is its own message whole: the last lines of its output and how to report a metric."""
    if isinstance(exc, ProgramError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{where}"


def limit_memory(extra_mb: int) -> None:
    """Cap the address space at what the worker holds now plus extra_mb, so a runaway trial gets a MemoryError
    and fails alone, instead of the OOM killer taking the worker or a neighbour. Not on CUDA, whose driver
    reserves far more address space than it uses."""
    held = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = held + extra_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def serve(url: str, study_name: str, workspace: Path, index: int = 0, workers: int = 1) -> int:
    """Run tickets until none are left or SIGTERM asks to stop; return how many trials this worker ran.

    Raises WorkerError (and the other REFUSALS) when this study cannot run here at all.
    """
    storage = storages.open_storage(url, wait_s=storages.RECONNECT_S)
    study = optuna.load_study(study_name=study_name, storage=storage)
    spec = load_spec(study)
    if not workspace.is_dir():
        raise WorkerError(f"no workspace folder {workspace}; copy the run's folder to this machine")
    code = workspace_sha256(workspace)
    if spec.patch_sha256 and code != spec.patch_sha256:
        raise WorkerError(
            f"workspace {workspace} holds different code (hash {code[:12]}) than study {study_name!r} runs "
            f"({spec.patch_sha256[:12]}); copy the run's workspace folder to this machine"
        )
    script = workspace / spec.script
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(
            spec.sampler, spec.search_space, spec.budget, spec.seed + 1000 * index, len(spec.objectives())
        ),
        pruner=make_pruner(spec.pruner),
    )
    torch_threads(workers)
    compression.use(spec.compression)
    try:
        defaults, module = entry.load(script, spec.metric.name)
    except ScriptContractError:
        raise
    except (Exception, SystemExit) as exc:
        raise WorkerError(f"cannot import {script.name}: {_describe(exc)}") from exc
    if spec.memory_limit_mb and resolve_device(spec.device).type != "cuda":
        limit_memory(spec.memory_limit_mb)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    ran = 0
    recorder, tickets = Recorder(), Tickets(study, index, workers)
    try:
        while not stopping.is_set():
            trial = tickets.pop()
            if trial is None:
                break
            run_trial(study, trial, module, spec, defaults, recorder)
            ran += 1
    finally:
        recorder.close()
    return ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", required=True)
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV), help=f"default: ${STORAGE_ENV}")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="workers sharing this machine's cores")
    parser.add_argument("--attached", action="store_true", help="die with the parent process")
    args = parser.parse_args(argv)
    if args.attached:
        die_with_parent()
    if not args.storage:
        print(f"{REFUSAL_PREFIX}no storage given (--storage or ${STORAGE_ENV})", file=sys.stderr)
        return REFUSED
    started = time.monotonic()
    try:
        ran = serve(args.storage, args.study, args.workspace, args.index, args.workers)
    except REFUSALS as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{REFUSAL_PREFIX}{reason}", file=sys.stderr, flush=True)
        return REFUSED
    print(f"worker {os.getpid()}: ran {ran} trials in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
