"""The answer to the idea's question: every treatment arm against the control, on the held-out split.

Every arm was re-run over the same seeds, at the same shared values (`agent.loop.arms.compared_finals`), so
the comparison is paired by seed (difference, 95% t-interval, paired t-test; the exact sign test when every
seed gives the same difference). With several treatments, Holm's step-down correction adjusts the p-values, so
that the chance of calling any identical treatment better or worse stays at ALPHA. A treatment is *better* or
*worse* when its adjusted p < ALPHA and the difference exceeds the noise floor (the control's standard
deviation across seeds); otherwise there is *no detectable difference*. When every seed gave each arm one value
to the last digit, the seed does not reach the script: the verdict is *not measurable*, not a test of one run.
"""

from __future__ import annotations

from agent.analyse.verdict import ALPHA, better, fmt_p, seeds_do_nothing, signed
from agent.results import ArmComparison, ArmResult, ArmVerdict
from agent.schemas import Arm
from experiments import stats
from experiments.records import Comparison, Metric

RULE = (
    "each treatment arm against the control, paired by seed on the held-out split; *better* / *worse* when "
    f"the Holm-adjusted paired t-test p < {ALPHA:g} across the treatments and |difference| exceeds the noise "
    "floor (the control's std across seeds); *not measurable* when every seed gave both arms the same "
    "result to the last digit; otherwise *no detectable difference*"
)


def compare_arms(
    arms: list[Arm], results: list[ArmResult], metric: Metric, looks: int = 1
) -> list[ArmComparison]:
    """One comparison per treatment arm (none for a plan without a control); with `looks` sequential looks at
    the seeds, the Holm-adjusted p-values are multiplied by them too (Bonferroni over looks)."""
    control = next((a for a in arms if a.role == "control"), None)
    if control is None:
        return []
    by_name = {r.name: r for r in results}
    treatments = [a for a in arms if a.role == "treatment"]
    base = by_name.get(control.name)
    raw = [
        stats.compare(by_name[t.name].final, base.final, metric, "test", looks)
        if base is not None and t.name in by_name
        else None
        for t in treatments
    ]
    adjusted = [
        None if p is None else min(1.0, p * looks)
        for p in stats.holm([None if c is None else c.p_value for c in raw])
    ]
    return [
        _judge(t, control, c, p, metric, by_name) for t, c, p in zip(treatments, raw, adjusted, strict=True)
    ]


def _judge(
    treatment: Arm,
    control: Arm,
    c: Comparison | None,
    p_adjusted: float | None,
    metric: Metric,
    results: dict[str, ArmResult],
) -> ArmComparison:
    if c is None:
        return ArmComparison(
            treatment=treatment.name,
            control=control.name,
            verdict="failed",
            statement=f"{treatment.title} vs {control.title}: no seed has a finished run of both arms",
        )
    if c.seeds_identical:
        return ArmComparison(
            treatment=treatment.name,
            control=control.name,
            comparison=c,
            p_adjusted=p_adjusted,
            verdict="not measurable",
            statement=f"{treatment.title} vs {control.title}: not measurable, "
            f"{seeds_do_nothing(c.metric, c.n_seeds)}",
        )
    significant = p_adjusted is not None and p_adjusted < ALPHA
    verdict: ArmVerdict = "no detectable difference"
    if significant and abs(c.difference) > c.noise_floor:
        verdict = "better" if better(c.difference, 0.0, metric.direction) else "worse"
    return ArmComparison(
        treatment=treatment.name,
        control=control.name,
        comparison=c,
        p_adjusted=p_adjusted,
        verdict=verdict,
        statement=f"{_claim(treatment, control, verdict)}: {_evidence(c, p_adjusted, treatment, control, results)}",
    )


def _claim(treatment: Arm, control: Arm, verdict: ArmVerdict) -> str:
    """The answer in the idea's words: "dropout helps" for with/without, "SGD is worse than Adam" for A or B."""
    t, c = treatment.title, control.title
    if treatment.technique and not control.technique:
        return {
            "better": f"{t} helps",
            "worse": f"{t} hurts",
            "no detectable difference": f"no detectable effect of {t}",
        }[verdict]
    return {
        "better": f"{t} is better than {c}",
        "worse": f"{t} is worse than {c}",
        "no detectable difference": f"no detectable difference between {t} and {c}",
    }[verdict]


DRIFT = 0.1  # relative: shared values further apart than this were found by searches that did not agree


def _search_drift(treatment: Arm, control: Arm, results: dict[str, ArmResult]) -> str:
    """The shared hyperparameters (tuned in every arm) on which the two arms' selected configurations differ.

    Under no real difference, which learning rate a small search lands on varies from run to run more than the
    paired test over seeds can see (bench/results/calibration.md): a reader should know when that happened."""
    t, c = results.get(treatment.name), results.get(control.name)
    if t is None or c is None or t.best is None or c.best is None:
        return ""
    own = {*treatment.fixed, *control.fixed, *(p.name for p in (*treatment.search, *control.search))}
    far = []
    for name, mine in c.best.params.items():
        theirs = t.best.params.get(name)
        if name in own or theirs is None or theirs == mine:
            continue
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (mine, theirs))
        if not numbers or abs(theirs - mine) > DRIFT * max(abs(mine), abs(theirs)):
            far.append(f"{name} {_show(mine)} vs {_show(theirs)}")
    return ", ".join(far)


def _show(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _evidence(
    c: Comparison, p_adjusted: float | None, treatment: Arm, control: Arm, results: dict[str, ArmResult]
) -> str:
    ci = c.ci_text()
    text = (
        f"{signed(c.difference)} held-out {c.metric} ({ci}, p = {fmt_p(c.p_value)}, Holm-adjusted "
        f"p = {fmt_p(p_adjusted)}, {c.n_seeds} seed{'s' if c.n_seeds != 1 else ''})"
    )
    drift = _search_drift(treatment, control, results)
    if drift:
        text += (
            f"; caution: the arms' searches settled on different shared values ({drift}), so part of this "
            f"difference may be which values each search happened to find, not what the arms compare; more "
            "trials per arm make it smaller"
        )
    efforts = {results[a.name].trials for a in (treatment, control) if a.name in results}
    if len(efforts) > 1:
        text += (
            f"; caution: unequal effort, {results[treatment.name].trials} tuning trials against "
            f"{results[control.name].trials}"
        )
    return text
