"""A plain script as a trial: the contract's `run()` presented by running the script as a program, so that the
worker, the studies, the loop and the report treat a script with no block and no `run()` like a task's.

Each call runs the script once, as a subprocess, in a fresh folder under the run's `trials/` (removed after):
a mirror of the workspace, the copy of the script's repository (experiments.project), with the script's
folder as its working folder, so that sibling imports and relative data paths work as they do for
`python train.py` there; in it a copy of the script with the trial's literal values and seed written in
(experiments.discovery), the values that have a flag on its command line, `RESEARCH_LOOP_SEED` (and `--seed` where it takes one) and
`RESEARCH_LOOP_SPLIT` in its environment. Its metric comes back through experiments.channels; per-epoch values
reach the pruner while it runs. The subprocess is the box (experiments.sandbox): the allow-listed
environment, its limits, and bubblewrap where it runs, with the trial's folder writable beside the workspace.
The worker's time limit and the coordinator's kill of a hung worker stop the script too: it is killed when
this call ends, and it shares the worker's process group.

A script that cannot switch to a held-out split reports its own evaluation for both: its held-out runs carry
`test_` copies of the validation metrics and the marker SAME_SPLIT, so the report can say so.

A script run with arguments of its own (`--command "python train.py --data x"`) gets them on every run,
before the trial's flags (a hyperparameter the command sets is a condition of the run, never searched:
registry.from_script): they travel with the script as ARGS_FILE in each copy of the workspace, so every worker, on any machine, runs the same
command. A `--metric-regex` travels the same way, as METRIC_REGEX_FILE.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from experiments import channels, discovery, hyperparameters, project
from experiments.sandbox import Box, BoxSpec
from experiments.script import BLOCK_START, ScriptContractError

TRIALS_DIR = "trials"
POLL_S = 0.5
TAIL_LINES = 8
SAME_SPLIT = "validation_as_test"
ARGS_FILE = "research-loop-args.json"
METRIC_REGEX_FILE = "research-loop-metric-regex.txt"


def write_args(folder: Path, args: tuple[str, ...]) -> None:
    (folder / ARGS_FILE).write_text(json.dumps(list(args)))


def read_args(folder: Path) -> list[str]:
    path = folder / ARGS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def write_metric_regex(folder: Path, text: str) -> None:
    (folder / METRIC_REGEX_FILE).write_text(text)


def read_metric_regex(folder: Path) -> re.Pattern[str] | None:
    path = folder / METRIC_REGEX_FILE
    return channels.metric_pattern(path.read_text()) if path.is_file() else None


class ProgramError(RuntimeError):
    """A run of the script that gave no metric; the message quotes its last output lines and says what to do.

    The worker records the whole message, not just its first line, so all of it reaches the trial's record."""


def is_program(source: str) -> bool:
    """A script with no labelled hyperparameter block runs as a program; one with it follows the contract."""
    return all(line.strip() != BLOCK_START for line in source.splitlines())


def discovered(source: str, where: str = "script") -> hyperparameters.Discovery:
    """The plain script's hyperparameters; refused with what was looked for when there are none."""
    try:
        found = discovery.discover(source, where)
    except SyntaxError as exc:
        raise ScriptContractError(f"{where}: does not parse: {exc.msg} (line {exc.lineno})") from exc
    if not found.hyperparameters:
        raise ScriptContractError(
            f"{where}: no hyperparameters found: no argparse, click or typer option with a default, no "
            f"HfArgumentParser field, no literal argument of a known call (TrainingArguments, a torch "
            f"optimizer, nn.Dropout, DataLoader, a scikit-learn estimator) and no module-level numeric "
            f"constant; give it one of those, or follow the contract: exactly one '{BLOCK_START}' block and "
            f"a run() function"
        )
    return found


