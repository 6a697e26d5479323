"""Everything a report shows, computed from a run folder before a single line is rendered.

The report's templates only format what `collect` returns, so a test (or a reviewer's script) can check every
number in `ReportData` without parsing markdown, and the conclusion is a computed value, not a sentence a
template chose. Every number comes from results.json after `report_checks` has read it back against the run's
Optuna storage.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from agent import runs
from agent.analyse import evidence
from agent.analyse.ablation import MAX_VARIANTS
from agent.analyse.comparisons import RULE as COMPARISON_RULE
from agent.analyse.comparisons import answer, answer_patch
from agent.analyse.verdict import Verdict, errors, verdict
from agent.config import Settings
from agent.report.calibration import Calibration, calibration
from agent.report.caveats import caveats
from agent.report.checks import (
    ReportError,
    check_compared_at,
    check_direction,
    check_selection,
    storage_url,
    verify_storage,
)
from agent.report.compression import CompressionView, compression_view
from agent.report.curves import ConfusionView, LearningCurve, confusion_view
from agent.report.pareto import ParetoFront, pareto_fronts
from agent.report.rows import (
    AblationView,
    ArmRow,
    IdenticalGroup,
    RoundNote,
    SeedRow,
    StrategyRow,
    TrialRow,
    ablation_view,
    arm_rows,
    identical,
    round_notes,
    seed_rows,
    strategy_row,
)
from agent.report.sources import (
    CodeChanges,
    HyperparameterRow,
    LLMUse,
    Reproducibility,
    code_changes,
    dataset_name,
    environment,
    git_state,
    hyperparameter_rows,
    repro_command,
    script_name,
    shown_path,
    target_path,
)
from agent.report.studies import (
    Results,
    curves,
    finalists,
    load_results,
    normalise,
    plan_of,
    searched_ranges,
    searched_rounds,
    strategy_label,
    study_title,
)
from agent.results import ArmComparison, MarginTest, PatchChange, RunResult, SecondaryComparison
from agent.schemas import ExperimentPlan, NotDone, RunInfo, Setting
from experiments import registry
from experiments import storage as storages
from experiments.program import SAME_SPLIT
from experiments.records import Comparison, Cost, Metric, Model, SearchParam, TrialRecord

TOP_TRIALS = 5


class Plot(Model):
    file: str
    title: str
    section: str = Field(default="search", description="the report section that shows it: search or training")


class ReportData(Model):
    run_id: str
    kind: str
    status: str
    created: datetime
    title: str
    idea: str | None = None
    task: str
    task_description: str = ""
    metric: Metric
    plan: ExperimentPlan | None = None
    plan_defaults: dict[str, Any] = Field(default_factory=dict)
    candidate: TrialRecord | None = None
    candidate_strategy: str | None = None
    candidate_arm: str | None = None
    arms: list[ArmRow] = Field(default_factory=list)
    comparisons: list[ArmComparison] = Field(default_factory=list)
    compared_at: dict[str, Any] = Field(
        default_factory=dict, description="the shared values every arm was re-run at; empty: each at its own"
    )
    comparison_rule: str = COMPARISON_RULE
    margin: MarginTest | None = Field(default=None, description="without a control: the candidate's margin")
    secondary: list[SecondaryComparison] = Field(
        default_factory=list, description="without a control: the candidate's secondary objectives"
    )
    not_done: list[NotDone] = Field(default_factory=list)
    ablation: list[AblationView] = Field(default_factory=list)
    ablation_against: str = ""
    ablation_skipped: list[str] = Field(default_factory=list)
    ablation_cap: int = MAX_VARIANTS
    patch_changes: list[PatchChange] = Field(default_factory=list, description="in the final patch or not")
    arm_variants: dict[str, dict[str, Setting]] = Field(
        default_factory=dict, description="per arm, the values `approve --arm` writes instead of the patch"
    )
    tuned_under: list[str] = Field(
        default_factory=list, description="the conditions every value was tuned on"
    )
    seeds_used: int = 0
    looks: int = 1
    stopping: str = ""
    calibration: Calibration | None = None
    comparison: Comparison | None = None
    validation: Comparison | None = None
    same_split: bool = Field(
        default=False,
        description="the script could not switch to a held-out split: its held-out values are its validation",
    )
    seeds: list[SeedRow] = Field(default_factory=list)
    baseline_errors: list[str] = Field(default_factory=list)
    final_errors: list[str] = Field(default_factory=list)
    strategies: list[StrategyRow] = Field(default_factory=list)
    search_space: list[SearchParam] = Field(default_factory=list)
    search_ranges: dict[str, list[str]] = Field(
        default_factory=dict,
        description="each searched hyperparameter's ranges, a revised one from its round",
    )
    top_trials: list[TrialRow] = Field(default_factory=list)
    identical: list[IdenticalGroup] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list, description="computed: a bound reached, tied trials")
    rounds: list[RoundNote] = Field(default_factory=list)
    stop_reason: str = ""
    hyperparameters: list[HyperparameterRow] = Field(default_factory=list)
    code: CodeChanges
    cost: Cost
    llm: LLMUse = Field(default_factory=LLMUse)
    repro: Reproducibility
    verdict: Verdict
    curves: list[LearningCurve] = Field(default_factory=list, description="the finalists' and the defaults'")
    confusion: ConfusionView | None = Field(
        default=None, description="the candidate's, on the held-out split"
    )
    compression: CompressionView | None = Field(
        default=None, description="when the plan compressed every model"
    )
    pareto: list[ParetoFront] = Field(
        default_factory=list, description="each multi-objective study's front: metric against model size"
    )
    plots: list[Plot] = Field(default_factory=list)


def _patch_changes(results: Results, comparisons: list[ArmComparison]) -> list[PatchChange]:
    """The final patch's changes, in or out, judged again from the verified runs and the stored references."""
    if not isinstance(results, RunResult):
        return []
    judged = results.model_copy(update={"comparisons": comparisons})
    return evidence.patch_changes(judged, {c.param: c.reference for c in results.patch_changes})


