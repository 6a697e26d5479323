"""The run's budget: the command line's overrides within the configured caps, the trials each round gets,
and the reasons the rounds stop before the last.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from agent.config import Settings
from agent.results import RoundResult
from agent.schemas import Budget, ExperimentPlan, Phase
from experiments import command

if TYPE_CHECKING:
    from agent.loop.drive import Loop, LoopOptions

STALL_ROUNDS = 2


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
    phases = ran_phases(rescale(plan.phases, budget.trials) if options.trials else plan.phases, budget.rounds)
    phases = [
        p.model_copy(update={"description": restate(p.description, plan.budget, budget)}) for p in phases
    ]
    text = {k: restate(getattr(plan, k), plan.budget, budget) for k in ("objective", "hypothesis")}
    return plan.model_copy(update={"budget": budget, "phases": phases, **text})


def ran_phases(phases: list[Phase], rounds: int) -> list[Phase]:
    """The phases as `round_shape` runs them: an explore phase needs a round and trials of its own, so with one
    round (or none of its trials left) its trials go to the optimise phase and no phase is shown that never
    runs."""
    explore = next((p for p in phases if p.name == "explore"), None)
    if (
        explore is None
        or (rounds > 1 and explore.trials > 0)
        or not any(p.name == "optimise" for p in phases)
    ):
        return phases
    return [
        p.model_copy(update={"trials": p.trials + explore.trials}) if p.name == "optimise" else p
        for p in phases
        if p is not explore
    ]


def restate(text: str, old: Budget, new: Budget) -> str:
    """The plan's sentences with the budget's counts as overridden ("30 trials" -> "6 trials"), so that no
    sentence states a count the run did not use."""
    for field, noun in (("trials", "trial"), ("seeds", "seed")):
        before, after = getattr(old, field), getattr(new, field)
        if before != after:
            text = re.sub(rf"\b{before} {noun}s?\b", f"{after} {noun}{'s' if after != 1 else ''}", text)
    return text


def hold_fixed(plan: ExperimentPlan, fixed: dict[str, Any]) -> ExperimentPlan:
    """What the command sets (`--epochs 2`) as conditions of every arm, seed and the defaults reference: out
    of every search and arm, listed in the plan's notes, and never a change `approve` writes (a condition
    never differs from the reference, agent.analyse.evidence)."""
    if not fixed:
        return plan
    arms = [
        a.model_copy(
            update={
                "fixed": {k: v for k, v in a.fixed.items() if k not in fixed},
                "search": [p for p in a.search if p.name not in fixed],
            }
        )
        for a in plan.arms
    ]
    return plan.model_copy(
        update={
            "conditions": {**plan.conditions, **fixed},
            "search_space": [p for p in plan.search_space if p.name not in fixed],
            "arms": arms,
            "notes": [
                *plan.notes,
                *(
                    f"{n}, set by the command: held fixed for every arm and seed"
                    for n in command.describe(fixed)
                ),
            ],
        }
    )


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
