"""The checks a patch passes before anything runs it: paths, applies, compiles, safety, contract, preflight.

They run in that order and stop at the first failure, whose reason is the one a person (or a model asked to
repair its edit) needs; a later check on a patch that failed an earlier one would only report noise.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from agent.code.safety import check_safety
from agent.schemas import CheckResult, CodePatch
from experiments import entry
from experiments.program import is_program
from experiments.script import ScriptContractError, check_entry_point

PREFLIGHT_DATA_FRACTION = 0.1
PREFLIGHT_TIMEOUT_S = 120.0


class UnsafePath(ValueError):
    """A path that would lead a write outside the run's workspace."""


def safe_path(root: Path, relative: str) -> Path:
    """`root / relative`, refused when it is absolute, climbs out with '..', or passes through a symbolic link."""
    rel = PurePosixPath(relative)
    if not relative or "\\" in relative or rel.is_absolute() or ".." in rel.parts or relative.startswith("~"):
        raise UnsafePath(f"{relative!r} is not a plain relative path inside the workspace")
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePath(
                f"{relative!r} passes through a symbolic link ({current}); refusing to follow it"
            )
    if not current.resolve().is_relative_to(root.resolve()):
        raise UnsafePath(f"{relative!r} resolves outside the workspace")
    return current


@dataclass(frozen=True)
class Preflight:
    """How to run the preflight: which metric must come back finite, on what device, within what time."""

    metric: str
    device: str = "cpu"
    timeout_s: float = PREFLIGHT_TIMEOUT_S
    data_fraction: float = PREFLIGHT_DATA_FRACTION
    sandbox: str = "auto"
    memory_limit_mb: int | None = None


@dataclass(frozen=True)
class Subject:
    """What the checks look at: the patch, the files it started from, and what the study will need of it."""

    patch: CodePatch
    original: Mapping[str, str]
    workspace: Path
    search: list[str] = field(default_factory=list)
    trusted: bool = False  # --trust-edits: the person read the change and lets it run


def check_paths(s: Subject) -> CheckResult:
    touched = sorted(set(s.patch.files) | {e.path for e in s.patch.edits})
    for name in touched:
        try:
            safe_path(s.workspace, name)
        except UnsafePath as exc:
            return CheckResult(name="paths", passed=False, detail=str(exc))
        if name not in s.original:
            allowed = ", ".join(sorted(s.original))
            return CheckResult(
                name="paths", passed=False, detail=f"touches {name}, not a file of the task ({allowed})"
            )
    detail = f"touches only {', '.join(touched)}" if touched else "touches no file"
    return CheckResult(name="paths", passed=True, detail=detail)


def check_applies(s: Subject) -> CheckResult:
    """`git apply` takes the diff on a copy of the original files, and gives exactly the edited files."""
    if not s.patch.diff:
        return CheckResult(name="applies", passed=True, detail="no code change")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, text in s.original.items():
            safe_path(root, name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(root.parent)}
        proc = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", "-"],
            input=s.patch.diff,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            return CheckResult(name="applies", passed=False, detail=f"git apply: {_last_line(proc.stderr)}")
        for name, text in s.patch.files.items():
            if (root / name).read_text() != text:
                return CheckResult(
                    name="applies", passed=False, detail=f"the diff does not give {name}'s new text"
                )
    return CheckResult(name="applies", passed=True, detail="git apply takes the diff cleanly")


def check_compiles(s: Subject) -> CheckResult:
    for name, text in s.patch.files.items():
        try:
            compile(text, name, "exec")
        except SyntaxError as exc:
            return CheckResult(name="compiles", passed=False, detail=f"{name}:{exc.lineno}: {exc.msg}")
    return CheckResult(name="compiles", passed=True, detail=f"{len(s.patch.files)} edited file(s) compile")


