"""What approve may write: the final text (or an arm's variant) rebuilt from the measured workspace and the
sealed values.

Nothing in patch.json is trusted on its own: the text is rebuilt, every digest is compared with the seal in the
run's storage (experiments.seal) and with patch.json and patch.diff, and the static checks run again here, so a
hand-edited file in the run folder is refused with its name instead of reaching the user's code.
"""

from __future__ import annotations

from pathlib import Path

from agent.code.checks import Subject, run_checks
from agent.code.coder import PATCH_DIFF, PATCH_JSON, WORKSPACE, PatchRecord, build_patch
from agent.code.diffs import sha256
from agent.code.edits.base import write_defaults
from agent.code.source import EditError
from agent.schemas import CodePatch
from experiments import seal as seals
from experiments import storage as storages
from experiments.runner import workspace_sha256


class Mismatch(RuntimeError):
    """The run folder does not match what was measured; the message names the file that differs."""


def measured_patch(
    run_folder: Path, record: PatchRecord, url: str, trusted: bool = False, arm: str | None = None
) -> CodePatch:
    """The final patch as measured (or, with `arm`, that arm's variant), with its checks run now; raises
    Mismatch naming what differs."""
    seal = seals.read(url, run_folder.name)
    if seal is None:
        raise Mismatch(
            f"the storage {storages.redact(url)} holds no seal for run {run_folder.name}: only a run whose "
            f"final runs finished there can be approved"
        )
    workspace = run_folder / WORKSPACE
    script = workspace / seal.script
    if (
        seal.script != record.script
        or not script.is_file()
        or workspace_sha256(workspace) != seal.workspace_sha256
    ):
        raise Mismatch(f"{script} differs from the workspace the final runs executed; run the idea again")
    if arm is None:
        sealed, stored, params = seal, record.final, record.final_params
    elif arm in seal.arms and arm in record.arms:
        sealed, stored, params = seal.arms[arm], record.arms[arm].patch, record.arms[arm].params
    else:
        raise Mismatch(f"{run_folder / PATCH_JSON} and the seal disagree on arm {arm}'s variant")
    try:
        text = write_defaults(script.read_text(), sealed.params, seal.script)
    except EditError as exc:
        raise Mismatch(f"{script} no longer takes the measured values ({exc})") from None
    final = build_patch(record.script, record.original, text, "")
    if sha256(text) != sealed.final_sha256 or final.sha256 != sealed.diff_sha256:
        raise Mismatch(f"{script} with the stored values does not rebuild the measured text; run again")
    if (
        stored is None
        or stored.files.get(record.script, record.original) != text
        or stored.diff != final.diff
        or stored.sha256 != final.sha256
        or params != sealed.params
        or set(stored.files) != ({record.script} if final.diff else set())
    ):
        raise Mismatch(f"{run_folder / PATCH_JSON} differs from what was measured (edited after the run)")
    diff_file = run_folder / PATCH_DIFF
    if arm is None and (not diff_file.is_file() or diff_file.read_text() != final.diff):
        raise Mismatch(f"{diff_file} differs from what was measured (edited after the run)")
    subject = Subject(final, {record.script: record.original}, workspace, record.search, trusted)
    checks = run_checks(subject)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise Mismatch(
            f"the {'final patch' if arm is None else f'arm {arm} variant'} fails its {failed[0].name} check: {failed[0].detail}"
        )
    return final.model_copy(update={"rationale": stored.rationale, "checks": checks})
