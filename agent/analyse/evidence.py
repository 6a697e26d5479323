"""What the final patch carries: each of the candidate's changes only where the run's evidence supports it.

A search always lands somewhere, and the arm best on validation is as often picked by one seed's noise as by an
effect; writing its values into the script turns "no detectable effect of dropout" into a patch that sets
dropout. So an arm's defining change is carried only when that arm's verdict against the control is *better*,
a shared tuned value only when the ablation credits it (its contribution is in the metric's direction, p <
ALPHA and beyond the noise floor; a lone change is judged by the comparison with the defaults, which then is
that change alone), and every other value stays the script's own.

The experiment's conditions (a data set, a training-set cap, a compression used for measurement) are never
changes: `tuned_under` names them, so that the report and the patch's rationale say what the values were tuned
on, and `released` undoes a cap the patch's own code change added, so the script keeps its whole training set.
"""

from __future__ import annotations

from typing import Any

from agent.analyse.ablation import MAX_VARIANTS, contribution, differences
from agent.analyse.verdict import ALPHA, better, fmt, fmt_p, signed
from agent.plan.offline.priors import TRAIN_CAP_PARAM
from agent.results import ArmComparison, PatchChange, RunResult
from agent.schemas import Arm, ExperimentPlan
from experiments.records import Comparison


def credits(c: Comparison | None) -> bool:
    """Whether a held-out comparison supports a change: ahead, significant and beyond the noise floor, with
    seeds that reach the script (identical seeds give a zero-width interval that proves nothing)."""
    return (
        c is not None
        and not c.seeds_identical
        and c.p_value is not None
        and c.p_value * c.looks < ALPHA
        and abs(c.difference) > c.noise_floor
        and better(c.difference, 0.0, c.direction)
    )


def _evidence(c: Comparison | None) -> str:
    """The comparison's numbers, and what stops it from supporting the change."""
    if c is None:
        return "no seed has both runs"
    text = f"{signed(c.difference)} held-out {c.metric}, p = {fmt_p(c.p_value)}, noise floor {fmt(c.noise_floor)}"
    if credits(c):
        return text
    if c.seeds_identical:
        return f"{text}: every seed gave the same values, so the seed does not reach the script"
    if not better(c.difference, 0.0, c.direction):
        return f"{text}: no gain"
    significant = c.p_value is not None and c.p_value * c.looks < ALPHA
    return f"{text}: {'within the noise floor' if significant else f'not significant at {ALPHA:g}'}"


def patch_changes(result: RunResult, reference: dict[str, Any]) -> list[PatchChange]:
    """Every value the candidate changes from `reference` (the patched script's defaults under the plan's
    conditions), each marked carried or not with the reason."""
    if result.best is None:
        return []
    arm = next((a for a in result.plan.arm_list() if a.name == result.best_arm), None)
    own = [*arm.fixed, *(p.name for p in arm.search)] if arm else []
    answer = next(
        (c for c in result.comparisons if c.treatment == result.best_arm and c.kind == "vs control"), None
    )
    changed = differences(result.best.params, reference, own)
    rows = {r.param: r for r in (result.ablation.rows if result.ablation else [])}
    out = []
    for k in changed:
        if k in own:
            carried, reason = _arm_reason(arm, answer)  # type: ignore[arg-type]
        elif k in rows:
            c = contribution(result.final, rows[k], result.plan.metric)
            carried = credits(c)
            reason = f"the ablation {'credits' if carried else 'does not credit'} it: {_evidence(c)}"
        elif len(changed) == 1:
            carried = credits(result.comparison)
            reason = (
                f"the only change, judged by the comparison with the defaults: {_evidence(result.comparison)}"
            )
        else:
            carried, reason = (
                False,
                f"not ablated (over the cap of {MAX_VARIANTS}), so nothing credits it alone",
            )
        out.append(
            PatchChange(
                param=k,
                reference=reference[k],
                candidate=result.best.params[k],
                carried=carried,
                reason=reason,
            )
        )
    return out + _other_arms(result, reference, {c.param for c in out})


