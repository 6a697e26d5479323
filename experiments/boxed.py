"""A worker's boxed child: imports a contract script once and runs the trials its worker sends it, so that the
process holding the storage connection, its URL and the API keys never runs task code
(experiments.sandbox says what the box holds back).

    worker side:  child = Child(box, script, ...); child.run(trial, call, timeout_s) -> Result
    child side:   python -m experiments.boxed --fd N --script PATH ...   (started by Child, never by hand)

One long-lived child per worker, not one per trial: a trial then costs two JSON lines on a socket pair, not an
interpreter start and a torch import (bench/overhead.py). The socket is the child's fd FD; the script's own
stdout and stderr stay the worker's log, so nothing it prints can corrupt the protocol. The script's
`trial.report` and `trial.should_prune` are relayed to the worker, which performs them on the real Optuna trial;
what it notes for its record (learning curve, confusion matrix, `set_user_attr`) comes back with its metrics.

A trial past its time limit is stopped by an alarm in the child, as it was in the worker; one stuck in native
code past that is killed with its child. A child that dies (killed for memory, a segfault, a limit) fails its
trial with the reason, and the next trial starts a fresh child; the study goes on.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import entry
from experiments.program import ProgramError
from experiments.sandbox import Box, describe_exit, die_with_parent, time_limit
from experiments.script import ScriptContractError

MAX_LINE = 64 << 20
KILL_GRACE_S = 1.0  # past the child's own alarm, before the worker kills it
START_S = 300.0  # a child's import of torch and the script, on a slow shared machine
REAP_S = 2.0  # for a child whose socket closed to be seen dead
NOTES = ("curve", "confusion", "measured")
RESERVED_ATTRS = frozenset({"ticket", "metrics", "error", *NOTES})


class BoxError(RuntimeError):
    """The child could not get ready: the script does not import, or the child died starting."""


class ProtocolError(RuntimeError):
    pass


def describe(exc: BaseException) -> str:
    """Type, message and the innermost frame: enough to act on, without a wall of traceback. A plain script's
    failure is its own message whole: the last lines of its output and how to report a metric."""
    if isinstance(exc, ProgramError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{where}"


class Link:
    """JSON lines over one end of a socket pair."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = sock.makefile("rb")

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message, default=str).encode() + b"\n")

    def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message; None when the other end closed. TimeoutError past `timeout` seconds."""
        self.sock.settimeout(None if timeout is None else max(timeout, 0.001))
        line = self.reader.readline(MAX_LINE)
        if not line:
            return None
        try:
            message = json.loads(line) if line.endswith(b"\n") else None  # else longer than MAX_LINE
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise ProtocolError(f"not a JSON object on one line: {line[:80]!r}")
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()


@dataclass
class Result:
    """One trial's outcome as the child told it: metrics, or an error, or pruned; and what it noted."""

    metrics: dict[str, Any] | None = None
    error: str | None = None
    pruned: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