class ProgramScript:
    """The object a worker calls `run()` on for a plain script: the same keywords as a contract script's.

    Its runs go through `box` (None: a default box for each run) with `threads` cores each (None: torch's
    count in this process, else all its cores)."""

    def __init__(self, path: Path, metric: str, box: Box | None = None, threads: int | None = None):
        self.path = path.resolve()
        self.workspace = project.workspace_of(self.path)
        self.inside = self.path.relative_to(self.workspace)
        self.metric = metric
        self.box, self.threads = box, threads
        self.source = self.path.read_text()
        self.found = discovered(self.source, str(self.path))
        self.defaults: dict[str, Any] = self.found.defaults
        self.args = read_args(self.workspace)
        self.pattern = read_metric_regex(self.workspace)

    def run(
        self,
        hparams: dict[str, Any] | None = None,
        *,
        trial: Any = None,
        seed: int = 0,
        data_fraction: float = 1.0,
        holdout: bool = False,
        device: str = "auto",
    ) -> dict[str, float]:
        """Run the script once with these values; its metrics, with `test_` ones only when `holdout`.

        `data_fraction` is not passed on: a plain script has no way to train on part of its data, which is why
        its task says so (Task.fractional) and its plan has no explore phase."""
        values = {**self.defaults, **(hparams or {})}
        root = self.workspace.parent / TRIALS_DIR
        root.mkdir(exist_ok=True)
        box = self.box or Box(BoxSpec(), self.workspace)
        try:
            with tempfile.TemporaryDirectory(dir=root, prefix="run-") as tmp:
                metrics = self._run_in(box, Path(tmp), values, trial, seed, holdout, device)
        finally:
            if box is not self.box:
                box.close()
        if not holdout:
            return {k: v for k, v in metrics.items() if not k.startswith("test_")}
        if f"test_{self.metric}" in metrics:
            return metrics
        own = {k: v for k, v in metrics.items() if not k.startswith("test_")}
        return {**own, **{f"test_{k}": v for k, v in own.items()}, SAME_SPLIT: 1.0}

    def _run_in(
        self,
        box: Box,
        folder: Path,
        values: dict[str, Any],
        trial: Any,
        seed: int,
        holdout: bool,
        device: str,
    ) -> dict[str, float]:
        # a store_true flag cannot be unset on the command line, so its value is written into the copy instead
        params = self.found.by_flag()
        flagged = {k: v for k, v in values.items() if k in params and not params[k].toggle}
        literal = {k: v for k, v in values.items() if k not in flagged}
        project.mirror(self.workspace, folder, self.inside)
        script = folder / self.inside
        script.write_text(discovery.write_values(self.source, literal, seed, self.path.name))
        out, err = folder / "stdout.log", folder / "stderr.log"
        argv = [sys.executable, str(script), *self.args, *self._flags(flagged, seed)]
        memory_mb = box.program_memory_mb(device)
        named = [Path(w.partition("=")[2] or w) for w in self.args if os.path.isabs(w.partition("=")[2] or w)]
        readable = [*project.linked(self.workspace), *(p for p in named if p.exists())]
        cmd = box.command(argv, script.parent, [folder], memory_mb, box.cpu_s, readable=readable)
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                cmd,
                cwd=script.parent,
                stdout=stdout,
                stderr=stderr,
                env=box.env(self._env(folder, seed, holdout, device)),
            )
        try:
            fed = 0
            while not _ended(proc):
                fed = self._feed(trial, folder, out, fed)
            self._feed(trial, folder, out, fed)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = out.read_text(errors="replace")
        if proc.returncode:
            stderr_text = err.read_text(errors="replace")
            lines = _tail(stderr_text) or _tail(text)
            exceeded = memory_mb and any(word in lines for word in ("MemoryError", "can't allocate memory"))
            limit = f"memory limit {box.memory_limit_mb} MB exceeded: " if exceeded else ""
            hint = project.explain(stderr_text, self.path.name)
            raise ProgramError(
                (f"{hint}\n" if hint else "")
                + f"{limit}{self.path.name} exited with status {proc.returncode}; its last lines:\n{lines}"
            )
        reading = channels.read(folder, text, self.metric, self.pattern)
        if reading is None:
            raise ProgramError(self._missing(folder, text, err.read_text(errors="replace")))
        return reading.metrics

    def _flags(self, values: dict[str, Any], seed: int) -> list[str]:
        """`--name=value` for each flag-set value (a bool as its flag or its `--no-` flag), then `--seed`."""
        params = self.found.by_flag()
        args = []
        for name, value in values.items():
            p = params[name]
            if isinstance(value, bool) and p.negative:
                args.append(p.flag if value else p.negative)
            else:
                args.append(f"{p.flag}={value}")
        return args + ([f"{self.found.seed_flag}={seed}"] if self.found.seed_flag else [])

    def _env(self, folder: Path, seed: int, holdout: bool, device: str) -> dict[str, str]:
        """What the run adds to the box's environment: its seed, split and metrics file, and its share of the
        cores (`threads`, else torch's thread count here; a process that never imported torch gives all)."""
        torch = sys.modules.get("torch")
        threads = str(self.threads or (torch.get_num_threads() if torch else len(os.sched_getaffinity(0))))
        env = {
            channels.SEED_ENV: str(seed),
            channels.SPLIT_ENV: "test" if holdout else "validation",
            channels.METRICS_ENV: str(folder / channels.METRICS_FILE),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _feed(self, trial: Any, folder: Path, out: Path, fed: int) -> int:
        """Report the per-epoch values that arrived since the last call; the pruner may stop the trial."""
        from experiments.training import report

        if trial is None:
            return fed
        found = channels.points(folder, out.read_text(errors="replace"), self.metric, self.pattern)
        for point in found[fed:]:
            curve = {k: v for k, v in point.metrics.items() if not k.startswith("test_")}
            report(trial, point.metrics[self.metric], point.step, **curve)
        return max(fed, len(found))

    def _missing(self, folder: Path, stdout: str, stderr: str) -> str:
        names = [n for n in channels.found_names(folder, stdout) if not n.startswith("test_")]
        did = f" It reported {', '.join(names)}, not {self.metric}." if names else ""
        return (
            f"{self.path.name} finished but reported no {self.metric!r}.{did} Its last lines:\n"
            f"{_tail(stdout) or _tail(stderr) or '  | (no output)'}\n"
            f"Report it in one of three ways: call experiments.report_metrics({self.metric}=value), which "
            f"writes the JSON file ${channels.METRICS_ENV} names; let the Hugging Face Trainer save its "
            f'metrics (trainer.save_metrics("eval", trainer.evaluate()) writes all_results.json to its '
            f"output_dir); or print a last line like `{self.metric}=0.93` or `{self.metric}: 0.93` (or pass "
            "--metric-regex with a group around the value, for a line of another form)."
            + (f" --metric-regex {self.pattern.pattern!r} matched no line." if self.pattern else "")
        )


def _ended(proc: subprocess.Popen) -> bool:
    """Wait up to POLL_S for the script to end (at once when it does)."""
    try:
        proc.wait(timeout=POLL_S)
    except subprocess.TimeoutExpired:
        return False
    return True


def _tail(text: str) -> str:
    """The last TAIL_LINES non-blank lines, quoted; a progress bar's carriage returns count as line ends."""
    lines = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(f"  | {line[:200]}" for line in lines[-TAIL_LINES:])