def _other_arms(result: RunResult, reference: dict[str, Any], said: set[str]) -> list[PatchChange]:
    """The treatments the patch does not carry, each defining value left out with its arm's verdict, so that
    "no detectable effect of dropout" is followed by "dropout: out", not by silence."""
    verdicts = {c.treatment: c.verdict for c in result.comparisons if c.kind == "vs control"}
    chosen = {a.name: a.best for a in result.arms}
    out = []
    for arm in result.plan.arms:
        best = chosen.get(arm.name)
        if arm.role != "treatment" or arm.name == result.best_arm or best is None:
            continue
        verdict = verdicts.get(arm.name, "not compared")
        why = f"defines arm {arm.title}, whose verdict against the control is {verdict}"
        if verdict == "better":
            why += f"; the patch carries one arm, {result.best_arm}, the better one best on validation"
        for k in [*arm.fixed, *(p.name for p in arm.search)]:
            v = best.params.get(k)
            if k in reference and k not in said and reference[k] != v:
                out.append(
                    PatchChange(param=k, reference=reference[k], candidate=v, carried=False, reason=why)
                )
    return out


def arm_variants(result: RunResult, reference: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per measured arm whose defining values differ from the script's, the values `approve --arm` writes: that
    arm's defining change as its chosen configuration ran it, and nothing else (the shared values stay the
    script's own, the training-set cap is released), so each variant is exactly one arm's change."""
    arms = {a.name: a for a in result.plan.arms}
    out = {}
    for measured in result.arms:
        arm = arms.get(measured.name)
        if arm is None or measured.best is None:
            continue
        own = {
            k: measured.best.params[k]
            for k in [*arm.fixed, *(p.name for p in arm.search)]
            if k in reference and k in measured.best.params
        }
        if any(reference[k] != v for k, v in own.items()):
            out[arm.name] = {**own, **released(result.plan)}
    return out


def _arm_reason(arm: Arm, answer: ArmComparison | None) -> tuple[bool, str]:
    if arm.role == "control":
        return False, f"fixed by the control arm ({arm.title}); only a treatment judged better changes it"
    if answer is None:
        return True, f"defines arm {arm.title}, tuned against the defaults with no control to judge it"
    if answer.verdict == "better":
        return True, f"defines arm {arm.title}, whose verdict against the control is better"
    return False, f"defines arm {arm.title}, whose verdict against the control is {answer.verdict}"


def carried(changes: list[PatchChange]) -> dict[str, Any]:
    return {c.param: c.candidate for c in changes if c.carried}


def rationale(changes: list[PatchChange], plan: ExperimentPlan) -> list[str]:
    """What the final patch's rationale adds: each change in or out and why, then what it was tuned under."""
    lines = [
        f"{c.param} = {c.candidate!r} {'carried' if c.carried else 'left out, the script keeps ' + repr(c.reference)}: "
        f"{c.reason}"
        for c in changes
    ]
    return lines + tuned_under(plan) + [f"{k} set back to {v} (no cap)" for k, v in released(plan).items()]


def released(plan: ExperimentPlan) -> dict[str, Any]:
    """The training-set cap a code change added for the experiment, set back to 0 (no cap) in the final patch."""
    return {c.target: 0 for c in plan.code_changes if c.kind == "limit_train_examples"}


def tuned_under(plan: ExperimentPlan) -> list[str]:
    """The experiment's conditions, as notes on every tuned value ("tuned on 300 training examples")."""
    caps = {c.target: c.value for c in plan.code_changes if c.kind == "limit_train_examples"}
    notes = []
    for k, v in {**plan.conditions, **caps}.items():
        if k == TRAIN_CAP_PARAM or k in caps:
            notes.append(f"tuned on {v} training examples")
        elif k == "dataset":
            notes.append(f"tuned on the {v} data set")
        else:
            notes.append(f"tuned with {k} = {v!r}")
    if plan.compression is not None:
        notes.append(f"tuned for the {plan.compression.kind}-compressed model")
    return notes
