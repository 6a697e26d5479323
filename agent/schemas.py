"""The data types that pass between stages: the plan, the patch, the run folder, the report and the decision.
What a run found (results.json) is typed in `agent.results`.

Everyone imports this module and it imports nothing of ours, so that `experiments/` can speak the same types
as `agent/` without depending on the agent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from experiments.records import Compression, Metric, Model, SearchParam

SamplerName = Literal["random", "grid", "tpe", "gp", "cmaes", "qmc", "default"]
PrunerName = Literal["none", "median", "hyperband"]
Conclusion = Literal["improved", "no significant change", "worse", "not measurable", "failed"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Budget(Model):
    trials: int = Field(default=20, ge=1, le=10_000)
    timeout_s: float | None = Field(default=None, gt=0)
    seeds: int = Field(default=3, ge=1, le=50)
    workers: int = Field(default=1, ge=1, le=256)
    rounds: int = Field(default=1, ge=1, le=20)
    tokens: int | None = Field(default=None, ge=1)
    trial_timeout_s: float = Field(default=600, gt=0)


class Phase(Model):
    """One step of the execution plan (explore on a subset, optimise on all data, validate held-out)."""

    name: str
    description: str
    data_fraction: float = Field(default=1.0, gt=0, le=1)
    trials: int = Field(default=0, ge=0)


CodeChangeKind = Literal[
    "set_default",
    "expose_constant",
    "add_dropout",
    "add_label_smoothing",
    "change_optimizer",
    "change_schedule",
    "change_activation",
    "add_weight_decay",
    "early_stopping",
    "limit_train_examples",
    "free_form",
]


class CodeChangeIntent(Model):
    """What the plan wants changed in the training script; the coder turns it into exact edits."""

    kind: CodeChangeKind
    target: str = Field(
        description="set_default: the block's hyperparameter; the other structured kinds: the name of the "
        "hyperparameter the change adds to the block"
    )
    value: bool | int | float | str | None = None
    description: str = ""
    location: str | None = Field(
        default=None,
        description="where in the script, when the coder cannot find it alone: add_dropout's layer "
        "(`attr` called in forward, or `container.index`; default: before the output layer), "
        "expose_constant's constant (`NAME`) or literal keyword argument (`function.keyword`), "
        "change_activation's ReLU layer (`attr` or `container.index`; default: every ReLU), "
        "limit_train_examples' training-split variable (default: the first name holding 'train')",
    )


class TokenUsage(Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    calls: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        cost = None
        if self.cost_usd is not None or other.cost_usd is not None:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=cost,
            calls=self.calls + other.calls,
        )


Setting = bool | int | float | str
ArmRole = Literal["control", "treatment"]


class Arm(Model):
    """One condition of a controlled comparison: what is fixed or searched in it, on top of the shared space.

    Arms differ only in `fixed` and `search`; everything else (the shared search space, trials, sampler,
    pruner, seeds, data) is the same in every arm, so a difference between arms is the difference they define.
    """

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    role: ArmRole
    label: str = Field(default="", description="how the report names the arm, e.g. 'no dropout'")
    technique: str = Field(
        default="", description="what the arm adds, e.g. 'dropout'; empty for a control that lacks it"
    )
    fixed: dict[str, Setting] = Field(default_factory=dict, description="hyperparameters fixed in this arm")
    search: list[SearchParam] = Field(
        default_factory=list, description="hyperparameters searched only in this arm"
    )

    @property
    def title(self) -> str:
        return self.label or self.name

    def describe(self) -> str:
        """The arm's definition in one line: its fixed values and its own searched ranges."""
        parts = [f"{k} = {v!r}" for k, v in self.fixed.items()]
        parts += [f"{p.name} searched in {p.describe()}" for p in self.search]
        return ", ".join(parts) or "the script's current settings"


class NotDone(Model):
    """A condition the idea names that the plan does not honour: said on the first screen, never dropped."""

    condition: str
    reason: str
    remedy: str = Field(default="", description="what would make it possible")


SecondaryName = Literal["train_time_s", "epochs_run", "size_bytes", "latency_ms"]
CoverageKind = Literal[
    "clause", "number", "dataset", "technique", "metric", "objective", "constraint", "setting"
]


