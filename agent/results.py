"""results.json of `research-loop run`: what the analyst found, each round's studies, each arm's selection
and comparison, and the ablation, as the loop writes them and the report and review read them back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agent.schemas import ArmRole, ExperimentPlan, Setting
from experiments.records import Comparison, Cost, Model, StudyResult, TrialRecord

ArmVerdict = Literal["better", "no detectable difference", "worse", "not measurable", "failed"]
MarginVerdict = Literal["non-inferior", "inferior", "equivalent", "not equivalent", "inconclusive"]
PairKind = Literal["vs control", "head-to-head"]
FindingKind = Literal["importance", "edge", "under_explored", "pruning_bias", "no_gain", "identical_metrics"]


class Finding(Model):
    """One thing the analyst read off a finished study, with the numbers that support it."""

    kind: FindingKind
    param: str | None = None
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    arm: str = Field(default="", description="the plan arm whose study it was read off; empty outside arms")
    study: str = Field(default="", description="the study it was read off")


class RoundResult(Model):
    """One round of the loop: its phase, the studies it ran (one per strategy), what was found, what changed."""

    round: int = Field(ge=1)
    phase: str
    data_fraction: float = 1.0
    studies: list[StudyResult]
    findings: list[Finding] = Field(default_factory=list)
    revision: list[str] = Field(
        default_factory=list, description="changes made to the plan for the next round"
    )


class ArmResult(Model):
    """One arm after tuning: its selected configuration and that configuration re-run over the seeds."""

    name: str
    role: ArmRole
    label: str = ""
    best: TrialRecord | None = Field(default=None, description="chosen on validation among the arm's trials")
    final: list[TrialRecord] = Field(default_factory=list, description="best re-run over seeds, held-out")
    strategy: str | None = Field(default=None, description="the sampler whose study found `best`")
    trials: int = Field(default=0, description="tuning trials the arm ran (its effort)")


class SecondaryComparison(Model):
    """One secondary objective (training time, epochs run, size, latency) of the same pair of arms, from the
    measurements stored with each run, paired by seed and Holm-corrected across the pairs."""

    name: str
    pair: str = Field(description="what is compared, first vs second")
    comparison: Comparison | None = None
    p_adjusted: float | None = None
    verdict: ArmVerdict
    loaded: str = Field(default="", description="why a timing may be slow: the machine was loaded")
    statement: str
    rule: str


class MarginTest(Model):
    """A treatment against its reference within a margin: non-inferiority (one-sided) or equivalence (two
    one-sided tests), Holm-corrected across treatments."""

    test: Literal["non_inferiority", "equivalence"]
    pair: str = Field(description="what is compared, treatment vs reference")
    margin: float
    stated: bool = Field(description="the idea stated it; False: the noise floor, the default margin")
    difference: float | None = Field(
        default=None, description="mean paired difference, treatment - reference"
    )
    low: float | None = Field(default=None, description="one-sided lower bound of the difference")
    high: float | None = Field(default=None, description="one-sided upper bound of the difference")
    level: float = Field(default=0.95, description="the confidence of each one-sided bound")
    p_value: float | None = Field(default=None, description="of the claim: non-inferior, or equivalent")
    p_adjusted: float | None = None
    verdict: MarginVerdict
    statement: str
    rule: str


class ArmComparison(Model):
    """A treatment against the control (or, head-to-head, against another treatment), paired by seed on the
    held-out split, Holm-corrected across every pair the run compares."""

    treatment: str
    control: str
    kind: PairKind = "vs control"
    comparison: Comparison | None = None
    p_adjusted: float | None = None
    verdict: ArmVerdict
    statement: str
    detectable: str = Field(
        default="", description="under no detectable difference: the smallest difference the seeds could see"
    )
    margin: MarginTest | None = None
    secondary: list[SecondaryComparison] = Field(default_factory=list)


class AblationRow(Model):
    """The candidate with one of its differences reverted, re-run over the same seeds on the held-out split."""

    param: str
    reference: Setting | None = Field(description="the value the variant reverts to")
    candidate: Setting | None
    runs: list[TrialRecord] = Field(default_factory=list)


class Ablation(Model):
    """Leave-one-out of the patch's differences: which one made the difference."""

    against: str = Field(description="what the reverted values come from, e.g. the script's defaults")
    rows: list[AblationRow] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="differences not ablated (over the cap)")


class PatchChange(Model):
    """One value the patch's candidate changes from the patched script's defaults, and whether the final patch
    writes it: only what the evidence supports goes into the script (agent.analyse.evidence)."""

    param: str
    reference: Setting | None = Field(description="the patched script's default, which stays when left out")
    candidate: Setting | None
    carried: bool
    reason: str


class RunResult(Model):
    """results.json of `research-loop run`: every round, then the finalists on the held-out split."""

    run_id: str
    plan: ExperimentPlan
    rounds: list[RoundResult]
    best: TrialRecord | None = None
    best_strategy: str | None = None
    best_arm: str | None = Field(default=None, description="with several arms, the one the patch carries")
    baseline: list[TrialRecord] = Field(default_factory=list)
    final: list[TrialRecord] = Field(default_factory=list)
    comparison: Comparison | None = None
    validation: Comparison | None = None
    arms: list[ArmResult] = Field(default_factory=list)
    comparisons: list[ArmComparison] = Field(default_factory=list)
    compared_at: dict[str, Setting] = Field(
        default_factory=dict,
        description="the shared values every arm was compared at; empty: each arm at its own best",
    )
    ablation: Ablation | None = None
    patch_changes: list[PatchChange] = Field(
        default_factory=list, description="the candidate's changes, each carried by the final patch or not"
    )
    arm_variants: dict[str, dict[str, Setting]] = Field(
        default_factory=dict, description="per arm, the values `approve --arm` writes instead of the patch"
    )
    seeds_used: int = Field(default=0, description="seeds of the final comparison")
    looks: int = Field(default=1, description="sequential looks the comparison is corrected for")
    stopping: str = Field(default="", description="why the final comparison has this many seeds")
    cost: Cost = Field(default_factory=Cost)
    stop_reason: str = ""
