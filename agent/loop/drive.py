"""The research loop: plan -> patch -> baseline -> rounds of studies and analysis -> finalists on the held-out
split -> results -> final patch -> report, awaiting a person's approval.

Every stage writes its artifact into the run folder before the next starts, and every study resumes from its
storage, so `resume` continues an interrupted run from where it stopped and runs nothing twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agent import runs
from agent.analyse import ablation, analyst
from agent.analyse.comparisons import compare_arms
from agent.config import Settings
from agent.plan import planner
from agent.schemas import (
    Ablation,
    AblationRow,
    Arm,
    ArmResult,
    ExperimentPlan,
    Finding,
    Phase,
    RoundResult,
    RunInfo,
    RunResult,
)
from experiments import data, entry, registry, stats
from experiments import storage as storages
from experiments.records import Cost, SearchParam, StudyResult, TrialRecord
from experiments.registry import Task
from experiments.runner import Progress
from experiments.tuning import TuningConfig, best_of, evaluate, prepare_workspaces, summarize, tune

OPTIONS_FILE = "options.json"
RESULTS_FILE = "results.json"
ROUNDS_DIR = "rounds"
FINALISTS = 2
MATCH_FILE = "match.json"
MATCHED = "matched"  # the match round's phase, and its studies' strategy
STALL_ROUNDS = 2
ROUND_SEED_STRIDE = 1_000_000  # each round its own sampler seed, clear of the workers' (seed + 1000 * worker)
# each arm its own sampler seed too: arms share the training seeds, but a search that replayed the control's
# points would make identical arms agree by construction, and the comparison's error rate would go unmeasured
ARM_SEED_STRIDE = 10_000


class LoopError(RuntimeError):
    """A stage could not be completed; the message names the stage and what to do."""


class LoopOptions(BaseModel):
    """What the person asked for on the command line; stored so that `resume` continues the same run."""

    idea: str
    task: str | None = None
    script: Path | None = None
    script_args: list[str] = Field(default_factory=list, description="a plain script's own arguments")
    metric: str | None = Field(default=None, description="the metric a plain script is judged by")
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
        runs.save(self.folder, self.info)
        self.emit(name)

    def emit(self, stage: str, label: str = "", progress: Progress | None = None, message: str = "") -> None:
        elapsed = time.monotonic() - self.started
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
            plan = planner.make_plan(self.options.idea, self.settings, task)
        except planner.PlanError as exc:
            raise LoopError(f"planning failed: {exc}") from None
        plan = apply_overrides(plan, self.options, self.settings)
        planner.write_plan(self.folder, plan)
        return plan

    def task(self, plan: ExperimentPlan) -> Task:
        return self.script_task() if self.options.script is not None else registry.get(plan.task)

    def script_task(self) -> Task:
        """The person's script as a task, registered so that the planner and the workers find it."""
        metric = registry.metric_named(self.options.metric) if self.options.metric else None
        return registry.register(
            registry.from_script(self.options.script, metric, tuple(self.options.script_args))  # type: ignore[arg-type]
        )

    def patch(self, plan: ExperimentPlan, task: Task) -> None:
        from agent.code import coder

        prepare_workspaces(self.folder, task)
        if (self.folder / coder.PATCH_JSON).is_file():
            return
        self.stage("patch")
        try:
            patch = coder.propose_patch(plan, task, self.folder, self.settings)
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

    def run_round(
        self,
        plan: ExperimentPlan,
        task: Task,
        number: int,
        states: dict[str, ArmState],
        pruner: str,
        baseline: tuple[float | None, float],
    ) -> RoundResult:
        """Run one round's studies (one per arm and strategy, each with the same trials) and analyse them; a
        stored round is loaded instead."""
        path = self.folder / ROUNDS_DIR / f"round-{number}.json"
        if path.is_file():
            stored = RoundResult.model_validate_json(path.read_text())
            self.trials_done += sum(len(s.trials) for s in stored.studies)
            return stored
        self.stage(f"round-{number}")
        phase, fraction, trials = round_shape(plan, number, self.rounds)
        arms = plan.arm_list()
        jobs = [(arm, sampler) for arm in arms for sampler in plan.samplers]
        configs = [
            self.config(
                plan,
                sampler=sampler,
                pruner=pruner,
                trials=trials,
                data_fraction=fraction,
                warm_start=states[arm.name].warm,
                fixed={**plan.conditions, **arm.fixed},
                sampler_seed=self.options.seed
                + ROUND_SEED_STRIDE * (number - 1)
                + ARM_SEED_STRIDE * arms.index(arm),
            )  # fmt: skip
            for arm, sampler in jobs
        ]
        names = [study_name(self.info.run_id, arms, a, f"r{number}", s) for a, s in jobs]
        workers = configs[0].workers
        report = self.reporter(f"round-{number}")
        if len(jobs) > 1 and workers >= len(jobs):
            # every study at once, the workers split between them: arms share the wall clock evenly
            share = [workers // len(jobs) + (k < workers % len(jobs)) for k in range(len(jobs))]
            configs = [c.model_copy(update={"workers": w}) for c, w in zip(configs, share, strict=True)]
            stop, left = threading.Event(), self.time_left()
            with ThreadPoolExecutor(len(jobs)) as pool:
                futures = [
                    pool.submit(tune, self.url, n, task, self.folder / "workspace", states[a.name].space, c,
                                report, left, stop)
                    for n, (a, _), c in zip(names, jobs, configs, strict=True)
                ]  # fmt: skip
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    stop.set()
                    raise
        else:
            for done, (n, (a, _), c) in enumerate(zip(names, jobs, configs, strict=True)):
                # a wall-clock budget is shared out evenly, so the last arm is not the one left without time
                left = self.time_left()
                share_s = None if left is None else left / (len(jobs) - done)
                tune(self.url, n, task, self.folder / "workspace", states[a.name].space, c, report, share_s)
        studies = [
            summarize(self.url, n, task, states[a.name].space, c).model_copy(update={"arm": a.name})
            for n, (a, _), c in zip(names, jobs, configs, strict=True)
        ]
        self.trials_done += sum(len(st.trials) for st in studies)
        # an explore round trains on a subset, so its scores are not comparable with the full-data baseline
        reference = baseline if fraction == 1.0 else (None, baseline[1])
        findings = [
            f.model_copy(update={"arm": s.arm if len(arms) > 1 else ""})
            for s in studies
            for f in analyst.analyse(s, *reference)
        ]
        result = RoundResult(
            round=number, phase=phase, data_fraction=fraction, studies=studies, findings=findings
        )
        result.revision = revise_arms(result, plan, states, pruner, task)[2]
        path.parent.mkdir(exist_ok=True)
        runs.write_atomic(path, result.model_dump_json(indent=2))
        return result

    def match(
        self, plan: ExperimentPlan, task: Task, rounds: list[RoundResult], states: dict[str, ArmState]
    ) -> RoundResult | None:
        """With several arms, each arm also trains at every other arm's best shared values, its own
        arm-defining values kept: one tuning trial per other arm, on validation like the search's trials.

        Each arm's search lands on its own shared values (which learning rate a small search finds varies from
        run to run more than the paired test over seeds can see: bench/results/calibration.md), so comparing
        each arm at its own best would compare searches as much as arms. With these trials every arm can be
        re-run at the same shared values, and the arms differ only in what defines them."""
        arms = plan.arm_list()
        if len(arms) < 2:
            return None
        path = self.folder / ROUNDS_DIR / MATCH_FILE
        if path.is_file():
            stored = RoundResult.model_validate_json(path.read_text())
            self.trials_done += sum(len(s.trials) for s in stored.studies)
            return stored
        self.stage("match")
        full = [r for r in rounds if r.data_fraction == 1.0] or rounds
        bests = {a.name: _ranked(own_trials(full, a, arms), task)[:1] for a in arms}
        number = max((r.round for r in rounds), default=0) + 1
        studies = []
        for k, arm in enumerate(arms):
            if not bests[arm.name]:
                continue
            mine = bests[arm.name][0].params
            raw = [
                matched_point(mine, theirs[0].params, shared_names(plan))
                for other, theirs in bests.items()
                if other != arm.name and theirs
            ]
            points = [q for q in raw if q != mine and q not in raw[: raw.index(q)]]
            if not points:
                continue
            space = covering(states[arm.name].space, points)
            cfg = self.config(
                plan,
                sampler="random",
                pruner="none",
                trials=len(points),
                warm_start=points,
                fixed={**plan.conditions, **arm.fixed},
                sampler_seed=self.options.seed + ROUND_SEED_STRIDE * number + ARM_SEED_STRIDE * k,
            )
            name = study_name(self.info.run_id, arms, arm, "match", "shared")
            tune(self.url, name, task, self.folder / "workspace", space, cfg, self.reporter("match"))
            studies.append(
                summarize(self.url, name, task, space, cfg).model_copy(
                    update={"arm": arm.name, "sampler": MATCHED}
                )
            )
        self.trials_done += sum(len(st.trials) for st in studies)
        result = RoundResult(round=number, phase=MATCHED, studies=studies)
        path.parent.mkdir(exist_ok=True)
        runs.write_atomic(path, result.model_dump_json(indent=2))
        return result

    def finalists(
        self, plan: ExperimentPlan, task: Task, rounds: list[RoundResult], matched: RoundResult | None
    ) -> dict[str, list[list[TrialRecord]]]:
        """Per arm, the configurations re-run on all the data over the seeds with held-out metrics: its best
        from the full-data rounds (from every round if none used all the data) and, with several arms, its
        matched trials (`match`); with one arm, its best distinct configurations. Selection among them uses
        validation only."""
        self.stage("final")
        full = [r for r in rounds if r.data_fraction == 1.0] or rounds
        arms = plan.arm_list()
        out: dict[str, list[list[TrialRecord]]] = {}
        for arm in arms:
            chosen: list[TrialRecord] = []
            for trial in _ranked(own_trials(full, arm, arms), task):
                if all(trial.params != c.params for c in chosen):
                    chosen.append(trial)
                if len(chosen) == (1 if matched else FINALISTS):
                    break
            if matched and chosen:
                chosen += _ranked(own_trials([matched], arm, arms), task)
            out[arm.name] = [
                self.final_runs(plan, task, arm, k, c.params, plan.budget.seeds) for k, c in enumerate(chosen)
            ]
        return out

    def more_seeds(
        self,
        plan: ExperimentPlan,
        task: Task,
        rounds: list[RoundResult],
        baseline: list[TrialRecord],
        finals: dict[str, list[list[TrialRecord]]],
    ) -> tuple[list[TrialRecord], dict[str, list[list[TrialRecord]]], Sequential]:
        """With `--seeds auto`, two more seeds at a time for the baseline and every finalist, until the answer
        is clear or the cap is reached. Each of the K planned looks tests at alpha / K (Bonferroni over
        looks), and so does the reported comparison, so stopping early does not inflate the error rate."""
        start = plan.budget.seeds
        if not self.options.seeds_auto:
            return baseline, finals, Sequential(seeds=start, reason=f"fixed: the plan's {start} seeds")
        cap = max(start, self.options.max_seeds)
        sizes = look_sizes(start, cap)
        arms, looks = plan.arm_list(), len(sizes)
        for i, n in enumerate(sizes):
            if i:
                self.stage(f"seeds-{n}")
                baseline = self.baseline_runs(plan, task, n)
                finals = {
                    arm.name: [
                        self.final_runs(plan, task, arm, k, runs_[0].params, n)
                        for k, runs_ in enumerate(finals[arm.name])
                        if runs_
                    ]
                    for arm in arms
                }
            baseline = self._first(baseline, n)
            finals = {a: [self._first(f, n) for f in fs] for a, fs in finals.items()}
            if settled(plan, task, rounds, baseline, finals, looks):
                level = f"{100 * (1 - 0.05 / looks):.4g}%"
                return (
                    baseline,
                    finals,
                    Sequential(
                        seeds=n,
                        looks=looks,
                        reason=f"stopped at {n} seeds (look {i + 1} of {looks}): every interval at the {level} "
                        "level excludes 0",
                    ),
                )
        return (
            baseline,
            finals,
            Sequential(
                seeds=sizes[-1],
                looks=looks,
                reason=f"the cap of {cap} seeds was reached (look {looks} of {looks}) with an interval that still "
                "includes 0",
            ),
        )

    def _first(self, records: list[TrialRecord], n: int) -> list[TrialRecord]:
        """The runs of the first n seeds (a resumed run may have stored more)."""
        return [r for r in records if r.seed is not None and r.seed - self.options.seed < n]

    def ablation(self, plan: ExperimentPlan, task: Task, result: RunResult) -> Ablation | None:
        """Leave-one-out of the patch's candidate against the patched script's defaults, over the same seeds."""
        if result.best is None or not any(r.state == "COMPLETE" for r in result.final):
            return None
        script = self.folder / "workspace" / task.script.name
        reference = {**entry.defaults(script.read_text(), str(script)), **plan.conditions}
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


class Sequential(BaseModel):
    """How many seeds the final comparison used, over how many planned looks, and why it stopped there."""

    seeds: int
    looks: int = 1
    reason: str


def look_sizes(start: int, cap: int) -> list[int]:
    """Seeds at each look: the plan's, then two more at a time, ending at the cap."""
    sizes = list(range(start, cap + 1, 2)) or [start]
    return sizes if sizes[-1] == cap else [*sizes, cap]


def settled(
    plan: ExperimentPlan,
    task: Task,
    rounds: list[RoundResult],
    baseline: list[TrialRecord],
    finals: dict[str, list[list[TrialRecord]]],
    looks: int,
) -> bool:
    """Whether the answer is clear: every treatment judged better or worse than the control, or (without
    arms) the patch's interval against the defaults excludes 0, at the level corrected for `looks`."""
    results, _ = select_arms(plan, task, rounds, finals)
    if plan.arms:
        judged = compare_arms(plan.arms, results, task.metric, looks)
        return bool(judged) and all(c.verdict in ("better", "worse") for c in judged)
    top = max(results, key=lambda a: validation_mean(a.final, task))
    c = stats.compare(top.final, baseline, task.metric, "test", looks)
    return c is not None and c.ci_low is not None and (c.ci_low > 0 or c.ci_high < 0)  # type: ignore[operator]


class ArmState(BaseModel):
    """What an arm searches next round, and the configurations it tries first."""

    space: list[SearchParam]
    warm: list[dict[str, Any]] = Field(default_factory=list)


def study_name(run_id: str, arms: list[Arm], arm: Arm, stage: str, suffix: str) -> str:
    """`<run>-r1-default`, `<run>-final-0`; with several arms the arm's name comes before the suffix."""
    return f"{run_id}-{stage}-{suffix}" if len(arms) == 1 else f"{run_id}-{stage}-{arm.name}-{suffix}"


def _of(study: StudyResult, arm: Arm, arms: list[Arm]) -> bool:
    """Whether a study tuned `arm` (a run from before arms had one arm, its studies no name)."""
    return study.arm == arm.name or (len(arms) == 1 and not study.arm)


def own_trials(rounds: list[RoundResult], arm: Arm, arms: list[Arm]) -> list[TrialRecord]:
    return [t for r in rounds for s in r.studies if _of(s, arm, arms) for t in s.trials]


def _ranked(trials: list[TrialRecord], task: Task) -> list[TrialRecord]:
    """The completed trials, best first."""
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    return sorted(done, key=lambda t: t.value, reverse=task.metric.direction == "maximize")  # type: ignore[arg-type, return-value]


def shared_names(plan: ExperimentPlan) -> set[str]:
    """The searched hyperparameters every arm tunes alike (an arm's own never overlap them: ExperimentPlan)."""
    return {p.name for p in plan.search_space}


def matched_point(mine: dict[str, Any], theirs: dict[str, Any], shared: set[str]) -> dict[str, Any]:
    """An arm's own best with the shared values replaced by another arm's."""
    return {k: theirs[k] if k in shared and k in theirs else v for k, v in mine.items()}


def covering(space: list[SearchParam], points: list[dict[str, Any]]) -> list[SearchParam]:
    """The space widened just enough to hold the points exactly: another arm's revised range may reach
    past this arm's, and a point moved into range would no longer be the other arm's values."""
    out = []
    for p in space:
        values = [q[p.name] for q in points if p.name in q]
        if p.kind == "categorical":
            extra = [v for v in values if not p.contains(v)]
            out.append(p.model_copy(update={"choices": [*p.choices, *dict.fromkeys(extra)]}) if extra else p)  # type: ignore[misc]
        elif values:
            out.append(p.model_copy(update={"low": min(p.low, *values), "high": max(p.high, *values)}))  # type: ignore[type-var]
        else:
            out.append(p)
    return out


def initial_states(plan: ExperimentPlan, task: Task) -> dict[str, ArmState]:
    """Every arm starts from the shared space plus its own, warm-started from the script's defaults."""
    return {
        a.name: ArmState(space=[*plan.search_space, *a.search], warm=[task.defaults]) for a in plan.arm_list()
    }


def revise_arms(
    result: RoundResult, plan: ExperimentPlan, states: dict[str, ArmState], pruner: str, task: Task
) -> tuple[dict[str, ArmState], str, list[str]]:
    """Each arm revised by its own studies' findings; the pruner from all of them, so every arm keeps the same.

    An arm's own searched parameters are what defines it, so findings about them never widen them (a dropout
    arm widened down to 0 would become the control)."""
    arms = plan.arm_list()
    pooled = revise_one(result.studies, result.findings, states[arms[0].name].space, pruner, task)
    new_pruner = pooled.pruner
    out, changes = {}, []
    for arm in arms:
        own = {p.name for p in arm.search}
        studies = [s for s in result.studies if _of(s, arm, arms)]
        findings = [f for f in result.findings if (f.arm in ("", arm.name)) and f.param not in own]
        revision = revise_one(studies, findings, states[arm.name].space, pruner, task)
        out[arm.name] = ArmState(space=revision.search_space, warm=revision.warm_start)
        prefix = "" if len(arms) == 1 else f"{arm.title}: "
        changes += [f"{prefix}{c}" for c in revision.changes if "pruner" not in c]
    if new_pruner != pruner:
        changes += [c for c in pooled.changes if "pruner" in c]
    return out, new_pruner, changes


def apply_overrides(plan: ExperimentPlan, options: LoopOptions, settings: Settings) -> ExperimentPlan:
    """Command-line budget options win over the plan's, within the configured caps."""
    budget = plan.budget.model_copy(
        update={
            k: v
            for k, v in {
                "trials": min(options.trials, settings.max_trials) if options.trials else None,
                "rounds": min(options.rounds, settings.max_rounds) if options.rounds else None,
                "workers": options.workers,
                "seeds": options.seeds,
                "timeout_s": options.timeout_s,
            }.items()
            if v is not None
        }
    )
    phases = rescale(plan.phases, budget.trials) if options.trials else plan.phases
    return plan.model_copy(update={"budget": budget, "phases": phases})


def rescale(phases: list[Phase], trials: int) -> list[Phase]:
    """The plan's phases with their trials scaled to a new budget, summing to it exactly."""
    tuning = [p for p in phases if p.trials > 0]
    old = sum(p.trials for p in tuning)
    if not tuning or old == trials:
        return phases
    scaled = {id(p): int(p.trials * trials / old) for p in tuning[:-1]}
    scaled[id(tuning[-1])] = trials - sum(scaled.values())
    return [p.model_copy(update={"trials": scaled.get(id(p), p.trials)}) for p in phases]


def round_shape(plan: ExperimentPlan, number: int, rounds: int) -> tuple[str, float, int]:
    """(phase name, data fraction, trials per strategy) of a round: an explore round on a subset first when
    the plan has one and there is more than one round, then the rest of the budget on the full data, split
    evenly. Every strategy gets the same trials, so their comparison is fair."""
    explore = next((p for p in plan.phases if p.name == "explore" and p.trials > 0), None)
    total = plan.budget.trials
    if explore is not None and rounds > 1:
        if number == 1:
            return "explore", explore.data_fraction, explore.trials
        rest, later = total - explore.trials, rounds - 1
        return "optimise", 1.0, rest // later + (1 if number - 1 <= rest % later else 0)
    return "optimise", 1.0, total // rounds + (1 if number <= total % rounds else 0)


def baseline_summary(runs_: list[TrialRecord]) -> tuple[float | None, float]:
    """Mean validation value of the baseline seeds, and their spread (the noise floor)."""
    values = [r.value for r in runs_ if r.value is not None]
    if not values:
        return None, 0.0
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, spread


def _stop_reason(loop: Loop, plan: ExperimentPlan, results: list[RoundResult]) -> str | None:
    if loop.round >= loop.rounds:
        return f"all {loop.rounds} planned round(s) done"
    if loop.trials_done >= loop.budget:
        return f"trial budget of {plan.budget.trials} per strategy used"
    left = loop.time_left()
    if left is not None and left <= 0:
        return "wall-clock budget used"
    if (
        plan.budget.tokens is not None
        and plan.usage.input_tokens + plan.usage.output_tokens >= plan.budget.tokens
    ):
        return "LLM token budget used"
    stalled = [any(f.kind == "no_gain" for f in r.findings) for r in results[-STALL_ROUNDS:]]
    if len(stalled) == STALL_ROUNDS and all(stalled):
        return f"{STALL_ROUNDS} rounds without a gain above the noise floor"
    return None


def revise_one(
    studies: list[StudyResult], findings: list[Finding], space: list[SearchParam], pruner: str, task: Task
) -> analyst.Revision:
    best = best_of([t for s in studies for t in s.trials], task.metric.direction)
    return analyst.revise(space, findings, pruner, best)


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


def drive(folder: Path, settings: Settings, on_event: EventFn | None = None) -> RunResult:
    """Run (or continue) a run folder's stages to the end; the same call serves `run` and `resume`."""
    from agent.code import coder
    from agent.report import render as reporting

    info = runs.load(folder)
    options = load_options(folder)
    loop = Loop(folder, info, options, settings, storage_url(folder, info, settings))
    if on_event:
        loop.on_event = on_event
    try:
        plan = loop.plan()
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
            result = loop.run_round(plan, task, number, states, pruner, baseline_summary(baseline))
            results.append(result)
            best = best_of([t for s in result.studies for t in s.trials], task.metric.direction)
            if best is not None and best.value is not None:
                loop.best = best.value if loop.best is None else _better(task, best.value, loop.best)
            states, pruner, _ = revise_arms(result, plan, states, pruner, task)
            stop = _stop_reason(loop, plan, results)
            if stop:
                break
        matched = loop.match(plan, task, results, states)
        if matched is not None:
            results.append(matched)
        finals = loop.finalists(plan, task, [r for r in results if r is not matched], matched)
        baseline, finals, sequential = loop.more_seeds(plan, task, results, baseline, finals)
        run_result = conclude(
            info.run_id, plan, task, results, baseline, finals, loop, stop or "", sequential
        )
        run_result.ablation = loop.ablation(plan, task, run_result)
        if run_result.ablation is not None:
            extra = sum(len(r.runs) for r in run_result.ablation.rows)
            run_result.cost = run_result.cost.model_copy(
                update={"trials": run_result.cost.trials + extra, "wall_s": time.monotonic() - loop.started}
            )
        runs.write_atomic(folder / RESULTS_FILE, run_result.model_dump_json(indent=2))
        if run_result.best is not None:
            loop.stage("finalize")
            # the shared conditions (a data set, a training-set cap) set the experiment, not the change
            changed = {k: v for k, v in run_result.best.params.items() if k not in plan.conditions}
            coder.finalize_patch(folder, changed)
        loop.stage("report")
        reporting.render(folder, settings)
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


def conclude(
    run_id: str,
    plan: ExperimentPlan,
    task: Task,
    rounds: list[RoundResult],
    baseline: list[TrialRecord],
    finals: dict[str, list[list[TrialRecord]]],
    loop: Loop,
    stop_reason: str,
    sequential: Sequential,
) -> RunResult:
    """Per arm, pick the finalist by mean validation value (never by test); the arms' question is answered by
    the treatments against the control on the held-out split, and the patch carries the arm best on
    validation, compared with the defaults on the held-out split."""
    arms = plan.arm_list()
    results, shared = select_arms(plan, task, rounds, finals)
    top = max(results, key=lambda a: validation_mean(a.final, task))
    studies: list[StudyResult] = [s for r in rounds for s in r.studies]
    looks = sequential.looks
    return RunResult(
        run_id=run_id,
        plan=plan,
        rounds=rounds,
        best=top.best,
        best_strategy=top.strategy,
        best_arm=top.name if len(arms) > 1 else None,
        baseline=baseline,
        final=top.final,
        comparison=stats.compare(top.final, baseline, task.metric, "test", looks),
        validation=stats.compare(top.final, baseline, task.metric, "validation", looks),
        arms=results if len(arms) > 1 else [],
        comparisons=compare_arms(plan.arms, results, task.metric, looks),
        compared_at=shared,
        seeds_used=sequential.seeds,
        looks=looks,
        stopping=sequential.reason,
        cost=Cost(
            wall_s=time.monotonic() - loop.started,
            trials=sum(len(s.trials) for s in studies)
            + len(baseline)
            + sum(len(f) for arm_finals in finals.values() for f in arm_finals),
            device=loop.options.device,
            device_name=loop.options.device_name,
            tokens=plan.usage.input_tokens + plan.usage.output_tokens,
            usd=plan.usage.cost_usd,
        ),
        stop_reason=stop_reason,
    )


def _counted(trials: list[TrialRecord]) -> int:
    """Trials that count against the budget: one that failed and was run again counts once."""
    retried = {t.retry_of for t in trials if t.retry_of is not None}
    return sum(t.number not in retried for t in trials)


def validation_mean(runs_: list[TrialRecord], task: Task) -> float:
    """Mean validation value, signed so that larger is better: what selection among finalists uses."""
    sign = 1 if task.metric.direction == "maximize" else -1
    values = [r.value for r in runs_ if r.value is not None]
    return sign * sum(values) / len(values) if values else -float("inf")


def compared_finals(
    plan: ExperimentPlan, task: Task, finals: dict[str, list[list[TrialRecord]]]
) -> tuple[dict[str, list[TrialRecord]], dict[str, Any]]:
    """Per arm, the finalist it is compared with, and the shared values they share.

    With several arms: the shared values that every arm ran at and that are best on validation averaged over
    the arms, so the arms differ only in what defines them. Otherwise, or when no shared values ran in every
    arm (a matched trial failed), each arm's finalist best on validation, and no shared values."""
    arms = plan.arm_list()
    each = {
        a.name: max(finals.get(a.name, []), key=lambda f: validation_mean(f, task), default=[]) for a in arms
    }
    if len(arms) < 2:
        return each, {}
    shared = shared_names(plan)
    by_values = {
        a.name: {key: f for f in finals.get(a.name, []) if (key := _values(f, shared)) is not None}
        for a in arms
    }
    common = [k for k in by_values[arms[0].name] if all(k in by_values[a.name] for a in arms)]
    if not common:
        return each, {}
    top = max(common, key=lambda k: sum(validation_mean(by_values[a.name][k], task) for a in arms))
    return {a.name: by_values[a.name][top] for a in arms}, dict(top)  # type: ignore[arg-type]


def _values(runs_: list[TrialRecord], shared: set[str]) -> tuple[tuple[str, Any], ...] | None:
    """A finalist's shared values, as a key; None for one that never completed."""
    done = next((r for r in runs_ if r.state == "COMPLETE"), None)
    return None if done is None else tuple(sorted((k, v) for k, v in done.params.items() if k in shared))


def select_arms(
    plan: ExperimentPlan, task: Task, rounds: list[RoundResult], finals: dict[str, list[list[TrialRecord]]]
) -> tuple[list[ArmResult], dict[str, Any]]:
    """Per arm, its compared finalist (`compared_finals`, chosen on validation, never test), as the tuning
    trial that found it and its runs over the seeds; and the shared values the arms were compared at."""
    arms = plan.arm_list()
    chosen_finals, values = compared_finals(plan, task, finals)
    results: list[ArmResult] = []
    for arm in arms:
        final = chosen_finals[arm.name]
        best = next((r for r in final if r.state == "COMPLETE"), None)
        pool = [
            (s.sampler, t)
            for r in rounds
            for s in r.studies
            if _of(s, arm, arms)
            for t in s.trials
            if best is not None and t.params == best.params
        ]
        # the search's own trial where it found these values, the matched trial only where it did not
        chosen = min(pool, key=lambda item: (item[0] == MATCHED, item[1].number), default=(None, None))
        results.append(
            ArmResult(
                name=arm.name,
                role=arm.role,
                label=arm.title,
                best=chosen[1],
                final=final,
                strategy=chosen[0],
                # its search's effort: the matched trials re-run other arms' values, one arm more than another
                # where an arm's own best already had them
                trials=sum(
                    _counted(s.trials)
                    for r in rounds
                    if r.phase != MATCHED
                    for s in r.studies
                    if _of(s, arm, arms)
                ),
            )
        )
    return results, values


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
