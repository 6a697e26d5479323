"""approve / reject: a person's decision on a run, and the only code that writes outside a run's folder.

`approve` applies the run's final patch (its code change with the best measured hyperparameters written in as
defaults: exactly what was measured), or with `--arm` one measured arm's variant instead, to the target file
with git. Every reason to refuse is checked before
anything is written, so a refused approve changes nothing. Both decisions are appended to the ledger
(decisions.jsonl next to the run folders) and set run.json's status; a run is decided once.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agent import runs
from agent.code.coder import PatchError, PatchRecord, load_record
from agent.code.diffs import sha256, unified_diff
from agent.config import Settings
from agent.loop.drive import LoopError, storage_url
from agent.review.measured import Mismatch, measured_patch
from agent.schemas import CodePatch, Decision, RunInfo
from experiments import storage as storages
from experiments.program import SAME_SPLIT
from experiments.records import Comparison

LEDGER = "decisions.jsonl"
RESULTS = "results.json"
BRANCH_PREFIX = "research-loop/"
APPROVABLE = ("awaiting_approval", "finished")
PAST: dict[str, Literal["approved", "rejected"]] = {"approve": "approved", "reject": "rejected"}


class Refused(RuntimeError):
    """A decision that cannot be made; the message is one line, `conflict` an optional diff to show with it."""

    def __init__(self, message: str, conflict: str = ""):
        super().__init__(message)
        self.conflict = conflict


def ledger_path(run_folder: Path) -> Path:
    return run_folder.parent / LEDGER


def decisions(ledger: Path) -> list[Decision]:
    if not ledger.is_file():
        return []
    out = []
    for number, line in enumerate(ledger.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Decision.model_validate_json(line))
        except ValidationError:
            raise Refused(f"{ledger}:{number} is not a decision; repair or remove that line first") from None
    return out


def _undecided(run_folder: Path) -> RunInfo:
    try:
        info = runs.load(run_folder)
    except (runs.RunNotFound, runs.CorruptRun) as exc:
        raise Refused(str(exc)) from None
    for earlier in decisions(ledger_path(run_folder)):
        if earlier.run_id == info.run_id:
            raise Refused(
                f"run {info.run_id} was already {PAST[earlier.action]} on {earlier.at:%Y-%m-%d %H:%M} UTC; "
                f"a run is decided once"
            )
    if info.status in ("approved", "rejected"):
        raise Refused(f"run {info.run_id} was already {info.status}; a run is decided once")
    return info


def _decide(run_folder: Path, info: RunInfo, decision: Decision) -> Decision:
    with ledger_path(run_folder).open("a") as ledger:
        ledger.write(decision.model_dump_json() + "\n")
    info.status = PAST[decision.action]
    runs.save(run_folder, info)
    return decision


def reject(run_folder: Path, reason: str) -> Decision:
    """Record why a run's change is not wanted; the target is never touched."""
    if not reason.strip():
        raise Refused('a rejection needs its reason: --reason "..."')
    info = _undecided(run_folder)
    try:
        target = str(load_record(run_folder).target)
    except PatchError:
        target = None
    return _decide(
        run_folder, info, Decision(run_id=info.run_id, action="reject", reason=reason.strip(), target=target)
    )


def shown_patch(run_folder: Path) -> tuple[PatchRecord, CodePatch]:
    """The patch `show` prints: the final one (what approve applies) once the study finished, else the proposed one."""
    try:
        record = load_record(run_folder)
    except PatchError as exc:
        raise Refused(str(exc)) from None
    return record, record.final or record.patch


