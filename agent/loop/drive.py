"""The research loop: plan -> patch -> baseline -> rounds of studies and analysis -> finalists on the held-out
split -> results -> final patch -> report, awaiting a person's approval.

Every stage writes its artifact into the run folder before the next starts, and every study resumes from its
storage, so `resume` continues an interrupted run from where it stopped and runs nothing twice. `drive` lists
the stages in order; the rounds and the matched round are in `rounds`, the finalists and their selection in
`arms`, the added seeds in `sequential`, the RunResult in `conclude`, the budget's arithmetic in `budget`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agent import runs
from agent.analyse import ablation, evidence
from agent.code import coder
from agent.config import Settings
from agent.loop.arms import finalists, study_name
from agent.loop.budget import _stop_reason, apply_overrides, hold_fixed
from agent.loop.conclude import baseline_summary, conclude
from agent.loop.rounds import initial_states, match, revise_arms, run_round
from agent.loop.sequential import more_seeds
from agent.plan import planner
from agent.results import Ablation, AblationRow, RoundResult, RunResult
from agent.schemas import Arm, ExperimentPlan, RunInfo
from experiments import data, entry, registry, sandbox
from experiments import storage as storages
from experiments.records import TrialRecord
from experiments.registry import Task
from experiments.results import Progress
from experiments.sandbox import BoxSpec
from experiments.tuning import TuningConfig, best_of, evaluate, prepare_workspaces

OPTIONS_FILE = "options.json"
RESULTS_FILE = "results.json"


class LoopError(RuntimeError):
    """A stage could not be completed; the message names the stage and what to do."""


class LoopOptions(BaseModel):
    """What the person asked for on the command line; stored so that `resume` continues the same run."""

    idea: str
    task: str | None = None
    script: Path | None = None
    script_args: list[str] = Field(default_factory=list, description="a plain script's own arguments")
    metric: str | None = Field(default=None, description="the metric a plain script is judged by")
    metric_regex: str | None = Field(default=None, description="how the plain script's output gives it")
    trials: int | None = Field(default=None, ge=1)
    rounds: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    workers: int | None = Field(default=None, ge=1)
    seeds: int | None = Field(default=None, ge=1)
    seeds_auto: bool = Field(default=False, description="add seeds in pairs until the answer is clear")
    max_seeds: int = Field(default=10, ge=2, le=50, description="the cap for seeds_auto")
    seed: int = 0
    device: str = "cpu"
    device_name: str = ""
    storage: str | None = Field(default=None, description="never stored with a password; see `save_options`")
    box: BoxSpec = Field(default_factory=BoxSpec, description="how task code is boxed, the same on resume")
    trust_edits: bool = Field(default=False, description="--trust-edits: a model's risky change may run")


class LoopEvent(BaseModel):
    """What the live view shows: stage, round, trials done, best so far, time left."""

    stage: str
    round: int = 0
    rounds: int = 0
    trials_done: int = 0
    trials_budget: int = 0
    best: float | None = None
    elapsed_s: float = 0.0
    time_left_s: float | None = None
    label: str = ""
    progress: Progress | None = None
    message: str = ""


EventFn = Callable[[LoopEvent], None]


class Loop:
    """One run's state while it is being driven; rebuilt from the run folder on resume."""

    def __init__(self, folder: Path, info: RunInfo, options: LoopOptions, settings: Settings, url: str):
        self.folder, self.info, self.options, self.settings, self.url = folder, info, options, settings, url
        self.started = time.monotonic()
        self.deadline = self.started + options.timeout_s if options.timeout_s else None
        self.on_event: EventFn = lambda event: None
        self.round, self.rounds, self.trials_done, self.budget = 0, 0, 0, 0
        self.best: float | None = None

    # -- bookkeeping -------------------------------------------------------------------------------------
    def stage(self, name: str) -> None:
        self.info.status, self.info.stage = "running", name
        runs.claim(self.info)
        runs.save(self.folder, self.info)
        self.emit(name)

    def emit(self, stage: str, label: str = "", progress: Progress | None = None, message: str = "") -> None:
        elapsed = time.monotonic() - self.started
        runs.beat(self.folder, self.info)
        self.on_event(
            LoopEvent(
                stage=stage,
                round=self.round,
                rounds=self.rounds,
                trials_done=self.trials_done
                + (progress.done if progress and stage.startswith("round") else 0),
                trials_budget=self.budget,
                best=self.best,
                elapsed_s=elapsed,
                time_left_s=None if self.deadline is None else max(0.0, self.deadline - time.monotonic()),
                label=label,
                progress=progress,
                message=message,
            )
        )

    def reporter(self, stage: str) -> Callable[[str, Progress], None]:
        """Study progress, labelled by stage so the live view can tell tuning trials from evaluations."""
        return lambda label, progress: self.emit(stage, label, progress)

    def waiting(self, stage: str) -> Callable[[float, int], None]:
        """A model's answer being awaited, shown as the stage's message: a local model can take minutes."""
        return lambda s, n: self.emit(
            stage, message=f"waiting for {self.settings.llm}: {s:.0f} s, {n} tokens"
        )

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    # -- stages ------------------------------------------------------------------------------------------
    def plan(self) -> ExperimentPlan:
        path = self.folder / "plan.json"
        if path.is_file():
            return ExperimentPlan.model_validate_json(path.read_text())
        self.stage("plan")
        task = self.options.task
        if self.options.script is not None:
            task = self.script_task().name
        try:
            plan = planner.make_plan(self.options.idea, self.settings, task, self.waiting("plan"))
        except planner.PlanError as exc:
            raise LoopError(f"planning failed: {exc}") from None
        plan = apply_overrides(plan, self.options, self.settings)
        if self.options.script is not None:
            plan = hold_fixed(plan, self.script_task().fixed)
        planner.write_plan(self.folder, plan)
        return plan

    def task(self, plan: ExperimentPlan) -> Task:
        return self.script_task() if self.options.script is not None else registry.get(plan.task)

    def script_task(self) -> Task:
        """The person's script as a task, registered so that the planner and the workers find it."""
        metric = registry.metric_named(self.options.metric) if self.options.metric else None
        script, args, regex = self.options.script, tuple(self.options.script_args), self.options.metric_regex
        return registry.register(registry.from_script(script, metric, args, regex))  # type: ignore[arg-type]

    def patch(self, plan: ExperimentPlan, task: Task) -> None:
        prepare_workspaces(self.folder, task)
        if (self.folder / coder.PATCH_JSON).is_file():
            return
        self.stage("patch")
        try:
            patch = coder.propose_patch(plan, task, self.folder, self.settings, waiting=self.waiting("patch"))
        except coder.PatchError as exc:
            raise LoopError(f"the code change could not be made: {exc}") from None
        failed = [c for c in patch.checks if not c.passed]
        if failed:
            raise LoopError(f"the patch failed its checks: {failed[0].name}: {failed[0].detail}")

    def config(self, plan: ExperimentPlan, **update: Any) -> TuningConfig:
        return TuningConfig(
            sampler=plan.samplers[0],
            pruner=plan.pruner,
            trials=plan.budget.trials,
            seeds=plan.budget.seeds,
            workers=plan.budget.workers,
            seed=self.options.seed,
            device=self.options.device,
            trial_timeout_s=plan.budget.trial_timeout_s,
            compression=plan.compression,
            sandbox=self.settings.sandbox,
            memory_limit_mb=self.settings.memory_limit_mb,
        ).model_copy(update=update)

    def baseline(self, plan: ExperimentPlan, task: Task) -> list[TrialRecord]:
        """The unmodified script with its defaults (under the plan's shared conditions): the reference row."""
        self.stage("baseline")
        if self.options.script is None:
            # a hub data set or model missing offline fails here, in one line, before any trial starts
            data.check_available({**task.defaults, **plan.conditions})
        return self.baseline_runs(plan, task, plan.budget.seeds)

    def baseline_runs(self, plan: ExperimentPlan, task: Task, seeds: int) -> list[TrialRecord]:
        """The baseline study over `seeds` seeds: its first call creates it, a later one adds seeds to it."""
        label = "baseline" if seeds == plan.budget.seeds else f"baseline, {seeds} seeds"
        return evaluate(
            self.url, f"{self.info.run_id}-baseline", task, self.folder / "baseline", dict(plan.conditions),
            self.config(plan, seeds=seeds), self.reporter("baseline"), label,
        )  # fmt: skip

    def final_runs(
        self, plan: ExperimentPlan, task: Task, arm: Arm, k: int, params: dict[str, Any], seeds: int
    ) -> list[TrialRecord]:
        """Finalist k of `arm` over `seeds` seeds, in its own study (more seeds extend the same study)."""
        arms = plan.arm_list()
        label = ("" if len(arms) == 1 else f"{arm.title}: ") + f"finalist {k + 1}"
        if seeds != plan.budget.seeds:
            label += f", {seeds} seeds"
        return evaluate(
            self.url, study_name(self.info.run_id, arms, arm, "final", str(k)), task,
            self.folder / "workspace", params, self.config(plan, seeds=seeds), self.reporter("final"), label,
        )  # fmt: skip

    def reference(self, plan: ExperimentPlan, task: Task) -> dict[str, Any]:
        """The patched script's defaults under the plan's conditions: what a change is measured against."""
        script = self.folder / "workspace" / task.entry
        return {**entry.defaults(script.read_text(), str(script)), **plan.conditions}

    def ablation(self, plan: ExperimentPlan, task: Task, result: RunResult) -> Ablation | None:
        """Leave-one-out of the patch's candidate against the patched script's defaults, over the same seeds."""
        if result.best is None or not any(r.state == "COMPLETE" for r in result.final):
            return None
        reference = self.reference(plan, task)
        arm = next((a for a in plan.arm_list() if a.name == result.best_arm), None)
        first = [*arm.fixed, *(p.name for p in arm.search)] if arm else []
        chosen, skipped = ablation.variants(result.best.params, reference, first)
        if not chosen:
            return None
        self.stage("ablation")
        rows = [
            AblationRow(
                param=k,
                reference=reference[k],
                candidate=result.best.params[k],
                runs=evaluate(
                    self.url,
                    f"{self.info.run_id}-ablate-{k}",
                    task,
                    self.folder / "workspace",
                    params,
                    self.config(plan, seeds=result.seeds_used),
                    self.reporter("ablation"),
                    f"without {k}",
                ),  # fmt: skip
            )
            for k, params in chosen
        ]
        return Ablation(against="the patched script's defaults", rows=rows, skipped=skipped)


