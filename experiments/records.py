"""The types trials and studies are stored as: the contract between `experiments/` and `agent/`.

`experiments/` writes and reads these; `agent/` builds plans and reports around them. They live below both
so that the runner never imports the agent: a study can run, and be read back, without any planning code.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["maximize", "minimize"]
TrialStateName = Literal["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]


class Model(BaseModel):
    """Strict base: an unknown field in a plan or an LLM answer is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class SearchParam(Model):
    """One hyperparameter's range; maps 1:1 onto an Optuna distribution."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[bool | int | float | str] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> SearchParam:
        where = f"search_space[{self.name}]"
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"{where}.choices: a categorical parameter needs at least one choice")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"{where}.choices: duplicate choices {self.choices}")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError(f"{where}: low/high/log/step do not apply to a categorical parameter")
            return self
        if self.choices is not None:
            raise ValueError(f"{where}.choices: only categorical parameters take choices")
        if self.low is None or self.high is None:
            raise ValueError(f"{where}: a {self.kind} parameter needs both low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"{where}: low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"{where}: low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"{where}.log: a log scale needs low > 0 (got low={self.low})")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"{where}.step: must be positive (got {self.step})")
            if self.log:
                raise ValueError(f"{where}: step and log cannot be combined")
        if self.kind == "int":
            for field in ("low", "high", "step"):
                value = getattr(self, field)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"{where}.{field}: an int parameter needs whole numbers ({value})")
        return self

    def contains(self, value: Any) -> bool:
        """Whether a value lies in this range (used to check defaults and warm starts)."""
        if self.kind == "categorical":
            return value in (self.choices or [])
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices or [])) + "}"
        scale = " (log)" if self.log else ""
        step = f" step {self.step:g}" if self.step else ""
        return f"{self.low:g} .. {self.high:g}{scale}{step}"


class Metric(Model):
    name: str = Field(min_length=1)
    direction: Direction


# The compressed model's size in bytes, as experiments.compression records it: the second objective of a
# multi-objective study (Compression.objective = "multi").
MODEL_SIZE = Metric(name="size_bytes", direction="minimize")


class Compression(Model):
    """An evaluation transform: each run's trained model is compressed before its final evaluation, so the study
    tunes (and the report compares) the compressed model's metric. The uncompressed metrics, the model's size in
    bytes and its CPU latency per batch are recorded with it."""

    kind: Literal["int8_dynamic", "magnitude_pruning"] = Field(
        description="int8_dynamic: post-training dynamic int8 quantization of the Linear and LSTM layers "
        "(torch.ao.quantization.quantize_dynamic); magnitude_pruning: global magnitude pruning of the "
        "Linear and Conv weights at `sparsity` (torch.nn.utils.prune)"
    )
    sparsity: float | None = Field(
        default=None, gt=0, lt=1, description="magnitude_pruning's share of weights zeroed (default 0.5)"
    )
    finetune_epochs: int = Field(
        default=0,
        ge=0,
        le=10,
        description="magnitude_pruning: epochs of training on the training split after pruning, the zeroed "
        "weights held at zero (Adam at learning rate 1e-3, batches of 64, cross-entropy), so that the kept "
        "weights make up for the removed ones; 0: none",
    )
    objective: Literal["metric", "multi"] = Field(
        default="metric",
        description="metric: the study tunes the compressed model's metric; multi: a multi-objective study "
        "of that metric against the compressed model's size in bytes (minimized), whose Pareto front the "
        "report draws; the size varies only where the search space holds size-changing hyperparameters",
    )

    @model_validator(mode="after")
    def _sparsity_for_pruning(self) -> Compression:
        if self.kind == "magnitude_pruning" and self.sparsity is None:
            self.sparsity = 0.5
        if self.kind != "magnitude_pruning" and self.sparsity is not None:
            raise ValueError(f"compression.sparsity: only magnitude_pruning takes one, not {self.kind}")
        if self.kind != "magnitude_pruning" and self.finetune_epochs:
            raise ValueError(
                f"compression.finetune_epochs: only magnitude_pruning fine-tunes, not {self.kind}"
            )
        return self

    def objectives(self, metric: Metric) -> list[Metric]:
        """What a study under this compression optimizes, in order: the task's metric first, so that
        selection and everything after it read value 0 whether or not the size is a second objective."""
        return [metric, MODEL_SIZE] if self.objective == "multi" else [metric]

    def describe(self) -> str:
        if self.kind == "int8_dynamic":
            return "int8 dynamic quantization of the Linear and LSTM layers"
        pruning = f"global magnitude pruning of the Linear and Conv weights at {self.sparsity:.0%} sparsity"
        if not self.finetune_epochs:
            return pruning
        epochs = "one epoch" if self.finetune_epochs == 1 else f"{self.finetune_epochs} epochs"
        return f"{pruning}, then {epochs} of fine-tuning with the zeroed weights held at zero"


# What the worker measures of every run beside its metrics (TrialRecord.measured): the script's wall time in
# seconds (training and its evaluations), the epochs it reported, and at a held-out evaluation the judged
# model's bytes and CPU latency per batch (median of repeated timings, with their interquartile range); the
# machine's 1-minute load average and cores when the run ended say whether the timings shared the machine.
MEASURED = ("train_time_s", "epochs_run", "size_bytes", "latency_ms")
SPREAD = "latency_spread_ms"
LOAD = "load_1m"
CORES = "cores"


class TrialRecord(Model):
    number: int
    state: TrialStateName
    params: dict[str, Any] = Field(default_factory=dict)
    value: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    intermediate: dict[int, float] = Field(default_factory=dict)
    curve: list[dict[str, float]] = Field(
        default_factory=list,
        description="per epoch as the script reported it: epoch, train_loss, and the validation metrics",
    )
    confusion: list[list[int]] = Field(
        default_factory=list, description="held-out confusion matrix, rows true class, columns predicted"
    )
    measured: dict[str, float] = Field(
        default_factory=dict,
        description="what the worker measured of the run beside the script's metrics (MEASURED): its wall "
        "time and epochs, and at a held-out evaluation the model's size and CPU latency",
    )
    seed: int | None = None
    duration_s: float | None = None
    error: str | None = None
    retry_of: int | None = None

    def reading(self, key: str) -> float | None:
        """A metric the script reported under `key`, else a measurement the worker took of its run."""
        value = self.metrics.get(key, self.measured.get(key))
        return None if value is None else float(value)


class Comparison(Model):
    """Candidate against baseline over paired seeds, on one split."""

    metric: str
    direction: Direction
    split: Literal["validation", "test"]
    candidate_mean: float
    candidate_std: float
    baseline_mean: float
    baseline_std: float
    difference: float
    difference_std: float | None = Field(
        default=None, description="std of the paired differences across seeds; None with one seed"
    )
    ci_low: float | None = Field(description="interval of the difference at `ci_level`; None with one seed")
    ci_high: float | None
    p_value: float | None
    noise_floor: float
    n_seeds: int
    looks: int = Field(
        default=1,
        ge=1,
        description="sequential looks at the seeds (`--seeds auto`): the test is at alpha / looks and the "
        "interval at 1 - 0.05 / looks (Bonferroni over looks)",
    )

    @property
    def ci_level(self) -> float:
        return 1 - 0.05 / self.looks

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies on one side of 0. An interval of zero width excludes nothing: it comes
        from differences that did not vary over the seeds, which says nothing about how sure the sign is."""
        if self.ci_low is None or self.ci_high is None or self.ci_high <= self.ci_low:
            return False
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def seeds_identical(self) -> bool:
        """Every seed gave the baseline one value and the candidate one value, to the last digit (the std is
        computed exactly, so it is 0 only then): the seed does not reach the script, and the seeds are the
        same run repeated, not a sample to measure noise from."""
        return self.n_seeds > 1 and self.candidate_std == 0.0 and self.baseline_std == 0.0

    def ci_text(self) -> str:
        """How every report writes the interval: its level, then its ends."""
        if self.ci_low is None:
            return "no interval (one seed)"
        return f"{100 * self.ci_level:.4g}% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"