def measured_gain(run_folder: Path) -> str:
    """One line on what the run measured, from results.json's comparison; says so when there is none."""
    path = run_folder / RESULTS
    try:
        results = json.loads(path.read_text())
        raw = results.get("comparison")
        comparison = Comparison.model_validate(raw) if raw else None
        # a plain script that has no held-out split compared on its own evaluation (experiments.program)
        same = any(r.get("metrics", {}).get(SAME_SPLIT) for r in results.get("final", []))
    except FileNotFoundError:
        return "no measured gain: the run has no results.json"
    except (ValueError, AttributeError):
        return f"no measured gain: {path} cannot be read"
    if comparison is None:
        return "no measured gain: results.json holds no comparison with the baseline"
    c = comparison
    interval = (
        "" if c.ci_low is None or c.ci_high is None else f", 95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
    )
    p = "" if c.p_value is None else f", p={c.p_value:.3g}"
    split = "validation split (the script has no held-out one)" if same else f"{c.split} split"
    return (
        f"measured {c.metric} {c.difference:+.4f} against the unmodified script on the {split} "
        f"({c.candidate_mean:.4f} vs {c.baseline_mean:.4f}{interval}{p}, {c.n_seeds} seeds)"
    )


def _git(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env)


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    return lines[0].strip() if lines else f"exit status {proc.returncode}"


def _work_tree(target: Path) -> Path:
    proc = _git(["rev-parse", "--show-toplevel"], target.parent)
    if proc.returncode:
        raise Refused(f"{target} is not inside a git work tree; approve applies patches with git")
    return Path(proc.stdout.strip()).resolve()


def approve(
    run_folder: Path,
    commit: bool = False,
    trusted: bool = False,
    settings: Settings | None = None,
    arm: str | None = None,
) -> Decision:
    """Apply the run's final patch to its target with git (and commit it on a new branch with `commit`); with
    `arm`, that measured arm's variant instead (its defining values as the defaults, agent.analyse.evidence).

    The patch is the one rebuilt from the measured workspace and checked against the seal in the run's
    storage (agent.review.measured), never patch.json's text as it stands; `trusted` (--trust-edits) lets a
    change through the safety rules, which run again here."""
    info = _undecided(run_folder)
    if info.status not in APPROVABLE:
        raise Refused(
            f"run {info.run_id} is {info.status} (stage {info.stage}); only a finished run, whose report "
            f"a person can read, can be approved"
        )
    try:
        record = load_record(run_folder)
    except PatchError as exc:
        raise Refused(str(exc)) from None
    final = record.final
    if final is None:
        raise Refused(
            f"run {info.run_id} has no final patch (its study never finished with a best configuration); "
            f"only measured code can be approved"
        )
    if arm is not None and arm not in record.arms:
        raise Refused(
            f"run {info.run_id} has no variant for arm {arm!r}; arms with one: "
            f"{', '.join(sorted(record.arms)) or 'none'} (an arm at the script's own values has nothing to apply)"
        )
    try:
        url = storage_url(run_folder, info, settings or Settings())
        final = measured_patch(run_folder, record, url, trusted, arm)
    except (Mismatch, LoopError, storages.StorageUnavailable) as exc:
        raise Refused(str(exc)) from None
    if not final.diff:
        raise Refused(
            "the final patch changes nothing (the evidence supported no change: the report says why each "
            "measured value was left out); reject the run instead"
        )
    target = record.target
    if target.is_symlink():
        raise Refused(f"{target} is a symbolic link; approve writes only regular files")
    if not target.is_file():
        raise Refused(f"{target} no longer exists (moved or deleted since the run started)")
    root = _work_tree(target)
    rel = target.resolve().relative_to(root)
    status = _git(["status", "--porcelain", "--", str(rel)], root).stdout
    if status.startswith("??"):
        raise Refused(
            f"{rel} is not tracked by git; commit it first so the change can be reviewed and undone"
        )
    if status.strip():
        raise Refused(f"{rel} has uncommitted changes; commit or stash them first")
    current = target.read_text()
    if sha256(current) != record.original_sha256:
        raise Refused(
            f"{rel} changed since the run started (the changes are shown above); the patch was measured on "
            f"the old text, so run again on the new one",
            conflict=unified_diff(record.script, record.original, current),
        )
    branch = f"{BRANCH_PREFIX}{info.run_id}" if commit else None
    if branch is not None:
        _can_commit(root, branch)
    apply = ["apply", "--whitespace=nowarn"]
    # the diff names the script as the workspace does: inside its repository's copy, or alone
    inside = rel.as_posix()
    base = inside.removesuffix(f"/{record.script}") if inside.endswith(f"/{record.script}") else ""
    apply += [f"--directory={base}"] if base and inside != record.script else []
    check = _git([*apply, "--check", "-"], root, final.diff)
    if check.returncode:
        raise Refused(f"git apply refuses the patch: {_first_line(check)}")
    gain = measured_gain(run_folder) if arm is None else arm_verdict(run_folder, arm)
    values = record.final_params if arm is None else record.arms[arm].params
    sha = _apply(root, rel, target, apply, record, final, branch, _message(info, values, final, gain))
    return _decide(
        run_folder,
        info,
        Decision(
            run_id=info.run_id,
            action="approve",
            reason=gain,
            commit=sha,
            branch=branch,
            target=str(target),
            arm=arm,
        ),
    )


