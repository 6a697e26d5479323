"""The plan a model writes: only what it must decide, in a schema small enough for a 4,096-token context.

A whole `ExperimentPlan` schema is 12k characters, and a 1.5B model asked to fill it spends its answer on
phases, titles and range kinds it gets wrong. A `PlanDraft` holds what the idea decides (task, what is searched,
arms, code changes, conditions, samplers, pruner, trials, compression, second objectives, a margin, head-to-head
pairs, what is not done); `expand` fills in the
rest as the offline planner does (title, objective, hypothesis, phases, rounds, baselines, the kind of each range
from the script's default, a range the model left out from the task's registered one) and first mends what the
rules can mend without asking: a searched name that only a code change provides gets that change, a
`set_default` of a name the script lacks becomes the change that adds it, a name an arm defines leaves the
shared space, a lone treatment arm that searches only what every arm searches is dropped, a condition the
script has no setting for becomes a not-done entry. Each mend is written into the plan's notes.

`draft_of` is the other direction: a plan as a draft, for the revision prompt and to offer the offline
planner's reading of an idea as a draft to correct, so a small model edits a plan instead of writing one.
"""

from __future__ import annotations

import math
import re
from typing import Any, get_args

from pydantic import Field, ValidationError

from agent.config import Settings
from agent.plan import coverage
from agent.plan.llm import errors_of
from agent.plan.offline import planner as offline
from agent.plan.offline import priors
from agent.plan.rules import PlanInvalid
from agent.schemas import (
    Arm,
    ArmRole,
    Budget,
    CodeChangeIntent,
    CodeChangeKind,
    ExperimentPlan,
    HeadToHead,
    Margin,
    NotDone,
    PrunerName,
    SamplerName,
    SecondaryName,
    SecondaryObjective,
    Setting,
)
from experiments.records import Compression, Model, SearchParam
from experiments.registry import Task

_ARM_NAME = re.compile(r"[^a-z0-9_-]+")
CAP = "max_train_examples"  # a cap on training examples: a shared condition, or the change that adds it