class SecondaryObjective(Model):
    """A second thing the idea asks about beside the metric ("faster", "smaller", "saves time"): measured for
    every final run and compared per arm with an interval, so the answer covers it too."""

    name: SecondaryName
    direction: Literal["minimize", "maximize"] = "minimize"
    asked_by: str = Field(default="", description="the idea's words that ask for it")


class Margin(Model):
    """A margin the idea states ("within half a point", "without losing accuracy", "the same as"): the
    treatment is tested against the control for non-inferiority (equivalence: two one-sided tests)."""

    test: Literal["non_inferiority", "equivalence"] = "non_inferiority"
    value: float | None = Field(
        default=None, ge=0, description="in the metric's units; None: the run's noise floor is the margin"
    )
    asked_by: str = Field(default="", description="the idea's words that state it")


class HeadToHead(Model):
    """Two treatment arms the idea asks to compare with each other ("is X better than Y"), not only each
    with the control."""

    first: str
    second: str
    asked_by: str = Field(default="", description="the idea's words that ask for it")


class CoveragePart(Model):
    """One part of the idea and what honours it: a plan field, or a Not done entry saying why not. A plan
    accounts for every part, so nothing the idea asks can vanish between the idea and the first screen."""

    text: str = Field(description="the idea's words for this part")
    kind: CoverageKind
    honoured_by: str = Field(
        default="",
        description="the plan field that honours it, e.g. 'arms[dropout]', 'search_space[lr]', 'margin'",
    )
    not_done: str = Field(default="", description="why it is not honoured, when no field honours it")


class ExperimentPlan(Model):
    title: str = Field(min_length=1, max_length=200)
    idea: str
    objective: str
    hypothesis: str
    task: str
    datasets: list[str] = Field(default_factory=list)
    model: str = ""
    search_space: list[SearchParam]
    metric: Metric
    baselines: list[str] = Field(default_factory=lambda: ["defaults"])
    samplers: list[SamplerName] = Field(default_factory=lambda: ["default"], min_length=1)
    pruner: PrunerName = "median"
    budget: Budget = Field(default_factory=Budget)
    phases: list[Phase] = Field(default_factory=list)
    code_changes: list[CodeChangeIntent] = Field(default_factory=list)
    arms: list[Arm] = Field(
        default_factory=list,
        description="the conditions compared, each tuned with the same budget; empty: one tuned arm "
        "against the script's defaults",
    )
    conditions: dict[str, Setting] = Field(
        default_factory=dict,
        description="settings every arm and the defaults reference run with, e.g. the data set or a cap on "
        "training examples that the idea names",
    )
    compression: Compression | None = Field(
        default=None,
        description="compress every run's model before its final evaluation and judge the compressed model",
    )
    not_done: list[NotDone] = Field(
        default_factory=list, description="conditions the idea names that this plan does not honour, and why"
    )
    secondary: list[SecondaryObjective] = Field(
        default_factory=list,
        description="objectives beside the metric that the idea names (time, size, latency)",
    )
    margin: Margin | None = Field(
        default=None, description="a non-inferiority or equivalence margin the idea states"
    )
    head_to_head: list[HeadToHead] = Field(
        default_factory=list, description="pairs of treatment arms the idea asks to compare with each other"
    )
    coverage: list[CoveragePart] = Field(
        default_factory=list, description="the idea split into its parts, each with what honours it"
    )
    notes: list[str] = Field(
        default_factory=list, description="assumptions the planner made, e.g. which task it chose and why"
    )
    planner: str = Field(default="", description="who drafted the plan, e.g. 'offline-rules'")
    usage: TokenUsage = Field(default_factory=TokenUsage)

    @field_validator("search_space")
    @classmethod
    def _unique_names(cls, space: list[SearchParam]) -> list[SearchParam]:
        names = [p.name for p in space]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"search_space: duplicate parameter names {dupes}")
        return space

    @model_validator(mode="after")
    def _check_arms(self) -> ExperimentPlan:
        if not self.arms:
            if self.head_to_head:
                raise ValueError("head_to_head: a plan without arms has no treatments to compare")
            return self
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: duplicate arm names {names}")
        controls = [a.name for a in self.arms if a.role == "control"]
        if len(self.arms) == 1 and controls:
            raise ValueError("arms: a single arm is a treatment compared with the defaults, not a control")
        if len(self.arms) > 1 and len(controls) != 1:
            raise ValueError(f"arms: a comparison needs exactly one control arm (got {len(controls)})")
        shared = {p.name for p in self.search_space}
        for arm in self.arms:
            own = [p.name for p in arm.search]
            clash = sorted((shared | set(self.conditions)) & (set(arm.fixed) | set(own)))
            if clash:
                raise ValueError(
                    f"arms[{arm.name}]: {clash} are shared by every arm (search_space or conditions); an arm "
                    "may only fix or search what sets it apart"
                )
            both = sorted(set(arm.fixed) & set(own))
            if both:
                raise ValueError(f"arms[{arm.name}]: {both} are both fixed and searched")
        treatments = {a.name for a in self.arms if a.role == "treatment"}
        for pair in self.head_to_head:
            strangers = [n for n in (pair.first, pair.second) if n not in treatments]
            if strangers or pair.first == pair.second:
                raise ValueError(
                    f"head_to_head: {pair.first} vs {pair.second} must name two different treatment arms "
                    f"(the treatments: {', '.join(sorted(treatments)) or 'none'})"
                )
        return self

    @model_validator(mode="after")
    def _check_multi_objective(self) -> ExperimentPlan:
        if self.compression is None or self.compression.objective != "multi":
            return self
        if self.pruner != "none":
            raise ValueError(
                "pruner: a multi-objective study (compression.objective multi) cannot be pruned (Optuna's "
                "Trial.report is single-objective only); set pruner none"
            )
        if "cmaes" in self.samplers:
            raise ValueError(
                "samplers: cmaes cannot search a multi-objective study (compression.objective multi)"
            )
        return self

    def arm_list(self) -> list[Arm]:
        """The arms to run: the plan's, or one treatment (tuned against the defaults) when it names none."""
        return self.arms or [Arm(name="tuned", role="treatment", label="tuned")]

    def control(self) -> Arm | None:
        return next((a for a in self.arms if a.role == "control"), None)


