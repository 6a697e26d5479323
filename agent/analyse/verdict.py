"""The report's conclusion, computed from the held-out comparison: improved, no significant change, worse or
failed, with by how much, how sure, and what the reviewer can do next.

improved: the difference is in the metric's direction, significant (paired t-test p < ALPHA, or a 95% interval
of non-zero width that excludes 0) and larger than the noise floor (the baseline's spread across seeds); worse:
the same the other way; not measurable: every seed gave the baseline one value and the candidate one value, so
the seed does not reach the script and the seeds are one run repeated; failed: no tuning trial completed, or
the final or baseline runs all failed.
"""

from __future__ import annotations

from pydantic import Field

from agent.schemas import Conclusion
from experiments import stats
from experiments.records import Comparison, Model, TrialRecord

ALPHA = 0.05
POWER = 0.8  # of the smallest difference a *no detectable difference* says the seeds could have detected
RULE = (
    f"*improved* when the difference is in the metric's direction, significant (paired t-test p < {ALPHA:g}, "
    "or a 95% interval of non-zero width that excludes 0) and larger than the noise floor; *worse* the same "
    "the other way; *not measurable* when every seed gave the same result to the last digit, for the baseline "
    "and the candidate alike; *failed* when no tuning trial completed or the final or baseline runs all failed; "
    "otherwise "
    "*no significant change*; with seeds added in sequential looks (`--seeds auto`), the test is at "
    f"{ALPHA:g} / looks and the interval at 1 - {ALPHA:g} / looks"
)


SEED_FIX = (
    "Make the seed reach the script: seed its random generators from the `RESEARCH_LOOP_SEED` environment "
    'variable (`torch.manual_seed(int(os.environ.get("RESEARCH_LOOP_SEED", "0")))`), or give it a `--seed` '
    "flag, which every run is passed; then start a new run."
)


def seeds_do_nothing(metric: str, n_seeds: int) -> str:
    """Why a comparison whose seeds all gave the same values has no verdict, in the report's words."""
    return (
        f"every one of the {n_seeds} seeds gave the same held-out {metric} to the last digit, for both sides: "
        "the seed does not reach the script, so the seeds repeat one run and give no interval to judge by"
    )


def fmt(value: float | None) -> str:
    """How every metric value is written in a report: four decimals, so a reader can find it in storage."""
    return "n/a" if value is None else f"{value:.4f}"


def signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def fmt_p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


class Verdict(Model):
    """The computed conclusion: which of the four outcomes, by how much, how sure, and what to do next."""

    outcome: Conclusion
    summary: str
    evidence: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list)
    rule: str = RULE


def detectable_line(c: Comparison, tests: int, looks: int = 1) -> str:
    """Under *no detectable difference*: the smallest true difference these seeds would find with POWER
    probability, at Holm's strictest level over `tests` comparisons (alpha / tests / looks), and never below
    the noise floor, which a finding must exceed as well."""
    if c.n_seeds < 2 or c.difference_std is None:
        return (
            "One seed allows no test: no difference, however large, could have been detected; run more seeds."
        )
    alpha = ALPHA / (max(1, tests) * looks)
    power = stats.detectable(c, alpha, POWER) or 0.0
    smallest = max(power, c.noise_floor)
    level = f"α = {alpha:.3g}" + (f", Holm's strictest level over {tests} comparisons" if tests > 1 else "")
    floor = (
        f", raised to the noise floor {fmt(c.noise_floor)} that a finding must also exceed"
        if c.noise_floor > power
        else ""
    )
    return (
        f"With {c.n_seeds} seeds this comparison could detect a difference of {fmt(smallest)} held-out "
        f"{c.metric} or more: {fmt(power)} at {100 * POWER:.0f}% power for a two-sided paired t-test at {level} "
        f"from the paired differences' std {fmt(c.difference_std)}{floor}; a smaller true difference would "
        "usually go unseen."
    )


def better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def errors(records: list[TrialRecord]) -> list[str]:
    return [
        f"seed {r.seed}: {r.state.lower()}: {r.error or 'no error recorded'}"
        for r in records
        if r.state != "COMPLETE"
    ]


def _relative(diff: float, base: float) -> str:
    return f" ({diff / abs(base):+.1%} relative)" if base else ""


