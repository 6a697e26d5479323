"""Fault scenarios on real worker processes, real signals and real storage servers.

Shared by tests/test_faults.py, which asserts on each outcome, and bench/reliability.py, which counts them.
Every scenario runs tickets of tests/data/faulty_train.py, a script that costs ~0.05 s a trial and faults on
command (its `fault` hyperparameter, set per ticket).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import optuna
from optuna.trial import FrozenTrial, TrialState

from experiments import runner
from experiments import storage as storages
from experiments.records import Metric, SearchParam
from experiments.runner import StudySpec, Ticket

SCRIPT = Path(__file__).parent / "data" / "faulty_train.py"
METRIC = Metric(name="accuracy", direction="maximize")
SPACE = [SearchParam(name="x", kind="float", low=0.0, high=1.0)]
WAIT_S = 60.0


@dataclass
class Outcome:
    """What a study ended with, per ticket (a ticket's attempts are its first trial and their retries)."""

    name: str
    trials: list[FrozenTrial]
    expect: dict[int, str] = field(
        default_factory=dict
    )  # ticket seed -> the state its last attempt should end in
    faults: int = 0
    elapsed_s: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)  # what a scenario saw while injecting its fault

    def attempts(self) -> dict[int, list[FrozenTrial]]:
        """Trials by the seed of the ticket they ran, in the order they were made."""
        out: dict[int, list[FrozenTrial]] = defaultdict(list)
        for t in sorted(self.trials, key=lambda t: t.number):
            out[t.user_attrs["ticket"]["seed"]].append(t)
        return dict(out)

    def final(self, seed: int) -> FrozenTrial:
        return self.attempts()[seed][-1]

    @property
    def finished(self) -> int:
        return sum(any(t.state == TrialState.COMPLETE for t in ts) for ts in self.attempts().values())

    @property
    def lost(self) -> int:
        """Tickets asked for that ended with no finished attempt: never run, or left WAITING or RUNNING."""
        seen = self.attempts()
        return sum(seed not in seen or not seen[seed][-1].state.is_finished() for seed in self.expect)

    @property
    def duplicated(self) -> int:
        return sum(sum(t.state == TrialState.COMPLETE for t in ts) > 1 for ts in self.attempts().values())

    def problems(self) -> list[str]:
        """Everything that differs from the expected end state; empty when the study survived its faults."""
        out = [f"{self.lost} tickets lost"] if self.lost else []
        out += [f"{self.duplicated} tickets finished twice"] if self.duplicated else []
        seen = self.attempts()
        for seed, state in self.expect.items():
            got = seen[seed][-1].state.name if seed in seen else "missing"
            if got != state:
                out.append(f"ticket {seed}: {got}, expected {state}")
        return out


def tickets(n: int, faults: dict[int, str] | None = None, sleep_s: float = 0.05) -> list[Ticket]:
    """n tickets with seeds 0..n-1; `faults` maps a seed to the fault its trial injects."""
    faults = faults or {}
    return [Ticket(seed=i, hparams={"fault": faults.get(i, "none"), "sleep_s": sleep_s}) for i in range(n)]


class Lab:
    """A workspace holding the faulty script, and studies of it on one storage."""

    def __init__(self, root: Path, url: str):
        self.root, self.url = root, url
        self.workspace = root / "workspace"
        self.fault_dir = self.workspace / "faults"  # in the workspace: all a boxed trial may write
        self.fault_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SCRIPT, self.workspace / SCRIPT.name)

    def create(self, tickets_: list[Ticket], name: str | None = None, **spec: object) -> str:
        name = name or f"faults-{uuid.uuid4().hex[:12]}"
        study_spec = StudySpec(
            name=name,
            script=SCRIPT.name,
            metric=METRIC,
            search_space=SPACE,
            sampler="random",
            device="cpu",
            patch_sha256=runner.workspace_sha256(self.workspace),
            **{"trial_timeout_s": 30, **spec},
        )
        runner.ensure_study(self.url, study_spec, tickets_)
        return name

    def run(
        self,
        tickets_: list[Ticket],
        workers: int = 1,
        faults: int = 0,
        expect: dict[int, str] | None = None,
        during: Callable[[Lab, str], None] | None = None,
        name: str | None = None,
        **spec: object,
    ) -> Outcome:
        """Run a study to its end with `during` (the fault) running alongside the coordinator."""
        name = name or self.create(tickets_, **spec)
        started = time.monotonic()
        errors: list[BaseException] = []
        thread = None
        if during is not None:
            thread = threading.Thread(target=_catching(during, errors), args=(self, name), daemon=True)
            thread.start()
        runner.execute(self.url, name, self.workspace, workers)
        if thread is not None:
            thread.join(WAIT_S)
        if errors:
            raise errors[0]
        default = {
            t.seed: "FAIL" if t.hparams["fault"] not in ("none", "block") else "COMPLETE" for t in tickets_
        }
        return Outcome(
            name=name,
            trials=self.trials(name),
            expect={**default, **(expect or {})},
            faults=faults,
            elapsed_s=time.monotonic() - started,
        )

    def trials(self, name: str) -> list[FrozenTrial]:
        study = optuna.load_study(study_name=name, storage=storages.open_storage(self.url))
        return study.get_trials(deepcopy=False)

    def wait_for_block(self, name: str, seed: int) -> int:
        """The pid of the worker whose trial for `seed` is blocked mid-trial, once it is: the worker that named
        itself on the running trial (the trial itself runs in the worker's boxed child)."""
        marker = self.fault_dir / f"block-{seed}.pid"
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if marker.is_file():
                for t in self.trials(name):
                    if t.state == TrialState.RUNNING and t.user_attrs["ticket"]["seed"] == seed:
                        return int(t.system_attrs["worker"].rpartition(":")[2])
            time.sleep(0.05)
        raise TimeoutError(f"no trial blocked on ticket {seed} within {WAIT_S:.0f} s")