def arm_verdict(run_folder: Path, arm: str) -> str:
    """What the run measured for an arm's variant: its comparison with the control, from results.json."""
    try:
        found = json.loads((run_folder / RESULTS).read_text()).get("comparisons", [])
    except (OSError, ValueError):
        found = []
    said = next(
        (c.get("statement") for c in found if isinstance(c, dict) and c.get("treatment") == arm), None
    )
    return f"arm {arm}'s variant instead of the recommended patch: " + (
        said or "no comparison with the control holds it"
    )


def _can_commit(root: Path, branch: str) -> None:
    if _git(["check-ref-format", "--branch", branch], root).returncode:
        raise Refused(f"{branch!r} is not a valid git branch name")
    if not _git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], root).returncode:
        raise Refused(f"branch {branch} already exists; delete it or approve without --commit")
    if _git(["rev-parse", "--verify", "--quiet", "HEAD"], root).returncode:
        raise Refused(f"{root} has no commit yet to branch from")
    if _git(["var", "GIT_COMMITTER_IDENT"], root).returncode:
        raise Refused("git has no user.name and user.email here; set them, or approve without --commit")


def _message(info: RunInfo, params: dict[str, Any], final: CodePatch, gain: str) -> str:
    values = "\n".join(f"  {k} = {v!r}" for k, v in params.items())
    return (
        f"research-loop: apply run {info.run_id}\n\n{gain}.\n\n{final.rationale}\n"
        + (f"\nBest measured hyperparameters, now the defaults:\n{values}\n" if values else "")
        + f"\nPatch sha256: {final.sha256}\n"
    )


def _apply(
    root: Path,
    rel: Path,
    target: Path,
    apply: list[str],
    record: PatchRecord,
    final: CodePatch,
    branch: str | None,
    message: str,
) -> str | None:
    """The writes, after every check passed; a failure midway puts the file and the branch back as they were."""
    head = _git(["symbolic-ref", "--quiet", "--short", "HEAD"], root).stdout.strip()
    start = head or _git(["rev-parse", "HEAD"], root).stdout.strip()
    if branch is not None:
        proc = _git(["switch", "--quiet", "-c", branch], root)
        if proc.returncode:
            raise Refused(f"git switch -c {branch}: {_first_line(proc)}")
    try:
        proc = _git(apply, root, final.diff)
        if proc.returncode:
            raise Refused(f"git apply: {_first_line(proc)}")
        if sha256(target.read_text()) != sha256(final.files[record.script]):
            raise Refused(f"{rel} after git apply differs from the measured patch; nothing was kept")
        if branch is None:
            return None
        proc = _git(["commit", "--quiet", "-m", message, "--", str(rel)], root)
        if proc.returncode:
            raise Refused(f"git commit failed: {_first_line(proc)}; nothing was kept")
        return _git(["rev-parse", "HEAD"], root).stdout.strip()
    except Refused:
        target.write_text(record.original)
        if branch is not None:
            _git(["switch", "--quiet", *([] if head else ["--detach"]), start], root)
            _git(["branch", "--quiet", "-D", branch], root)
        raise
