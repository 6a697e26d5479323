"""ExperimentPlan -> CodePatch: the plan's code changes as checked edits to a copy of the training script.

The loop calls two functions:

    patch = propose_patch(plan, task, run_folder, settings)   # before any trial runs
    final = finalize_patch(run_folder, supported, url, notes)  # after the study: what `approve` applies

propose_patch reads the task's script (never writes it), applies the plan's structured changes on the syntax
tree (agent/code/edits/: base, model, activation, training) and its free-form ones through
the LLM as exact search/replace blocks, and writes the patched script to run_folder/workspace/<script> (the copy the trials import), the diff
to run_folder/patch.diff and everything `approve` needs to run_folder/patch.json. A patch whose checks fail is
still written, so a person can see why, but `patch.checks_passed` is False and nothing may run it.

finalize_patch writes the measured values the evidence supports into the patched script's block as its new
defaults (the rest keep the script's own): the code the trials ran, with those values; it replaces patch.diff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent import runs
from agent.code.checks import PREFLIGHT_TIMEOUT_S, Preflight, Subject, UnsafePath, run_checks, safe_path
from agent.code.diffs import ModelEdit, apply_file_edits, merged, sha256, to_file_edits, unified_diff
from agent.code.edits import plain
from agent.code.edits.activation import change_activation
from agent.code.edits.base import expose_constant, set_default, write_defaults
from agent.code.edits.model import add_dropout, add_label_smoothing, change_optimizer, change_schedule
from agent.code.edits.training import add_weight_decay, early_stopping, limit_train_examples
from agent.code.source import EditError
from agent.config import Settings
from agent.plan import llm as llms
from agent.plan.structured import Waiting, ask, render_messages
from agent.schemas import CheckResult, CodeChangeIntent, CodePatch, ExperimentPlan, TokenUsage
from experiments import seal as seals
from experiments.program import is_program
from experiments.records import Direction, Model
from experiments.registry import Task
from experiments.runner import workspace_sha256
from experiments.script import BLOCK_END, BLOCK_START

PATCH_JSON = "patch.json"
PATCH_DIFF = "patch.diff"
WORKSPACE = "workspace"
PROMPT = "prompts/code_edit.md.j2"


class PatchError(RuntimeError):
    """No patch could be made or read at all (as opposed to a patch that fails a check); one line says why."""


class EditAnswer(Model):
    """A model's code change: exact search/replace blocks, applied in order, and why."""

    edits: list[ModelEdit] = Field(min_length=1)
    rationale: str = ""


class ArmPatch(BaseModel):
    """One arm's variant of the final patch: that arm's measured values as the defaults instead."""

    params: dict[str, Any]
    patch: CodePatch


class PatchRecord(BaseModel):
    """patch.json: the patch, where it goes, and what that file held when the run started."""

    model_config = ConfigDict(extra="forbid")

    script: str = Field(description="file name of the script in the workspace")
    target: Path = Field(description="the file approve writes: the task's script or the user's --script")
    original: str = Field(description="the target's text when the run started")
    original_sha256: str
    metric: str
    search: list[str] = Field(default_factory=list, description="hyperparameters the plan searches")
    patch: CodePatch
    final: CodePatch | None = None
    final_params: dict[str, Any] = Field(default_factory=dict)
    arms: dict[str, ArmPatch] = Field(
        default_factory=dict, description="per arm, what `approve --arm` applies"
    )
    trusted: bool = Field(default=False, description="the run was started with --trust-edits")
    usage: TokenUsage = Field(default_factory=TokenUsage, description="what a model's free-form edits cost")


@dataclass(frozen=True)
class EditSite:
    """What a structured edit may need besides the change: the script's name for messages, and the direction of
    the task's metric (early stopping must know which way is better; it comes from the registry)."""

    where: str = "script"
    direction: Direction = "maximize"


EDITS: dict[str, Callable[[str, CodeChangeIntent, EditSite], str]] = {
    "set_default": lambda text, c, at: set_default(text, c.target, c.value, at.where),
    "expose_constant": lambda text, c, at: expose_constant(text, c.target, c.value, c.location, at.where),
    "add_dropout": lambda text, c, at: add_dropout(text, c.target, c.value, c.location, at.where),
    "add_label_smoothing": lambda text, c, at: add_label_smoothing(text, c.target, c.value, at.where),
    "change_optimizer": lambda text, c, at: change_optimizer(text, c.target, c.value, at.where),
    "change_schedule": lambda text, c, at: change_schedule(text, c.target, c.value, at.where),
    "change_activation": lambda text, c, at: change_activation(text, c.target, c.value, c.location, at.where),
    "add_weight_decay": lambda text, c, at: add_weight_decay(text, c.target, c.value, at.where),
    "early_stopping": lambda text, c, at: early_stopping(text, c.target, c.value, at.where, at.direction),
    "limit_train_examples": lambda text, c, at: limit_train_examples(
        text, c.target, c.value, c.location, at.where
    ),
}