class Range(Model):
    """A searched hyperparameter: low..high (log for a scale over decades), or choices; neither: the task's."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Setting] | None = None


class DraftArm(Model):
    name: str = Field(min_length=1, max_length=40)
    role: ArmRole
    label: str = ""
    fixed: dict[str, Setting] = Field(default_factory=dict)
    search: list[Range] = Field(default_factory=list)


class DraftChange(Model):
    kind: CodeChangeKind
    target: str
    value: Setting | None = None
    description: str = ""


class DraftNotDone(Model):
    condition: str
    reason: str


class PlanDraft(Model):
    """An experiment plan for the research idea."""

    task: str
    search_space: list[Range]
    arms: list[DraftArm] = Field(default_factory=list)
    code_changes: list[DraftChange] = Field(default_factory=list)
    conditions: dict[str, Setting] = Field(default_factory=dict)
    samplers: list[SamplerName] = Field(default_factory=lambda: ["tpe"], min_length=1)
    pruner: PrunerName = "median"
    trials: int = Field(default=20, ge=1, le=10_000)
    seeds: int = Field(default=3, ge=1, le=50)
    compression: Compression | None = None
    secondary: list[str] = Field(default_factory=list)
    margin: float | None = None
    equivalence: bool = False
    head_to_head: list[list[str]] = Field(default_factory=list)
    not_done: list[DraftNotDone] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def _range(param: SearchParam) -> Range:
    return Range(name=param.name, low=param.low, high=param.high, log=param.log, choices=param.choices)


def draft_of(plan: ExperimentPlan) -> dict[str, Any]:
    """A plan as the draft a model would write, without the fields left at their defaults or the planner's
    notes (the model would copy them into its answer), as JSON-ready data."""
    draft = PlanDraft(
        task=plan.task,
        search_space=[_range(p) for p in plan.search_space],
        arms=[
            DraftArm(
                name=a.name, role=a.role, label=a.label, fixed=a.fixed, search=[_range(p) for p in a.search]
            )
            for a in plan.arms
        ],
        code_changes=[
            DraftChange(kind=c.kind, target=c.target, value=c.value, description=c.description)
            for c in plan.code_changes
        ],
        conditions=plan.conditions,
        samplers=plan.samplers,
        pruner=plan.pruner,
        trials=plan.budget.trials,
        seeds=plan.budget.seeds,
        compression=plan.compression,
        secondary=[o.name for o in plan.secondary],
        margin=None if plan.margin is None else plan.margin.value or 0.0,
        equivalence=plan.margin is not None and plan.margin.test == "equivalence",
        head_to_head=[[h.first, h.second] for h in plan.head_to_head],
        not_done=[
            DraftNotDone(condition=n.condition, reason=n.reason)
            for n in plan.not_done
            if not coverage.added(n)  # the coverage check adds these again to whatever plan comes back
        ],
    )
    return draft.model_dump(mode="json", exclude_defaults=True, exclude={"notes"}) | {"task": plan.task}


def mend(
    draft: PlanDraft, spec: Task, fixed_task: str | None, base: ExperimentPlan | None = None
) -> tuple[PlanDraft, list[str]]:
    """The draft with what the rules can fix themselves fixed, and a note for each fix; `base`, the offline
    plan for the same idea, lends its shared search space to a draft that searches nothing."""
    fixes: list[str] = []
    draft = draft.model_copy(deep=True)
    if fixed_task is not None and draft.task != fixed_task:
        fixes.append(f"task {draft.task!r} replaced by {fixed_task!r}, the task given with --task")
        draft.task = fixed_task
    defaults = spec.defaults
    for change in draft.code_changes:
        addable = priors.ADDABLE.get(change.target)
        if change.kind == "set_default" and change.target not in defaults and addable:
            fixes.append(f"set_default {change.target} became {addable}: the script has no {change.target}")
            change.kind = addable  # type: ignore[assignment]
    added = {c.target for c in draft.code_changes if c.kind not in ("set_default", "free_form")}
    used = [p.name for p in draft.search_space]
    for arm in draft.arms:
        used += [*arm.fixed, *(p.name for p in arm.search)]
    for name in dict.fromkeys(used):
        if name not in defaults and name not in added and name in priors.ADDABLE:
            kind = priors.ADDABLE[name]
            draft.code_changes.append(
                DraftChange(kind=kind, target=name, description=f"add `{name}` to the hyperparameter block")
            )
            added.add(name)
            fixes.append(f"{name} is not in {spec.name}'s script, so the plan adds it with {kind}")
    for key in [k for k in draft.conditions if k not in defaults]:
        value = draft.conditions.pop(key)
        if key == CAP and not any(c.target == CAP for c in draft.code_changes):
            draft.code_changes.append(DraftChange(kind="limit_train_examples", target=CAP, value=value))
            fixes.append(
                f"{spec.name}'s script has no {CAP}, so the cap of {value} is a limit_train_examples change"
            )
            continue
        reason = f"{spec.name}'s script has no {key} setting; it trains on {spec.data}"
        draft.not_done.append(DraftNotDone(condition=f"{key} {value}", reason=reason))
        fixes.append(f"condition {key} = {value!r} moved to not_done: {reason}")
    searched = {p.name for p in draft.search_space}
    lone = draft.arms[0] if len(draft.arms) == 1 else None
    if lone and lone.role == "treatment" and not lone.fixed and {p.name for p in lone.search} <= searched:
        fixes.append(f"arm {lone.name!r} only searched what every arm searches, so the plan has no arms")
        draft.arms = []
    defined = {n for arm in draft.arms for n in [*arm.fixed, *(p.name for p in arm.search)]}
    shared = [p for p in draft.search_space if p.name not in defined]
    if len(shared) < len(draft.search_space):
        names = sorted({p.name for p in draft.search_space} & defined)
        fixes.append(f"{', '.join(names)} left the shared search space: the arms define it")
        draft.search_space = shared
    if not draft.search_space and base is not None and base.task == spec.name:
        lent = [_range(p) for p in base.search_space if p.name not in defined]
        if lent:
            draft.search_space = lent
            fixes.append(
                f"nothing was searched, so every arm tunes {', '.join(p.name for p in lent)} as the rules would"
            )
    for param in [*draft.search_space, *(p for arm in draft.arms for p in arm.search)]:
        if param.low is not None and param.high is not None and param.low > param.high:
            param.low, param.high = param.high, param.low
            fixes.append(f"{param.name}: low and high swapped")
        if param.log and (param.low is None or param.low <= 0):
            param.log = False
            fixes.append(f"{param.name}: a log scale needs low > 0, so the range is linear")
    return draft, fixes


def _param(spec: Task, r: Range, where: str) -> SearchParam:
    """The draft's range as a search parameter whose kind suits the script's default (or the range the task or
    the priors have for it, where the draft gives none)."""
    default = spec.defaults.get(r.name)
    known = offline.prior(spec, r.name) if r.name in spec.defaults else priors.GENERIC_PRIORS.get(r.name)
    if r.choices is None and (r.low is None or r.high is None):
        if isinstance(default, bool) and known is None:
            return SearchParam(name=r.name, kind="categorical", choices=[False, True])
        if known is None:
            raise PlanInvalid(
                [f"{where}[{r.name}]: give low and high, or choices (no range is known for it)"]
            )
        return known.model_copy(update={"name": r.name})
    if r.choices is not None:
        return SearchParam(name=r.name, kind="categorical", choices=r.choices)
    whole = isinstance(default, int) and not isinstance(default, bool)
    if default is None and known is not None:
        whole = known.kind == "int"
    low, high = (math.floor(r.low), math.ceil(r.high)) if whole else (r.low, r.high)  # type: ignore[arg-type]
    return SearchParam(name=r.name, kind="int" if whole else "float", low=low, high=high, log=r.log)


def _params(spec: Task, ranges: list[Range], where: str, errors: list[str]) -> list[SearchParam]:
    out = []
    for r in ranges:
        try:
            out.append(_param(spec, r, where))
        except PlanInvalid as exc:
            errors += exc.errors
        except ValidationError as exc:  # the range's own check, which names search_space[name]
            arm = "" if where == "search_space" else f"{where.rsplit('.', 1)[0]}: "
            errors += [arm + e.removeprefix("answer: ") for e in errors_of(exc)]
    return out


def _arm_name(name: str) -> str:
    return _ARM_NAME.sub("-", name.strip().lower()).strip("-_")[:40] or "arm"


def expand(
    draft: PlanDraft,
    idea: str,
    spec: Task,
    settings: Settings,
    planner: str,
    base: ExperimentPlan | None = None,
    fixed_task: str | None = None,
) -> ExperimentPlan:
    """The whole plan for a draft: mended, its ranges typed, its phases and texts filled in as the offline
    planner fills them; `base` (the offline plan for the same idea) lends the budget's wall-clock and workers.
    PlanInvalid lists what cannot be mended, for the model to fix; the plan rules are checked after this."""
    draft, fixes = mend(draft, spec, fixed_task, base)
    errors: list[str] = []
    space = _params(spec, draft.search_space, "search_space", errors)
    arms = []
    for a in draft.arms:
        name = _arm_name(a.name)
        if name != a.name:
            fixes.append(f"arm {a.name!r} named {name!r}")
        search = _params(spec, a.search, f"arms[{name}].search", errors)
        label = a.label or name.replace("-", " ")
        technique = label if a.role == "treatment" else ""
        arms.append(
            Arm(name=name, role=a.role, label=label, technique=technique, fixed=a.fixed, search=search)
        )
    if errors:
        raise PlanInvalid(errors)
    secondary = []
    for name in dict.fromkeys(draft.secondary):
        if name in get_args(SecondaryName):
            secondary.append(SecondaryObjective(name=name))  # type: ignore[arg-type]
        else:
            fixes.append(f"secondary {name!r} dropped: one of {', '.join(get_args(SecondaryName))}")
    margin = None
    if draft.margin is not None or draft.equivalence:
        test = "equivalence" if draft.equivalence else "non_inferiority"
        margin = Margin(test=test, value=abs(draft.margin) if draft.margin else None)  # 0: the noise floor
    pairs = []
    for pair in draft.head_to_head:
        names = [_arm_name(n) for n in pair]
        if (
            len(names) == 2
            and set(names) <= {a.name for a in arms if a.role == "treatment"}
            and len(set(names)) == 2
        ):
            pairs.append(HeadToHead(first=names[0], second=names[1]))
        else:
            fixes.append(f"head_to_head {pair} dropped: it must name two treatment arms")
    budget = Budget(
        trials=draft.trials,
        seeds=draft.seeds,
        timeout_s=base.budget.timeout_s if base else None,
        workers=base.budget.workers if base else 1,
        trial_timeout_s=settings.trial_timeout_s,
    )
    steps = offline.phases(budget, draft.pruner, spec, arms=bool(arms))
    budget = budget.model_copy(update={"rounds": max(1, sum(p.trials > 0 for p in steps))})
    reference = ["random"] if "random" in draft.samplers and not arms else []
    try:
        return ExperimentPlan(
            title=offline.title(idea),
            idea=idea,
            objective=_objective(spec, space, arms, draft),
            hypothesis=_hypothesis(spec, space, arms),
            task=spec.name,
            search_space=space,
            metric=spec.metric,
            baselines=["defaults", *reference],
            samplers=draft.samplers,
            pruner=draft.pruner,
            budget=budget,
            phases=steps,
            code_changes=[CodeChangeIntent(**c.model_dump()) for c in draft.code_changes],
            arms=arms,
            conditions=draft.conditions,
            compression=draft.compression,
            secondary=secondary,
            margin=margin,
            head_to_head=pairs,
            not_done=[NotDone(condition=n.condition, reason=n.reason) for n in draft.not_done],
            notes=[*draft.notes, *(f"mended by the planner: {fix}" for fix in fixes)],
            planner=planner,
        )
    except ValidationError as exc:
        raise PlanInvalid(errors_of(exc)) from None


def _objective(spec: Task, space: list[SearchParam], arms: list[Arm], draft: PlanDraft) -> str:
    verb = "Maximise" if spec.metric.direction == "maximize" else "Minimise"
    tuned = ", ".join(p.name for p in space) or "nothing shared"
    if arms:
        compared = " vs ".join(f"{a.title} ({a.describe()})" for a in arms)
        return (
            f"Compare {compared} on {spec.model}, each arm tuning {tuned} with {draft.trials} trials of "
            f"{', '.join(draft.samplers)} search on validation {spec.metric.name}, then every arm re-run over "
            f"{draft.seeds} seeds on the held-out split at the same shared values."
        )
    return (
        f"{verb} validation {spec.metric.name} of the {spec.model} on {spec.data} by tuning {tuned}, with "
        f"{draft.trials} trials of {', '.join(draft.samplers)} search each."
    )


def _hypothesis(spec: Task, space: list[SearchParam], arms: list[Arm]) -> str:
    better = "higher" if spec.metric.direction == "maximize" else "lower"
    control = next((a for a in arms if a.role == "control"), None)
    if control is not None:
        claims = [
            f"{a.title} gives a {better} held-out {spec.metric.name} than {control.title}"
            for a in arms
            if a.role == "treatment"
        ]
        return "; ".join(claims) + ", each tuned with the same budget, by more than the seed-to-seed noise."
    subject = f"Tuning {', '.join(p.name for p in space)}" if space else "A tuned configuration"
    return (
        f"{subject} gives a {better} held-out {spec.metric.name} than the script's defaults, by more than the "
        "seed-to-seed noise."
    )