def check_contract(s: Subject) -> CheckResult:
    """The entry point still takes what the runner passes, and the block holds every searched hyperparameter;
    a plain script (run as a program) has every searched one among those discovery finds in it."""
    plain = False
    for name in s.original:
        text = s.patch.files.get(name, s.original[name])
        plain = is_program(text)
        try:
            defaults = entry.defaults(text, name)
            if not plain:
                check_entry_point(text, name)
        except ScriptContractError as exc:
            return CheckResult(name="contract", passed=False, detail=str(exc))
        missing = [p for p in s.search if p not in defaults]
        if missing:
            where = "the hyperparameters found in it lack" if plain else "the hyperparameter block lacks"
            return CheckResult(
                name="contract",
                passed=False,
                detail=f"{name}: the plan searches {', '.join(missing)}, which {where} "
                f"(it has {', '.join(defaults)})",
            )
    detail = (
        "every searched name is one of the script's own"
        if plain
        else "run() and the block take every searched name"
    )
    return CheckResult(name="contract", passed=True, detail=detail)


def preflight(script: Path, how: Preflight) -> CheckResult:
    """Run the patched script once on tiny settings in a separate process, killed at the time limit."""
    defaults = entry.defaults(script.read_text(), script.name)
    hparams = {"epochs": 1} if isinstance(defaults.get("epochs"), int) else {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        cmd = [sys.executable, "-m", "experiments.preflight", str(script.resolve()), str(out)]
        cmd += [
            "--data-fraction",
            str(how.data_fraction),
            "--hparams",
            json.dumps(hparams),
            "--device",
            how.device,
            "--metric",
            how.metric,
            "--sandbox",
            how.sandbox,
            "--timeout-s",
            str(how.timeout_s),
            *(["--memory-limit-mb", str(how.memory_limit_mb)] if how.memory_limit_mb else []),
        ]
        started = time.monotonic()
        # its own process group, so that a plain script it runs as a subprocess is killed with it
        proc = subprocess.Popen(
            cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            _, stderr = proc.communicate(timeout=how.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return CheckResult(
                name="preflight", passed=False, detail=f"ran past its {how.timeout_s:g} s time limit"
            )
        elapsed = time.monotonic() - started
        if proc.returncode:
            return CheckResult(name="preflight", passed=False, detail=_failure(out, stderr))
        metrics = json.loads(out.read_text())
    value = metrics.get(how.metric)
    if value is None:
        return CheckResult(
            name="preflight",
            passed=False,
            detail=f"run() returned no {how.metric!r} (it returned {sorted(metrics)})",
        )
    if not math.isfinite(value):
        return CheckResult(name="preflight", passed=False, detail=f"run() returned {how.metric}={value}")
    # a plain script takes no data fraction: it ran once on its own data
    share = "all its data" if is_program(script.read_text()) else f"data_fraction={how.data_fraction:g}"
    settings = share + "".join(f", {k}={v}" for k, v in hparams.items())
    return CheckResult(
        name="preflight", passed=True, detail=f"{how.metric}={value:.4g} with {settings} in {elapsed:.1f} s"
    )


def run_checks(s: Subject, script: Path | None = None, how: Preflight | None = None) -> list[CheckResult]:
    """The checks in order up to the first failure; the preflight (of `script`) only when `how` is given."""
    steps: list[Callable[[], CheckResult]] = [
        lambda: check_paths(s),
        lambda: check_applies(s),
        lambda: check_compiles(s),
        lambda: check_safety(dict(s.patch.files), dict(s.original), s.trusted),
        lambda: check_contract(s),
    ]
    if how is not None and script is not None:
        steps.append(lambda: preflight(script, how))
    results = []
    for step in steps:
        results.append(step())
        if not results[-1].passed:
            break
    return results


def _failure(out: Path, stderr: str) -> str:
    """Why the preflight failed: a plain script's own message (its last output lines and how to report a
    metric), which the preflight leaves in its output file, else the last line of the traceback."""
    try:
        return str(json.loads(out.read_text())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"run() failed: {_last_line(stderr)}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"