# The edits a plain script (run as a program) takes on its syntax tree, its new value exposed the way it
# takes its others (agent.code.edits.plain).
PLAIN_EDITS: dict[str, Callable[[str, CodeChangeIntent, EditSite], str]] = {
    "add_label_smoothing": lambda text, c, at: plain.add_label_smoothing(text, c.target, c.value, at.where),
}


def apply_intents(
    text: str, changes: list[CodeChangeIntent], where: str = "script", direction: Direction = "maximize"
) -> str:
    """The script with each structured change applied in order (EditError names the one that cannot be made).
    A plain script, run as a program, takes those of PLAIN_EDITS; the rest need the contract's block."""
    edits = PLAIN_EDITS if is_program(text) else EDITS
    refused = next((c for c in changes if c.kind not in edits), None)
    if refused is not None:
        raise EditError(
            f"{where} is a plain script (no hyperparameter block), so {describe(refused)} cannot be made: "
            f"of the structured changes a plain script takes {', '.join(PLAIN_EDITS)}; the others need the "
            f"contract's block and run() (README: Your own training script), or a free-form change"
        )
    at = EditSite(where, direction)
    for change in changes:
        text = edits[change.kind](text, change, at)
    return text


def describe(change: CodeChangeIntent) -> str:
    value = "" if change.value is None else f" = {change.value!r}"
    where = f" at {change.location}" if change.location else ""
    why = f" ({change.description})" if change.description else ""
    return f"{change.kind} {change.target}{value}{where}{why}"


def build_patch(name: str, original: str, text: str, rationale: str) -> CodePatch:
    diff = unified_diff(name, original, text)
    return CodePatch(
        edits=to_file_edits(name, original, text),
        diff=diff,
        rationale=rationale,
        files={name: text} if text != original else {},
        sha256=sha256(diff),
    )


@dataclass(frozen=True)
class _Job:
    """What one proposal works from: the script's name and original text, and how to check a candidate."""

    name: str
    original: str
    rationale: str
    search: list[str]
    metric: str
    check: Callable[[CodePatch], CodePatch]

    def build(self, text: str, why: str = "") -> CodePatch:
        return build_patch(
            self.name, self.original, text, f"{self.rationale}; {why}" if why else self.rationale
        )


def _failed(patch: CodePatch, name: str, detail: str) -> CodePatch:
    return patch.model_copy(
        update={"checks": [*patch.checks, CheckResult(name=name, passed=False, detail=detail)]}
    )


def propose_patch(
    plan: ExperimentPlan,
    task: Task,
    run_folder: Path,
    settings: Settings,
    llm: llms.ChatLLM | None = None,
    waiting: Waiting | None = None,
) -> CodePatch:
    """The plan's code changes as a checked patch in the run's workspace; the task's file is only read.

    `llm` answers free-form changes; when None and the plan has some, it is connected from `settings` (an
    offline setting fails the `edits` check with the reason); `waiting` hears how long its answer takes.
    Raises PatchError only when nothing can be written at all (an unsafe workspace path, an unreachable LLM).
    """
    name = task.entry
    original = task.script.read_text()
    try:
        script = safe_path(run_folder / WORKSPACE, name)
    except UnsafePath as exc:
        raise PatchError(str(exc)) from None
    script.parent.mkdir(parents=True, exist_ok=True)
    search = [p.name for p in plan.search_space]
    how = Preflight(
        metric=task.metric.name,
        device=settings.device,
        timeout_s=min(PREFLIGHT_TIMEOUT_S, settings.trial_timeout_s),
        sandbox=settings.sandbox,
        memory_limit_mb=settings.memory_limit_mb,
    )

    def check(patch: CodePatch) -> CodePatch:
        script.write_text(patch.files.get(name, original))
        subject = Subject(patch, {name: original}, run_folder / WORKSPACE, search, settings.trust_edits)
        return patch.model_copy(update={"checks": run_checks(subject, script, how)})

    job = _Job(
        name,
        original,
        "; ".join(map(describe, plan.code_changes)) or "no code change",
        search,
        how.metric,
        check,
    )
    structured = [c for c in plan.code_changes if c.kind != "free_form"]
    free = [c for c in plan.code_changes if c.kind == "free_form"]
    usage = TokenUsage()
    try:
        text = apply_intents(original, structured, name, task.metric.direction)
    except EditError as exc:
        patch = _failed(job.build(original), "edits", str(exc))
    else:
        if free:
            patch, usage = _free_form(job, free, text, settings, llm, waiting)
        else:
            patch = check(job.build(text))
    script.write_text(patch.files.get(name, original))
    record = PatchRecord(
        script=name,
        target=task.script.resolve(),
        original=original,
        original_sha256=sha256(original),
        metric=task.metric.name,
        search=search,
        patch=patch,
        trusted=settings.trust_edits,
        usage=usage,
    )
    save_record(run_folder, record)
    (run_folder / PATCH_DIFF).write_text(patch.diff)
    return patch


def edit_messages(
    script: str, source: str, changes: list[CodeChangeIntent], metric: str, search: list[str]
) -> list[BaseMessage]:
    """The prompt that asks a model for a free-form change to `script`: the rules, the changes, the source."""
    return render_messages(
        PROMPT,
        schema_name=EditAnswer.__name__,
        script=script,
        source=source,
        plain=is_program(source),
        changes=changes,
        metric=metric,
        search=search,
        block_start=BLOCK_START,
        block_end=BLOCK_END,
    )