def storage_url(folder: Path, info: RunInfo, settings: Settings) -> str:
    """The run's storage: the one given now, else the one it was created with (never stored with a password)."""
    if settings.storage:
        return settings.storage
    if storages.is_rdb(info.storage):
        if "***" in info.storage:
            raise LoopError(f"this run uses {info.storage}: pass --storage with its password to continue it")
        return info.storage
    return str(folder / storages.JOURNAL_FILE)


def load_options(folder: Path) -> LoopOptions:
    """The options the run was started with; a missing or damaged file is a clear error, not a traceback."""
    path = folder / OPTIONS_FILE
    try:
        return LoopOptions.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise LoopError(f"{path} is missing: this run folder cannot be resumed") from None
    except (ValidationError, UnicodeDecodeError) as exc:
        raise LoopError(
            f"{path} is corrupted ({type(exc).__name__}): this run folder cannot be resumed"
        ) from None


def drive(
    folder: Path,
    settings: Settings,
    on_event: EventFn | None = None,
    *,
    report: Callable[[Path, Settings], object],
) -> RunResult:
    """Run (or continue) a run folder's stages to the end; the same call serves `run` and `resume`. `report`
    renders the run folder's report, the last stage (it comes after the loop, so the caller passes it)."""
    info = runs.load(folder)
    options = load_options(folder)
    # the box and the trust the run started with hold on resume, whatever the settings say now
    settings = settings.model_copy(
        update={
            "sandbox": options.box.mode,
            "memory_limit_mb": options.box.memory_limit_mb,
            "trust_edits": options.trust_edits,
        }
    )
    loop = Loop(folder, info, options, settings, storage_url(folder, info, settings))
    if on_event:
        loop.on_event = on_event
    try:
        plan = loop.plan()
        cuda = options.device == "cuda"
        info.sandbox = sandbox.isolation(options.box, plan.budget.workers, cuda).describe()
        task = loop.task(plan)
        arms = plan.arm_list()
        # the search's trials, and the matched round's: each arm at every other arm's best
        loop.budget = plan.budget.trials * len(plan.samplers) * len(arms) + len(arms) * (len(arms) - 1)
        loop.rounds = plan.budget.rounds
        loop.patch(plan, task)
        baseline = loop.baseline(plan, task)
        states, pruner = initial_states(plan, task), plan.pruner
        results: list[RoundResult] = []
        stop = None
        for number in range(1, loop.rounds + 1):
            loop.round = number
            result = run_round(loop, plan, task, number, states, pruner, baseline_summary(baseline))
            results.append(result)
            best = best_of([t for s in result.studies for t in s.trials], task.metric.direction)
            if best is not None and best.value is not None:
                loop.best = best.value if loop.best is None else _better(task, best.value, loop.best)
            states, pruner, _ = revise_arms(result, plan, states, pruner, task)
            stop = _stop_reason(loop, plan, results)
            if stop:
                break
        matched = match(loop, plan, task, results, states)
        if matched is not None:
            results.append(matched)
        finals = finalists(loop, plan, task, [r for r in results if r is not matched], matched)
        baseline, finals, sequential = more_seeds(loop, plan, task, results, baseline, finals)
        run_result = conclude(
            info.run_id, plan, task, results, baseline, finals, loop, stop or "", sequential
        )
        run_result.ablation = loop.ablation(plan, task, run_result)
        if run_result.ablation is not None:
            extra = sum(len(r.runs) for r in run_result.ablation.rows)
            run_result.cost = run_result.cost.model_copy(
                update={"trials": run_result.cost.trials + extra, "wall_s": time.monotonic() - loop.started}
            )
        # only what the evidence supports; the conditions (a data set, a cap) set the experiment, not the change
        reference = loop.reference(plan, task)
        run_result.patch_changes = evidence.patch_changes(run_result, reference)
        run_result.arm_variants = evidence.arm_variants(run_result, reference)
        runs.write_atomic(folder / RESULTS_FILE, run_result.model_dump_json(indent=2))
        if run_result.best is not None:
            loop.stage("finalize")
            params = {**evidence.carried(run_result.patch_changes), **evidence.released(plan)}
            notes = evidence.rationale(run_result.patch_changes, plan)
            coder.finalize_patch(folder, params, loop.url, notes, run_result.arm_variants)
        loop.stage("report")
        report(folder, settings)
    except KeyboardInterrupt:
        info.status, info.error = "interrupted", f"interrupted during {info.stage}"
        runs.save(folder, info)
        raise
    except (LoopError, storages.StorageUnavailable, OSError, RuntimeError, ValueError) as exc:
        info.status, info.error = "failed", f"{info.stage}: {exc}"
        runs.save(folder, info)
        raise LoopError(f"{info.stage}: {exc}") from exc
    info.status, info.stage, info.error = "awaiting_approval", "done", None
    runs.save(folder, info)
    return run_result


def _better(task: Task, a: float, b: float) -> float:
    return max(a, b) if task.metric.direction == "maximize" else min(a, b)


def start(options: LoopOptions, settings: Settings, command: list[str]) -> Path:
    """Create the run folder and store the options; nothing runs yet."""
    info = RunInfo(
        run_id=runs.new_run_id(options.task or options.idea),
        command=command,
        kind="run",
        idea=options.idea,
        task=options.task,
    )
    folder = runs.create(settings.reports_dir, info)
    url = settings.storage or str(folder / storages.JOURNAL_FILE)
    info.storage = storages.redact(url)
    runs.save(folder, info)
    stored = options.model_copy(update={"storage": None})
    runs.write_atomic(folder / OPTIONS_FILE, json.dumps(stored.model_dump(mode="json"), indent=2))
    return folder
