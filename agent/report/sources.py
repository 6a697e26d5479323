"""What a report reads from a run folder and its machine besides results.json: the code that ran (the final
patch, or the run's baseline/ and workspace/ copies), the hyperparameters on each side, package versions and
the target's git commit.
"""

from __future__ import annotations

import difflib
import json
import platform
import shlex
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.code import coder
from agent.code.diffs import unified_diff
from agent.report.checks import ReportError
from agent.schemas import CheckResult, ExperimentPlan, RunInfo
from experiments import entry, registry
from experiments import storage as storages
from experiments.records import Model, SearchParam, TrialRecord
from experiments.script import ScriptContractError

ENVIRONMENT_FILE = "environment.json"
OPTIONS_FILE = "options.json"
PACKAGES = ("research-loop", "torch", "optuna", "numpy", "scikit-learn", "scipy", "pydantic", "langchain")
CONTEXT_LINES = 2


class Reproducibility(Model):
    command: str
    seeds: list[int]
    tuning_seed: int | None = None
    data_fractions: list[float] = Field(default_factory=lambda: [1.0], description="of the training split")
    versions: dict[str, str]
    versions_recorded: str
    target: str | None = None
    git: str
    dataset: str
    dataset_description: str
    storage: str
    sandbox: str = ""
    studies: list[str]
    verified: bool
    verification: str


class LLMUse(Model):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


def repro_command(info: RunInfo) -> str:
    """The command the run was started with, shell-quoted so that pasting it runs the same command."""
    return shlex.join(storages.redact(part) for part in info.command) or "not recorded"


class HyperparameterRow(Model):
    name: str
    baseline: Any = None
    candidate: Any = None
    searched: str = Field(default="", description='"yes", "in arm NAME" for an arm\'s own, "" when fixed')

    @property
    def changed(self) -> bool:
        return self.baseline != self.candidate


class Hunk(Model):
    original_start: int
    original: str
    updated_start: int
    updated: str


class FileChange(Model):
    path: str
    hunks: list[Hunk]
    diff: str


class CodeChanges(Model):
    source: str = Field(description="where the code came from: patch.json, or the run's baseline/workspace")
    files: list[FileChange] = Field(default_factory=list)
    rationale: str = ""
    checks: list[CheckResult] = Field(default_factory=list)
    target: str | None = None
    approvable: bool = False


def dataset_name(plan: ExperimentPlan | None, task: registry.Task | None) -> str:
    """The data set the runs trained on: the plan's condition when it names one (wine, iris), else the task's."""
    if plan and "dataset" in plan.conditions:
        return str(plan.conditions["dataset"])
    if task:
        return task.data
    return ", ".join(plan.datasets) if plan and plan.datasets else "as loaded by the script"


def script_name(task: str, folder: Path) -> str | None:
    if task in registry.TASKS:
        return registry.get(task).script.name
    if task.startswith("script:"):
        return task.removeprefix("script:")
    found = sorted((folder / "baseline").glob("*.py"))
    return found[0].name if found else None


def _block(path: Path) -> dict[str, Any]:
    try:
        return entry.defaults(path.read_text(), str(path))
    except (OSError, ScriptContractError, UnicodeDecodeError):
        return {}


def hyperparameter_rows(
    folder: Path,
    script: str | None,
    best: TrialRecord | None,
    baseline_runs: list[TrialRecord],
    space: list[SearchParam],
    plan: ExperimentPlan | None,
) -> list[HyperparameterRow]:
    """The baseline's values as its runs used them (its defaults under the experiment's conditions) against the
    candidate's (the code it ran, with the best trial's values), and where each was searched."""
    ran = next((r.params for r in baseline_runs if r.params), {})
    baseline = {**(_block(folder / "baseline" / script) if script else {}), **ran}
    workspace = _block(folder / "workspace" / script) if script else {}
    candidate = {**workspace, **(best.params if best else {})}
    searched = dict.fromkeys([p.name for p in space], "yes")
    for arm in plan.arms if plan else []:
        for p in arm.search:
            searched.setdefault(p.name, f"in arm {arm.name}")
    names = list(dict.fromkeys([*baseline, *candidate]))
    return [
        HyperparameterRow(
            name=n, baseline=baseline.get(n), candidate=candidate.get(n), searched=searched.get(n, "")
        )
        for n in names
    ]