class Child:
    """The worker's handle on its boxed child: started on the first trial and after one that killed it. It
    owns its box: `close` removes the box's scratch folder too."""

    def __init__(
        self,
        box: Box,
        script: Path,
        metric: str,
        device: str,
        threads: int,
        compression: str = "",
        directions: tuple[str, ...] = ("maximize",),
        prunes: bool = False,
    ):
        self.box, self.script, self.metric, self.device = box, script.resolve(), metric, device
        self.threads, self.compression = threads, compression
        self.directions, self.prunes = list(directions), prunes
        self.proc: subprocess.Popen | None = None
        self.link: Link | None = None
        self.cuda = False

    def start(self) -> None:
        """Start the child and wait until it imported the script; BoxError or ScriptContractError if not."""
        ours, theirs = socket.socketpair()
        settings = {k: getattr(self, k) for k in ("metric", "device", "threads", "compression")}
        settings |= {
            "script": str(self.script),
            "memory_mb": self.box.memory_limit_mb,
            "cpu_s": self.box.cpu_s,
        }
        argv = [sys.executable, "-m", "experiments.boxed", str(theirs.fileno()), json.dumps(settings)]
        threads = str(self.threads)
        env = self.box.env({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"})
        cwd = self.script.parent
        with theirs:
            self.proc = subprocess.Popen(
                self.box.command(argv, cwd),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
            )
        self.link = Link(ours)
        try:
            ready = self.link.receive(START_S)
        except (TimeoutError, ProtocolError) as exc:
            self.stop()
            raise BoxError(f"the trial process did not start: {exc}") from None
        if ready is None or "ready" not in ready:
            why = ready.get("failed", "") if ready else f"it died ({self._reap()})"
            contract = bool(ready and ready.get("contract"))
            self.stop()
            if contract:
                raise ScriptContractError(why)
            raise BoxError(f"cannot import {self.script.name}: {why}")
        self.cuda = bool(ready.get("cuda"))

    def describe(self) -> str:
        return self.box.describe(self.cuda)

    def run(self, trial: Any, call: dict[str, Any], timeout_s: float) -> Result:
        """Run one trial in the child; the script's reports are performed on `trial` (None: no trial)."""
        if self.link is None:
            self.start()
        assert self.link is not None
        info = None
        if trial is not None:
            info = {"number": trial.number, "params": trial.params, "directions": self.directions}
            info["prunes"] = self.prunes
        deadline = time.monotonic() + timeout_s * 1.05 + KILL_GRACE_S
        try:
            self.link.send({"call": call, "trial": info, "timeout_s": timeout_s})
            while True:
                message = self.link.receive(deadline - time.monotonic())
                if message is None:
                    return Result(error=f"trial process died ({self._death()})")
                if "ask" not in message:
                    return _result(message)
                self.link.send(_perform(trial, message["ask"], message.get("args", [])))
        except TimeoutError:
            self.stop()
            return Result(
                error=f"TrialTimeout: trial timed out after {timeout_s:g} s; its process did not stop and "
                "was killed"
            )
        except (ProtocolError, OSError) as exc:
            self.stop()
            return Result(error=f"trial process broke off: {exc}")

    def _death(self) -> str:
        reason = self._reap()
        self.stop()
        if "SIGXCPU" in reason:
            return f"{reason}: it used its {self.box.cpu_s} s of CPU time"
        return reason

    def _reap(self) -> str:
        assert self.proc is not None
        try:
            code = self.proc.wait(REAP_S)
        except subprocess.TimeoutExpired:
            return "its connection closed"
        return describe_exit(code, self.box.bwrap is not None)

    def stop(self) -> None:
        """Close the socket and kill the child (under bubblewrap, everything it started dies with it)."""
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        """Stop the child, idle between trials (killed: nothing of it is worth a wait), and remove its box."""
        self.stop()
        self.box.close()


def _perform(trial: Any, ask: str, args: list[Any]) -> dict[str, Any]:
    """Do what the script asked of its trial, on the real one; its exception goes back to the script."""
    try:
        if ask == "report":
            trial.report(float(args[0]), int(args[1]))
            return {"ok": None}
        if ask == "should_prune":
            return {"ok": bool(trial.should_prune())}
        return {"raise": f"trial.{ask} is not available to a boxed trial"}
    except Exception as exc:
        return {"raise": describe(exc)}


def _result(message: dict[str, Any]) -> Result:
    notes = {k: v for k, v in (message.get("attrs") or {}).items() if k not in RESERVED_ATTRS}
    notes |= {k: v for k, v in (message.get("notes") or {}).items() if k in NOTES}
    if "metrics" in message:
        return Result(metrics=message["metrics"], notes=notes)
    if "pruned" in message:
        return Result(pruned=True, notes=notes)
    return Result(error=str(message.get("error") or "the trial process gave no result"), notes=notes)


# --- the child side ----------------------------------------------------------------------------------------


class _Pruner:
    """Stands for the study's pruner, which decides in the worker: `should_prune` asks it there."""


class _Study:
    """The parts of optuna.Study a script's report reads: its directions, and whether it prunes."""

    def __init__(self, directions: list[str], prunes: bool):
        self._names, self._prunes = directions, prunes

    @property
    def directions(self) -> list[Any]:
        from optuna.study import StudyDirection

        return [StudyDirection[name.upper()] for name in self._names]

    @property
    def pruner(self) -> Any:
        import optuna

        return _Pruner() if self._prunes else optuna.pruners.NopPruner()


class Relay:
    """The trial a boxed script is given: reports and pruning questions go to the worker's real trial."""

    def __init__(self, link: Link, info: dict[str, Any]):
        self._link = link
        self.number: int = info["number"]
        self.params: dict[str, Any] = info["params"]
        self.study = _Study(info["directions"], info["prunes"])
        self.user_attrs: dict[str, Any] = {}

    def report(self, value: float, step: int) -> None:
        self._ask("report", float(value), int(step))

    def should_prune(self) -> bool:
        return bool(self._ask("should_prune"))

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def _ask(self, ask: str, *args: Any) -> Any:
        self._link.send({"ask": ask, "args": list(args)})
        while (reply := self._link.receive()) is not None:
            if "raise" in reply:
                raise RuntimeError(reply["raise"])
            if "ok" in reply:
                return reply["ok"]
        raise ProtocolError("the worker went away")


def _setup(settings: dict[str, Any]) -> tuple[Any, int | None, bool]:
    """Import torch (the runtime, before the limit), set the limit, then import the script under it."""
    try:
        import torch
    except ImportError:
        torch = None
    device = settings["device"]
    cuda = device.startswith("cuda")
    if torch is not None:
        torch.set_num_threads(settings["threads"])
        cuda = cuda or (device == "auto" and torch.cuda.is_available())
    if settings["compression"]:
        from experiments import compression
        from experiments.records import Compression

        compression.use(Compression.model_validate_json(settings["compression"]))
    limit = None if cuda else settings["memory_mb"]
    if limit:
        held = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        cap = held + (limit << 20) if hard == resource.RLIM_INFINITY else min(held + (limit << 20), hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    _, module = entry.load(Path(settings["script"]), settings["metric"])
    return module, limit, cuda


def _cpu_budget(seconds: int) -> None:
    """Give the next trial `seconds` of CPU time from now: the limit counts the process's whole life."""
    if seconds <= 0:
        return
    usage, hard = resource.getrusage(resource.RUSAGE_SELF), resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = int(usage.ru_utime + usage.ru_stime) + seconds
    resource.setrlimit(
        resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard)
    )


def _numbers(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        return {"error": f"WorkerError: run() must return a dict of metrics; got {type(metrics).__name__}"}
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, bool | int | float):
            out[str(name)] = value
            continue
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            out[str(name)] = repr(value)[:200]
    return {"metrics": out}


def _failure(exc: BaseException, limit: int | None) -> dict[str, Any]:
    if any(kind.__name__ == "TrialPruned" for kind in type(exc).__mro__):
        return {"pruned": str(exc)}
    if limit and (isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)):
        return {"error": f"memory limit {limit} MB exceeded"}
    return {"error": describe(exc)}


def _run(module: Any, message: dict[str, Any], link: Link, limit: int | None, cpu_s: int) -> dict[str, Any]:
    call, relay = message["call"], Relay(link, message["trial"]) if message.get("trial") else None
    _cpu_budget(cpu_s)
    try:
        with time_limit(message["timeout_s"]):
            metrics = module.run(call.pop("hparams"), trial=relay, **call)  # seed, data_fraction, ...
        out = _numbers(metrics)
    except BaseException as exc:
        out = _failure(exc, limit)
    training = sys.modules.get("experiments.training")
    notes = training.take_notes(relay) if training is not None and relay is not None else {}
    return {**out, "notes": notes, "attrs": relay.user_attrs if relay else {}}


def main(argv: list[str]) -> int:
    """`FD SETTINGS`: the socket's fd, and the settings Child.start wrote as one JSON object."""
    die_with_parent()
    link, settings = Link(socket.socket(fileno=int(argv[0]))), json.loads(argv[1])
    try:
        module, limit, cuda = _setup(settings)
    except BaseException as exc:
        link.send({"failed": describe(exc), "contract": isinstance(exc, ScriptContractError)})
        return 1
    link.send({"ready": True, "memory_limit_mb": limit, "cuda": cuda})
    while (message := link.receive()) is not None:
        if "call" in message:  # a reply the alarm cut a trial off from arrives late: skipped
            link.send(_run(module, message, link, limit, settings["cpu_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