def verdict(
    run_id: str,
    tuning: list[TrialRecord],
    best: TrialRecord | None,
    baseline: list[TrialRecord],
    final: list[TrialRecord],
    comparison: Comparison | None,
    approvable: bool,
) -> Verdict:
    """improved / no significant change / worse / not measurable / failed, from the held-out comparison alone."""
    reject = f'`research-loop reject {run_id} --reason "..."`'
    failed = _failure(tuning, best, baseline, final, comparison)
    if failed is not None:
        return Verdict(
            outcome="failed",
            summary=failed[0],
            evidence=failed[1],
            next_steps=[
                "Nothing was measured that could be approved. Fix the cause above and start a new run "
                "(`research-loop resume` continues an interrupted `research-loop run`).",
                f"Record the outcome: {reject}.",
            ],
        )
    c = comparison
    assert c is not None
    ahead = better(c.difference, 0.0, c.direction)
    significant = (c.p_value is not None and c.p_value * c.looks < ALPHA) or c.excludes_zero
    beyond_noise = abs(c.difference) > c.noise_floor
    where = f"held-out test {c.metric}"
    ci = c.ci_text()
    p = "no p-value" if c.p_value is None else f"paired t-test p = {fmt_p(c.p_value)}"
    if c.looks > 1 and c.p_value is not None:
        p += f" (tested at {ALPHA:g}/{c.looks} for {c.looks} sequential looks)"
    noise = (
        f"{abs(c.difference) / c.noise_floor:.1f}× the noise floor ({fmt(c.noise_floor)}, the baseline's std across seeds)"
        if c.noise_floor > 0
        else f"noise floor {fmt(c.noise_floor)} (the baseline gave the same value on every seed, or ran one seed)"
    )
    evidence = [
        f"{where}: candidate {fmt(c.candidate_mean)} ± {fmt(c.candidate_std)} vs baseline "
        f"{fmt(c.baseline_mean)} ± {fmt(c.baseline_std)} over {c.n_seeds} seed{'s' if c.n_seeds != 1 else ''}",
        f"difference {signed(c.difference)}{_relative(c.difference, c.baseline_mean)}, {ci}, {p}",
        f"the difference is {noise}",
    ]
    how_much = f"{signed(c.difference)}{_relative(c.difference, c.baseline_mean)}"
    sure = f"{p}, {ci}, over {c.n_seeds} seed{'s' if c.n_seeds != 1 else ''}"
    if c.seeds_identical:
        summary = (
            f"Not measurable: {seeds_do_nothing(c.metric, c.n_seeds)} (candidate {fmt(c.candidate_mean)}, "
            f"baseline {fmt(c.baseline_mean)})."
        )
        return Verdict(
            outcome="not measurable",
            summary=summary,
            evidence=evidence,
            next_steps=[SEED_FIX, f"Record the outcome: {reject}."],
        )
    if significant and beyond_noise:
        outcome: Conclusion = "improved" if ahead else "worse"
        direction = "better" if ahead else "worse"
        summary = f"The candidate is {direction} than the baseline by {how_much} on the {where} ({sure})."
    else:
        outcome = "no significant change"
        reasons = []
        if not significant:
            reasons.append(
                "the interval includes 0 and p ≥ 0.05" if c.n_seeds > 1 else "one seed allows no test"
            )
        if not beyond_noise:
            reasons.append(f"|difference| ≤ the noise floor {fmt(c.noise_floor)}")
        summary = (
            f"The candidate differs from the baseline by {how_much} on the {where}, "
            f"but {' and '.join(reasons)} ({sure})."
        )
        evidence.append(detectable_line(c, 1, c.looks))
    approve = f"`research-loop approve {run_id}`"
    if outcome == "improved":
        steps = (
            [f"Approve to apply the final patch to the target: {approve}.", f"Or reject it: {reject}."]
            if approvable
            else [
                "This run holds no approvable patch (a `study` run tunes hyperparameters only): copy the "
                "candidate's hyperparameters from the table above into the script, or start a "
                "`research-loop run` that turns them into a patch.",
                f"Record the decision either way: {reject} if you do not adopt it.",
            ]
        )
    elif outcome == "worse":
        steps = [f"Reject: {reject} (the change makes the {c.metric} worse on the held-out split)."]
    else:
        steps = [
            f"Reject unless the change has another merit: {reject}.",
            f"To tell a small effect from noise, run again with more seeds than {c.n_seeds} "
            "(`--seeds auto` adds them two at a time until the answer is clear).",
        ]
    return Verdict(outcome=outcome, summary=summary, evidence=evidence, next_steps=steps)


def _failure(
    tuning: list[TrialRecord],
    best: TrialRecord | None,
    baseline: list[TrialRecord],
    final: list[TrialRecord],
    comparison: Comparison | None,
) -> tuple[str, list[str]] | None:
    if best is None:
        states = {s: sum(t.state == s for t in tuning) for s in ("FAIL", "PRUNED")}
        errors = sorted({t.error for t in tuning if t.error})
        return (
            f"No tuning trial completed (of {len(tuning)}: {states['FAIL']} failed, "
            f"{states['PRUNED']} pruned), so there is no candidate.",
            [f"trial error: {e}" for e in errors[:3]],
        )
    if not any(r.state == "COMPLETE" for r in final):
        return "Every final run of the selected candidate failed.", errors(final)
    if not any(r.state == "COMPLETE" for r in baseline):
        return "Every baseline run failed, so there is nothing to compare with.", errors(baseline)
    if comparison is None:
        return "No seed has both a finished candidate run and a finished baseline run.", []
    return None