def file_change(path: str, before: str, after: str) -> FileChange:
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    hunks = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(CONTEXT_LINES):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        hunks.append(
            Hunk(
                original_start=i1 + 1,
                original="".join(a[i1:i2]),
                updated_start=j1 + 1,
                updated="".join(b[j1:j2]),
            )
        )
    return FileChange(path=path, hunks=hunks, diff=unified_diff(path, before, after))


def code_changes(folder: Path) -> CodeChanges:
    """The final patch from patch.json when the run made one, else what differs between the run's copies."""
    if (folder / coder.PATCH_JSON).is_file():
        try:
            record = coder.load_record(folder)
        except coder.PatchError as exc:
            raise ReportError(str(exc)) from None
        shown = record.final or record.patch
        after = shown.files.get(record.script, record.original)
        files = [file_change(record.script, record.original, after)] if after != record.original else []
        return CodeChanges(
            source="patch.json (final patch)" if record.final else "patch.json (proposed patch)",
            files=files,
            rationale=shown.rationale,
            checks=shown.checks,
            target=shown_path(record.target, folder),
            approvable=shown.checks_passed and record.final is not None,
        )
    files = []
    base, work = folder / "baseline", folder / "workspace"
    if work.is_dir():
        for path in sorted(p for p in work.rglob("*.py") if "__pycache__" not in p.parts):
            name = path.relative_to(work).as_posix()
            before = (base / name).read_text() if (base / name).is_file() else ""
            after = path.read_text()
            if before != after:
                files.append(file_change(name, before, after))
    return CodeChanges(source="the run's baseline/ and workspace/ copies (no patch.json)", files=files)


def environment(folder: Path) -> tuple[dict[str, str], str]:
    """Package versions, recorded once in the run folder at the first render (the end of the run)."""
    path = folder / ENVIRONMENT_FILE
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            return stored["versions"], stored["recorded"]
        except (ValueError, KeyError, TypeError):
            pass
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    recorded = datetime.now().astimezone().isoformat(timespec="seconds")
    path.write_text(json.dumps({"versions": versions, "recorded": recorded}, indent=2))
    return versions, recorded


def git_state(target: Path | None) -> str:
    """The commit of the target's repository, and whether the target differs from it."""
    if target is None or not target.exists():
        return "unknown (target file not found)"

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=target.parent, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return "not in a git repository"
        dirty = git("status", "--porcelain", "--", target.name).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return f"{head.stdout.strip()}" + (f" ({target.name} has uncommitted changes)" if dirty else "")


def shown_path(path: Path | str | None, folder: Path) -> str | None:
    """A path as a report shows it: relative to the run folder, else to its git repository (named by the
    repository folder's name), else just its name; a report carries no absolute path of this machine."""
    if path is None or "://" in str(path) or not Path(path).is_absolute():
        return None if path is None else str(path)
    path = Path(path).resolve()
    if path.is_relative_to(folder.resolve()):
        return path.relative_to(folder.resolve()).as_posix()
    proc = (
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if path.parent.is_dir()
        else None
    )
    if proc is not None and proc.returncode == 0:
        root = Path(proc.stdout.strip()).resolve()
        return f"{path.relative_to(root).as_posix()} (in repository {root.name})"
    return f"{path.name} (outside any git repository)"


def target_path(folder: Path, task: str) -> Path | None:
    """The file the run's patch is for, as this machine names it (for its git state; never shown as is)."""
    try:
        return coder.load_record(folder).target
    except coder.PatchError:
        pass
    options = folder / OPTIONS_FILE
    if options.is_file():
        try:
            script = json.loads(options.read_text()).get("script")
        except ValueError:
            script = None
        if script:
            return Path(script)
    return registry.get(task).script if task in registry.TASKS else None