class FileEdit(Model):
    """An exact search/replace on one file: `old` must occur exactly once."""

    path: str
    old: str
    new: str


class CheckResult(Model):
    name: str
    passed: bool
    detail: str = ""


class CodePatch(Model):
    edits: list[FileEdit] = Field(default_factory=list)
    diff: str = ""
    rationale: str = ""
    files: dict[str, str] = Field(default_factory=dict, description="edited files' full new text")
    checks: list[CheckResult] = Field(default_factory=list)
    sha256: str = ""

    @property
    def checks_passed(self) -> bool:
        return all(c.passed for c in self.checks)


RunStatus = Literal[
    "created", "running", "interrupted", "failed", "finished", "awaiting_approval", "approved", "rejected"
]


class RunInfo(Model):
    """run.json: what a run folder is, where it stopped, and how it was started."""

    run_id: str
    created: datetime = Field(default_factory=utcnow)
    command: list[str] = Field(default_factory=list)
    kind: Literal["study", "plan", "run"] = "study"
    status: RunStatus = "created"
    stage: str = "created"
    task: str | None = None
    idea: str | None = None
    storage: str = ""
    error: str | None = None
    sandbox: str = Field(
        default="", description="what isolation the run's task code got (experiments.sandbox)"
    )
    owner: str | None = Field(default=None, description="host:pid of the process driving the run")
    heartbeat: datetime | None = Field(default=None, description="when that process last said it was alive")


class Report(Model):
    run_id: str
    markdown: str
    html: str | None = None
    plots: list[str] = Field(default_factory=list)
    data: str = Field(default="", description="path of the JSON the report was rendered from")


class Decision(Model):
    run_id: str
    action: Literal["approve", "reject"]
    at: datetime = Field(default_factory=utcnow)
    reason: str = ""
    commit: str | None = None
    branch: str | None = None
    target: str | None = None
    arm: str | None = Field(
        default=None, description="the arm whose variant was applied instead of the patch"
    )
