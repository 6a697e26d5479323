"""The worker process: the trusted side of a study's trials. It holds the storage connection, takes the
study's tickets, asks the sampler and tells Optuna the outcomes until no ticket is left; the training script
runs boxed (experiments.sandbox), never in this process: a contract script in one long-lived child that
imports it once (experiments.boxed), a plain script as one boxed subprocess a trial (experiments.program).
Start it from any machine that has the project installed and the run's workspace:

    RESEARCH_LOOP_STORAGE=postgresql://... python -m experiments.worker --study NAME --workspace DIR
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from experiments import entry, measures, sandbox
from experiments import storage as storages
from experiments.boxed import BoxError, Child, Result, describe
from experiments.program import ProgramScript, is_program
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
from experiments.sandbox import TrialTimeout, die_with_parent, time_limit
from experiments.script import ScriptContractError, TrialPruned
from experiments.space import suggest


class WorkerError(RuntimeError):
    pass


# Why a worker cannot run a study on this machine at all; the coordinator stops instead of respawning it.
# (KeyError: Optuna's "no such study".)
REFUSALS = (
    WorkerError,
    RunnerError,
    ScriptContractError,
    BoxError,
    sandbox.SandboxUnavailable,
    storages.StorageUnavailable,
    KeyError,
    OSError,
)


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


class Trials(Protocol):
    """Where a worker's trials run: its boxed child, or a plain script's boxed subprocesses."""

    def run(self, trial: Any, call: dict[str, Any], timeout_s: float) -> Result: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class ProgramTrials:
    """A plain script's trials: run from here, each as a boxed subprocess that reads nothing of this process
    (experiments.program), its per-epoch values reported as they arrive, stopped by this process's alarm."""

    def __init__(self, script: ProgramScript, box: sandbox.Box, device: str):
        self.script, self.box, self.device = script, box, device

    def run(self, trial: Any, call: dict[str, Any], timeout_s: float) -> Result:
        try:
            keywords = {k: v for k, v in call.items() if k != "hparams"}  # seed, data_fraction, ...
            with time_limit(timeout_s):
                result = Result(metrics=self.script.run(call["hparams"], trial=trial, **keywords))
        except (TrialPruned, optuna.TrialPruned):
            result = Result(pruned=True)
        except (Exception, TrialTimeout) as exc:
            result = Result(error=describe(exc))
        training = sys.modules.get("experiments.training")  # imported by the first report, if any
        result.notes = training.take_notes(trial) if training is not None else {}
        return result

    def describe(self) -> str:
        return self.box.describe(sandbox.may_use_cuda(self.device, self.box.environ))

    def close(self) -> None:
        self.box.close()


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    trials: Trials,
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
        except Exception as exc:
            result = Result(error=describe(exc))
        else:
            call = {
                "hparams": {**defaults, **ticket.hparams, **params},
                "seed": ticket.seed,
                "data_fraction": ticket.data_fraction,
                "holdout": ticket.holdout,
                "device": spec.device,
            }
            started = time.monotonic()
            result = trials.run(trial, call, spec.trial_timeout_s)
            result.notes["measured"] = measures.of_run(result.notes, time.monotonic() - started)
        # the learning curve and confusion matrix the script noted go into the same write as its metrics
        outcome = _outcome(result, spec)
        beating = alive.pop_all()

    def write() -> None:
        with beating:
            _finish(study, trial, *outcome)

    recorder.record(write)


def _outcome(result: Result, spec: StudySpec) -> tuple[dict[str, Any], list[float] | None, TrialState]:
    """The trial's attributes, values and state from what its run gave."""
    if result.pruned:
        return result.notes, None, TrialState.PRUNED
    if result.error is not None:
        return {**result.notes, "error": result.error}, None, TrialState.FAIL
    try:
        values = [_objective(result.metrics, m.name) for m in spec.objectives()]
        metrics = {k: float(v) for k, v in (result.metrics or {}).items()}
    except Exception as exc:
        return {**result.notes, "error": describe(exc)}, None, TrialState.FAIL
    return {**result.notes, "metrics": metrics}, values, TrialState.COMPLETE


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
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(
            spec.sampler, spec.search_space, spec.budget, spec.seed + 1000 * index, len(spec.objectives())
        ),
        pruner=make_pruner(spec.pruner),
    )
    trials, defaults = _trials(study, spec, workspace, workers)
    print(f"worker {os.getpid()}: sandbox: {trials.describe()}", file=sys.stderr, flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    ran = 0
    recorder, tickets = Recorder(), Tickets(study, index, workers)
    try:
        while not stopping.is_set():
            trial = tickets.pop()
            if trial is None:
                break
            run_trial(study, trial, trials, spec, defaults, recorder)
            ran += 1
    finally:
        recorder.close()
        trials.close()
    return ran


def box_spec(spec: StudySpec) -> sandbox.BoxSpec:
    """The study's box, as its spec (stored in the study, the same for every worker) sets it."""
    return sandbox.BoxSpec(mode=spec.sandbox, memory_limit_mb=spec.memory_limit_mb)


def _trials(study: optuna.Study, spec: StudySpec, workspace: Path, workers: int) -> tuple[Trials, dict]:
    """Where this worker's trials run, started and ready, and the script's defaults (read, not imported)."""
    script = workspace / spec.script
    box = sandbox.Box(box_spec(spec), workspace, workers, spec.trial_timeout_s)
    threads = max(1, measures.cores() // max(1, workers))
    try:
        source = script.read_text()
        if is_program(source):
            program = ProgramScript(script, spec.metric.name, box=box, threads=threads)
            return ProgramTrials(program, box, spec.device), program.defaults
        defaults = entry.defaults(source, script.name)
        child = Child(
            box,
            script,
            spec.metric.name,
            spec.device,
            threads,
            spec.compression.model_dump_json() if spec.compression else "",
            tuple(d.name.lower() for d in study.directions),
            not isinstance(study.pruner, optuna.pruners.NopPruner),
        )
        child.start()
    except BaseException:
        box.close()
        raise
    return child, defaults


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