class Cost(Model):
    wall_s: float = 0.0
    trials: int = 0
    device: str = "cpu"
    device_name: str = ""
    tokens: int = 0
    usd: float | None = None


class StudyResult(Model):
    study_name: str
    arm: str = Field(default="", description="the plan arm this study tuned; empty outside a run")
    storage: str = Field(description="storage URL with any password removed")
    task: str
    sampler: str
    pruner: str
    metric: Metric
    search_space: list[SearchParam]
    trials: list[TrialRecord]
    best: TrialRecord | None = None
    baseline: list[TrialRecord] = Field(default_factory=list, description="defaults, unmodified script")
    final: list[TrialRecord] = Field(default_factory=list, description="best candidate re-run over seeds")
    comparison: Comparison | None = Field(default=None, description="on the held-out test split")
    validation: Comparison | None = Field(default=None, description="the same runs on validation")
    cost: Cost = Field(default_factory=Cost)
    importances: dict[str, float] = Field(default_factory=dict)
    pareto: list[int] = Field(
        default_factory=list,
        description="the numbers of the trials on a multi-objective study's Pareto front, as its storage has "
        "it; empty for a single objective",
    )

    def counts(self) -> dict[str, int]:
        out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
        for t in self.trials:
            out[t.state] += 1
        return out