def _failed_run(folder: Path, info: RunInfo) -> ReportData:
    """A run that ended without results: the report says where and why, and nothing else."""
    if info.status in ("created", "running"):
        raise ReportError(
            f"run {info.run_id} is still {info.status} (stage {info.stage}) and has no results yet; if its "
            "process was killed, continue it with `research-loop resume`"
        )
    task = info.task or "unknown"
    metric = (
        registry.get(task).metric if task in registry.TASKS else Metric(name="unknown", direction="maximize")
    )
    reason = info.error or f"the run stopped at stage {info.stage} with status {info.status}"
    versions, recorded = environment(folder)
    return ReportData(
        run_id=info.run_id,
        kind=info.kind,
        status=info.status,
        created=info.created,
        title=info.idea or f"{task} ({info.kind})",
        idea=info.idea,
        task=task,
        metric=metric,
        plan=plan_of(folder, None),
        code=code_changes(folder),
        cost=Cost(),
        repro=Reproducibility(
            command=repro_command(info),
            seeds=[],
            versions=versions,
            versions_recorded=recorded,
            git="unknown",
            dataset="unknown",
            dataset_description="",
            storage=shown_path(storages.redact(info.storage), folder) or "",
            sandbox=info.sandbox,
            studies=[],
            verified=False,
            verification="the run has no results.json to check against storage",
        ),
        verdict=Verdict(
            outcome="failed",
            summary=f"The run ended without results: {reason}.",
            next_steps=["Fix the cause and start a new run, or `research-loop resume` an interrupted one."],
        ),
    )