def _catching(fn: Callable[..., None], errors: list[BaseException]) -> Callable[..., None]:
    def call(*args: object) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    return call


def kill_blocked(seed: int = 2) -> Callable[[Lab, str], None]:
    def during(lab: Lab, name: str) -> None:
        os.kill(lab.wait_for_block(name, seed), signal.SIGKILL)

    return during


# --- the scenarios -------------------------------------------------------------------------------------------


def many_workers(lab: Lab, workers: int = 4, trials: int = 50) -> Outcome:
    return lab.run(tickets(trials), workers=workers)


def worker_killed(lab: Lab) -> Outcome:
    """SIGKILL a worker in the middle of a trial; its trial is failed and retried."""
    return lab.run(tickets(6, {2: "block"}), workers=2, faults=1, during=kill_blocked(2))


def heartbeat_lost(lab: Lab, grace_s: int = 2) -> Outcome:
    """A worker started by hand (as on another machine) dies mid-trial: only its heartbeat can tell."""
    name = lab.create(tickets(4, {0: "block"}))
    env = {**os.environ, runner.STORAGE_ENV: lab.url}
    cmd = [sys.executable, "-m", "experiments.worker", "--study", name, "--workspace", str(lab.workspace)]
    with (lab.root / "remote-worker.log").open("ab") as log:
        remote = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        os.kill(lab.wait_for_block(name, 0), signal.SIGKILL)
    finally:
        remote.kill()
        remote.wait()
    with mock.patch.object(storages, "GRACE_S", grace_s):
        return lab.run([], name=name, workers=1, faults=1, expect=dict.fromkeys(range(4), "COMPLETE"))


def python_hang(lab: Lab) -> Outcome:
    """A trial spinning in Python past its time limit: the worker's alarm stops it and the worker goes on."""
    return lab.run(tickets(3, {0: "python_hang"}), faults=1, trial_timeout_s=1)


def native_hang(lab: Lab) -> Outcome:
    """A trial deadlocked inside libc, where no signal handler runs: the worker kills its boxed child and goes
    on."""
    return lab.run(tickets(3, {0: "native_hang"}), faults=1, trial_timeout_s=1)


def out_of_memory(lab: Lab) -> Outcome:
    """A trial allocating past its memory limit fails with the limit in its error; the worker goes on."""
    return lab.run(tickets(3, {0: "memory"}), faults=1, memory_limit_mb=256)


def interpreter_crash(lab: Lab) -> Outcome:
    """Trials that abort or segfault their boxed interpreter fail, once each; the others finish."""
    return lab.run(tickets(4, {0: "abort", 1: "segfault"}), workers=2, faults=2)


def hostile_code(lab: Lab) -> Outcome:
    """A trial doing what a hostile code change would (read an API key set in the worker's environment, write
    beside the workspace, connect to the database port) reaches none of it and completes; under bubblewrap."""
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "sk-hostile-test-never-seen"
    try:
        outcome = lab.run(tickets(2, {0: "hostile"}), expect={0: "COMPLETE"}, faults=1, sandbox="require")
    finally:
        if saved is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = saved
    outcome.notes["markers_outside"] = len(list(lab.root.glob("escaped-*")))
    return outcome


def storage_restart(lab: Lab, server: Postgres, down_s: float = 3.0) -> Outcome:
    """The database server goes down mid-study and comes back; workers and coordinator wait and go on."""

    seen: dict[str, int] = {}

    def during(lab: Lab, name: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while (done := sum(t.state == TrialState.COMPLETE for t in lab.trials(name))) < 5:
            if time.monotonic() > deadline:
                raise TimeoutError("the study never got going")
            time.sleep(0.1)
        server.stop()
        seen["complete_when_stopped"] = done
        time.sleep(down_s)
        server.start()

    outcome = lab.run(tickets(40, sleep_s=0.1), workers=2, faults=1, during=during)
    outcome.notes = seen
    return outcome


# --- a private PostgreSQL server -----------------------------------------------------------------------------


class PostgresUnavailable(RuntimeError):
    pass


class Postgres:
    """A throwaway PostgreSQL server in a temporary folder, on a free loopback port, which a scenario may stop
    and start at will without disturbing the machine's own server or anyone else's connections to it."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="research-loop-pg-"))
        self.data = self.folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop at once, dropping every connection, as a crashed or restarted server would."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(PostgresUnavailable):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _bindir() -> Path:
    found = shutil.which("initdb")
    candidates = [Path(found).parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl); install Debian's postgresql")