def _free_form(
    job: _Job,
    changes: list[CodeChangeIntent],
    base: str,
    settings: Settings,
    llm: llms.ChatLLM | None,
    waiting: Waiting | None,
) -> tuple[CodePatch, TokenUsage]:
    """Ask the model for search/replace blocks; a failed check goes back to it, at most llm_repairs times.
    The patch comes with the tokens its answers took."""
    unchanged = job.build(base)
    if llm is None and llms.is_offline(settings):
        refused = _failed(
            unchanged,
            "edits",
            "free-form changes need an LLM and the llm setting is offline; "
            "set --llm or give the change as a structured kind",
        )
        return refused, TokenUsage()
    tried: list[CodePatch] = []

    def finish(answer: EditAnswer) -> CodePatch:
        edits = merged(answer.edits)
        every = [n for n, edit in enumerate(edits, 1) if edit.every]
        text = apply_file_edits({job.name: base}, list(edits), every)[job.name]
        tried.append(job.check(job.build(text, answer.rationale)))
        failed = [c for c in tried[-1].checks if not c.passed]
        if failed:
            raise ValueError(f"the edited script failed the {failed[0].name} check: {failed[0].detail}")
        return tried[-1]

    try:
        llm = llm or llms.connect(settings)
        messages = edit_messages(job.name, base, changes, job.metric, job.search)
        answer = ask(
            llm,
            messages,
            EditAnswer,
            finish=finish,
            repairs=settings.llm_repairs,
            max_tokens=settings.max_tokens,
            waiting=waiting,
        )
    except llms.LLMAnswerError as exc:
        return _failed(tried[-1] if tried else unchanged, "repairs", str(exc)), exc.usage
    except llms.LLMError as exc:
        raise PatchError(str(exc)) from None
    return answer.value, answer.usage


def load_record(run_folder: Path) -> PatchRecord:
    path = run_folder / PATCH_JSON
    if not path.is_file():
        raise PatchError(f"{run_folder} holds no patch ({PATCH_JSON} is missing)")
    try:
        return PatchRecord.model_validate_json(path.read_text())
    except (ValidationError, UnicodeDecodeError) as exc:
        raise PatchError(f"{path} is corrupted ({type(exc).__name__}); the patch cannot be read") from None


def save_record(run_folder: Path, record: PatchRecord) -> None:
    runs.write_atomic(run_folder / PATCH_JSON, record.model_dump_json(indent=2))


def finalize_patch(
    run_folder: Path,
    best_params: Mapping[str, Any],
    url: str,
    notes: Sequence[str] = (),
    arms: Mapping[str, Mapping[str, Any]] | None = None,
) -> CodePatch:
    """The run's code change with `best_params` written in as the block's defaults (the measured values the
    evidence supports, agent.analyse.evidence; `notes` say why), and per arm in `arms` its variant, which
    `approve --arm` may apply instead. Stored as `final` and `arms` in patch.json, the final also as patch.diff;
    approve checks either against the seal written here into the storage `url`. The static checks run again;
    the preflight does not: only literal defaults changed, and the trials already ran this code."""
    record = load_record(run_folder)
    if not record.patch.checks_passed:
        raise PatchError("the run's patch failed its checks, so no trial measured it; nothing to finalize")

    patched = record.patch.files.get(record.script, record.original)

    def variant(params: Mapping[str, Any], why: str) -> tuple[CodePatch, seals.Variant]:
        try:
            text = write_defaults(patched, params, record.script)
        except EditError as exc:
            raise PatchError(f"the measured values cannot be written as defaults: {exc}") from None
        patch = build_patch(record.script, record.original, text, why)
        subject = Subject(
            patch, {record.script: record.original}, run_folder / WORKSPACE, record.search, record.trusted
        )
        patch = patch.model_copy(update={"checks": run_checks(subject)})
        return patch, seals.Variant(final_sha256=sha256(text), diff_sha256=patch.sha256, params={**params})

    values = ", ".join(f"{k}={v!r}" for k, v in best_params.items())
    why = "; ".join(
        [f"{record.patch.rationale}; defaults set to the supported values ({values or 'none'})", *notes]
    )
    final, sealed = variant(best_params, why)
    others = {
        n: variant(p, f"{record.patch.rationale}; arm {n}'s measured values") for n, p in (arms or {}).items()
    }
    stored = {n: ArmPatch(params=v.params, patch=patch) for n, (patch, v) in others.items()}
    update = {"final": final, "final_params": sealed.params, "arms": stored}
    save_record(run_folder, record.model_copy(update=update))
    (run_folder / PATCH_DIFF).write_text(final.diff)
    workspace = workspace_sha256(run_folder / WORKSPACE)
    arms_sealed = {n: v for n, (_, v) in others.items()}
    seal = seals.Seal(
        script=record.script, workspace_sha256=workspace, **sealed.model_dump(), arms=arms_sealed
    )
    seals.write(url, run_folder.name, seal)
    return final