def collect(folder: Path, settings: Settings) -> ReportData:
    """Read a run folder, check it (report_checks), and compute every section; raise ReportError if unfit."""
    info = runs.load(folder)
    results = load_results(folder, info)
    if results is None:
        return _failed_run(folder, info)
    plan = plan_of(folder, results)
    view = normalise(results)
    tuning = [t for _, _, s in view.studies for t in s.trials]
    check_direction(
        view.task,
        [
            ("results.json", view.metric),
            ("the plan", plan.metric if plan else None),
            *((f"study {s.study_name}", s.metric) for _, _, s in view.studies),
            *(
                (f"the {c.split} comparison", Metric(name=c.metric, direction=c.direction))
                for c in (view.comparison, view.validation)
                if c is not None
            ),
        ],
    )
    check_selection(view.best, tuning, view.final, view.baseline)
    arm_results = results.arms if isinstance(results, RunResult) else []
    ablated = results.ablation if isinstance(results, RunResult) else None
    for arm in arm_results:
        own = [t for _, _, s in view.studies if s.arm == arm.name for t in s.trials]
        check_selection(arm.best, own, arm.final, view.baseline)
    check_compared_at(arm_results, results.compared_at if isinstance(results, RunResult) else {})
    url, where = storage_url(folder, view.storage or info.storage, settings)
    if url is None:
        studies, verification = [s.study_name for _, _, s in view.studies], f"not read back: {where}"
    else:
        evaluations = {"baseline": view.baseline, "final": view.final}
        evaluations |= {f"arm {a.name} final": a.final for a in arm_results}
        evaluations |= {f"ablation {r.param}": r.runs for r in (ablated.rows if ablated else [])}
        studies = verify_storage(url, info.run_id, folder, [s for _, _, s in view.studies], evaluations)
        verification = f"every trial in results.json was read back from {where} and matches"
    rounds = searched_rounds(view)
    named = bool(plan and plan.arms)  # a run without arms tunes one implicit arm, which no row names
    strategies = [strategy_row(strategy_label(r, f, s, rounds, named), r, f, s) for r, f, s in view.studies]
    labelled = [
        (row.label, f, t) for row, (_, f, s) in zip(strategies, view.studies, strict=True) for t in s.trials
    ]
    done = [
        (label, t) for label, f, t in labelled if f >= 1 and t.state == "COMPLETE" and t.value is not None
    ]
    done.sort(key=lambda item: item[1].value, reverse=view.metric.direction == "maximize")  # type: ignore[arg-type,return-value]
    code = code_changes(folder)
    target = target_path(folder, view.task)
    script = script_name(view.task, folder)
    space = view.studies[0][2].search_space if view.studies else []
    task = registry.get(view.task) if view.task in registry.TASKS else None
    versions, recorded = environment(folder)
    seeds = sorted({r.seed for r in view.baseline if r.seed is not None})
    tuning_seeds = sorted({t.seed for t in tuning if t.seed is not None})
    fractions = sorted({f for _, f, _ in view.studies}) or [1.0]
    plan_usage = plan.usage if plan else None
    # recomputed from the verified runs, never taken from results.json's own sentences
    looks = results.looks if isinstance(results, RunResult) else 1
    comparisons = answer(plan, arm_results, view.metric, looks) if plan else []
    margin, secondary = (
        answer_patch(plan, view.final, view.baseline, view.metric, looks) if plan else (None, [])
    )
    return ReportData(
        run_id=info.run_id,
        kind=info.kind,
        # the report is the run's last stage: once it is written the run awaits approval, so it says so
        status="awaiting_approval" if (info.status, info.stage) == ("running", "report") else info.status,
        created=info.created,
        title=plan.title if plan else study_title(view),
        idea=plan.idea if plan else info.idea,
        task=view.task,
        task_description=task.description if task else "",
        metric=view.metric,
        plan=plan,
        candidate=view.best,
        candidate_strategy=view.best_strategy,
        candidate_arm=results.best_arm if isinstance(results, RunResult) else None,
        arms=arm_rows(plan, arm_results, view.metric),
        compared_at=results.compared_at if isinstance(results, RunResult) else {},
        comparisons=comparisons,
        margin=margin,
        secondary=secondary,
        not_done=plan.not_done if plan else [],
        patch_changes=_patch_changes(results, comparisons),
        arm_variants=results.arm_variants if isinstance(results, RunResult) else {},
        tuned_under=evidence.tuned_under(plan) if plan else [],
        ablation=[ablation_view(r, view.final, view.metric) for r in (ablated.rows if ablated else [])],
        ablation_against=ablated.against if ablated else "",
        ablation_skipped=ablated.skipped if ablated else [],
        seeds_used=results.seeds_used if isinstance(results, RunResult) else len(seeds),
        looks=results.looks if isinstance(results, RunResult) else 1,
        stopping=results.stopping if isinstance(results, RunResult) else "",
        calibration=calibration(view.task),
        comparison=view.comparison,
        validation=view.validation,
        same_split=any(r.metrics.get(SAME_SPLIT) for r in [*view.baseline, *view.final]),
        seeds=seed_rows(view.metric.name, view.baseline, view.final),
        baseline_errors=errors(view.baseline),
        final_errors=errors(view.final),
        strategies=strategies,
        search_space=space,
        search_ranges=searched_ranges(view),
        top_trials=[
            TrialRow(strategy=label, number=t.number, value=t.value, params=t.params, duration_s=t.duration_s)  # type: ignore[arg-type]
            for label, t in done[:TOP_TRIALS]
        ],
        identical=identical(labelled),
        caveats=caveats(view.metric, view.comparison, view.baseline, arm_results, plan, view.studies),
        rounds=round_notes(results.rounds, info.run_id) if isinstance(results, RunResult) else [],
        stop_reason=view.stop_reason,
        hyperparameters=hyperparameter_rows(folder, script, view.best, view.baseline, space, plan),
        code=code,
        cost=view.cost,
        llm=LLMUse(**plan_usage.model_dump()) if plan_usage else LLMUse(),
        repro=Reproducibility(
            command=repro_command(info),
            seeds=seeds,
            tuning_seed=tuning_seeds[0] if len(tuning_seeds) == 1 else None,
            data_fractions=fractions,
            versions=versions,
            versions_recorded=recorded,
            target=shown_path(target, folder) or "unknown",
            git=git_state(target),
            dataset=dataset_name(plan, task),
            dataset_description=task.description if task else "",
            storage=shown_path(storages.redact(view.storage or info.storage), folder) or "",
            sandbox=info.sandbox,
            studies=studies,
            verified=url is not None,
            verification=verification,
        ),
        verdict=verdict(
            info.run_id,
            tuning,
            view.best,
            view.baseline,
            view.final,
            view.comparison,
            code.approvable,
        ),
        curves=curves(view, arm_results),
        pareto=pareto_fronts(
            [(row.label, s) for row, (_, _, s) in zip(strategies, view.studies, strict=True)]
        ),
        compression=compression_view(
            plan.compression if plan else None, view.metric.name, finalists(view, arm_results)
        ),
        confusion=confusion_view(
            f"arm {results.best_arm}"
            if isinstance(results, RunResult) and results.best_arm
            else "the candidate",
            view.final,
        ),
    )
