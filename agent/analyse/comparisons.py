"""The answer to the idea's question: every treatment arm against the control, and the treatments the idea
pits against each other head-to-head, on the held-out split.

Every arm was re-run over the same seeds, at the same shared values (`agent.loop.arms.compared_finals`), so
the comparison is paired by seed (difference, 95% t-interval, paired t-test; the exact sign test when every
seed gives the same difference). With several treatments or head-to-head pairs, Holm's step-down correction
adjusts the p-values over all of them, so that the chance of calling any identical pair different stays at
ALPHA. A treatment is *better* or *worse* when its adjusted p < ALPHA and the difference exceeds the noise floor
(the control's standard deviation across seeds); otherwise there is *no detectable difference*, with the
smallest difference the seeds could have detected. When every seed gave each arm one value to the last digit,
the seed does not reach the script: the verdict is *not measurable*, not a test of one run. The plan's margin
(agent.analyse.margins) and secondary objectives (agent.analyse.secondary) are answered for the same pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.analyse.margins import margin_tests
from agent.analyse.secondary import COMPRESSED, compare_secondary
from agent.analyse.verdict import ALPHA, better, detectable_line, fmt_p, seeds_do_nothing, signed
from agent.results import ArmComparison, ArmResult, ArmVerdict, MarginTest, PairKind, SecondaryComparison
from agent.schemas import Arm, ExperimentPlan, HeadToHead
from experiments import stats
from experiments.records import Comparison, Metric, TrialRecord

RULE = (
    "each treatment arm against the control (and each head-to-head pair, the second arm in the control's "
    "place), paired by seed on the held-out split; *better* / *worse* when the Holm-adjusted paired t-test "
    f"p < {ALPHA:g} across every pair and |difference| exceeds the noise floor (the second arm's std across "
    "seeds); *not measurable* when every seed gave both arms the same "
    "result to the last digit; otherwise *no detectable difference*"
)


def compare_arms(
    arms: list[Arm],
    results: list[ArmResult],
    metric: Metric,
    looks: int = 1,
    head_to_head: Sequence[HeadToHead] = (),
) -> list[ArmComparison]:
    """One comparison per treatment arm against the control (none for a plan without a control), then one per
    head-to-head pair, all in one Holm family; with `looks` sequential looks at the seeds, the adjusted
    p-values are multiplied by them too (Bonferroni over looks). A *no detectable difference* says what
    difference the seeds could have detected."""
    control = next((a for a in arms if a.role == "control"), None)
    if control is None:
        return []
    named = {a.name: a for a in arms}
    pairs: list[tuple[Arm, Arm, PairKind]] = [
        (t, control, "vs control") for t in arms if t.role == "treatment"
    ]
    pairs += [(named[h.first], named[h.second], "head-to-head") for h in head_to_head]
    by_name = {r.name: r for r in results}
    raw = [
        stats.compare(by_name[a.name].final, by_name[b.name].final, metric, "test", looks)
        if a.name in by_name and b.name in by_name
        else None
        for a, b, _ in pairs
    ]
    adjusted = stats.holm([None if c is None else c.p_value for c in raw], looks)
    tests = sum(p is not None for p in adjusted)
    return [
        _judge(a, b, kind, c, p, metric, by_name, tests, looks)
        for (a, b, kind), c, p in zip(pairs, raw, adjusted, strict=True)
    ]


def answer(
    plan: ExperimentPlan, results: list[ArmResult], metric: Metric, looks: int = 1
) -> list[ArmComparison]:
    """Every part of the plan's question for its arms: the comparisons (with the head-to-head pairs), the
    margin for each treatment against the control, and the secondary objectives for every pair."""
    rows = compare_arms(plan.arms, results, metric, looks, plan.head_to_head)
    named, by_name = {a.name: a for a in plan.arms}, {r.name: r for r in results}
    if plan.margin is not None:
        against = [r for r in rows if r.kind == "vs control"]
        titles = [(named[r.treatment].title, named[r.control].title, r.comparison) for r in against]
        for row, test in zip(against, margin_tests(plan.margin, titles, looks), strict=True):
            row.margin = test
    if plan.secondary:
        pairs = [
            (
                named[r.treatment].title,
                named[r.control].title,
                *(_final(by_name, n) for n in (r.treatment, r.control)),
            )
            for r in rows
        ]
        for row, measured in zip(rows, compare_secondary(plan.secondary, pairs, looks), strict=True):
            row.secondary = measured
    return rows


def answer_patch(
    plan: ExperimentPlan,
    final: list[TrialRecord],
    baseline: list[TrialRecord],
    metric: Metric,
    looks: int = 1,
) -> tuple[MarginTest | None, list[SecondaryComparison]]:
    """The margin and the secondary objectives of a plan without a control: the candidate against the
    defaults; a margin under compression asks how much the compression costs, so it tests the candidate's
    compressed model against the same trained model uncompressed, paired by seed (its own runs)."""
    if plan.control() is not None:
        return None, []
    test = None
    defaults = ("the candidate", "the defaults", final, baseline)
    own = ("the compressed candidate", "the same model uncompressed", final, final)
    if plan.margin is not None:
        key = f"test_{metric.name}"
        c = (
            stats.compare(final, final, metric, "test", looks, key, f"uncompressed_{key}")
            if plan.compression is not None
            else stats.compare(final, baseline, metric, "test", looks)
        )
        (test,) = margin_tests(plan.margin, [(*(own if plan.compression else defaults)[:2], c)], looks)
    # under compression, the model's size and latency are the compression's cost: against the same model
    # before it; the run's time and epochs are the same run's, so against the defaults
    footprint = [o for o in plan.secondary if plan.compression is not None and o.name in COMPRESSED]
    rest = [o for o in plan.secondary if o not in footprint]
    (secondary,) = compare_secondary(rest, [defaults], looks)
    (compressed,) = compare_secondary(footprint, [own], looks, "uncompressed_")
    return test, [*compressed, *secondary]


def _final(results: dict[str, ArmResult], name: str) -> list[TrialRecord]:
    return results[name].final if name in results else []


def _judge(
    treatment: Arm,
    control: Arm,
    kind: PairKind,
    c: Comparison | None,
    p_adjusted: float | None,
    metric: Metric,
    results: dict[str, ArmResult],
    tests: int,
    looks: int,
) -> ArmComparison:
    pair = {"treatment": treatment.name, "control": control.name, "kind": kind}
    if c is None:
        return ArmComparison(
            **pair,
            verdict="failed",
            statement=f"{treatment.title} vs {control.title}: no seed has a finished run of both arms",
        )
    if c.seeds_identical:
        return ArmComparison(
            **pair,
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
    claim = _claim(treatment, control, verdict, kind)
    return ArmComparison(
        **pair,
        comparison=c,
        p_adjusted=p_adjusted,
        verdict=verdict,
        statement=f"{claim}: {_evidence(c, p_adjusted, treatment, control, results)}",
        detectable=detectable_line(c, tests, looks) if verdict == "no detectable difference" else "",
    )


def _claim(treatment: Arm, control: Arm, verdict: ArmVerdict, kind: PairKind) -> str:
    """The answer in the idea's words: "dropout helps" for with/without, "SGD is worse than Adam" for A or B
    (and for two treatments head-to-head)."""
    t, c = treatment.title, control.title
    if treatment.technique and not control.technique and kind == "vs control":
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
