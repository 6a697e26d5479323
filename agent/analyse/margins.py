"""What an interval can claim besides *better* or *worse*: a treatment within a margin of its reference.

Non-inferiority ("within half a point", "without losing accuracy") is one one-sided paired t-test: the
treatment is *non-inferior* when its loss against the reference is shown smaller than the margin (Holm-adjusted
p < ALPHA across the treatments, the same as its one-sided 95% bound lying inside the margin for one), *inferior*
when its loss is shown larger than the margin, otherwise *inconclusive*. Equivalence ("the same as") is two
one-sided tests (TOST): *equivalent* when the difference is shown inside (-margin, +margin) on both sides, *not
equivalent* when it is shown outside on one (Bonferroni over the two sides), otherwise *inconclusive*. The loss
is read in the metric's direction: a lower accuracy, a higher loss. With no number stated, the margin is the
noise floor (the reference's std across seeds), and the report says that it is a default.
"""

from __future__ import annotations

from agent.analyse.verdict import ALPHA, fmt, fmt_p, signed
from agent.results import MarginTest, MarginVerdict
from agent.schemas import Margin
from experiments import stats
from experiments.records import Comparison

RULE = (
    "*non-inferior* when the treatment's loss against the control (in the metric's direction) is shown "
    f"smaller than the margin by a one-sided paired t-test at Holm-adjusted p < {ALPHA:g}, *inferior* when it "
    "is shown larger, otherwise *inconclusive*; equivalence uses two one-sided tests (*equivalent* / *not "
    "equivalent* / *inconclusive*); with no margin stated, the margin is the noise floor"
)


def margin_tests(
    margin: Margin, pairs: list[tuple[str, str, Comparison | None]], looks: int = 1
) -> list[MarginTest]:
    """One test per (treatment title, reference title, comparison), Holm-corrected across them and
    Bonferroni over `looks` sequential looks."""
    widths = [margin.value if margin.value is not None else (c.noise_floor if c else 0.0) for *_, c in pairs]
    raw = [
        _p_values(c, m, margin.test) if c else (None, None) for (*_, c), m in zip(pairs, widths, strict=True)
    ]
    claims = stats.holm([claim for claim, _ in raw], looks)
    against = stats.holm([other for _, other in raw], looks)
    return [
        _test(margin, t, r, c, m, p, a, looks, raw_p[0])
        for (t, r, c), m, p, a, raw_p in zip(pairs, widths, claims, against, raw, strict=True)
    ]


def _p_values(c: Comparison, m: float, test: str) -> tuple[float | None, float | None]:
    """The claim's p-value (non-inferior, or equivalent) and the opposite claim's (inferior, not equivalent)."""
    if c.seeds_identical:
        return None, None
    if test == "non_inferiority":
        up = c.direction == "maximize"  # the loss is a difference below -m (maximize) or above +m (minimize)
        edge = -m if up else m
        return stats.shifted_p(c, edge, greater=up), stats.shifted_p(c, edge, greater=not up)
    sides = (stats.shifted_p(c, -m, greater=True), stats.shifted_p(c, m, greater=False))
    outside = (stats.shifted_p(c, m, greater=True), stats.shifted_p(c, -m, greater=False))
    if None in sides or None in outside:
        return None, None
    return max(sides), min(1.0, 2 * min(outside))  # type: ignore[type-var]


def _test(
    margin: Margin,
    treatment: str,
    reference: str,
    c: Comparison | None,
    m: float,
    p_claim: float | None,
    p_against: float | None,
    looks: int,
    raw: float | None,
) -> MarginTest:
    level = 1 - ALPHA / looks
    bounds = stats.one_sided_bounds(c, ALPHA / looks) if c else None
    low, high = bounds if bounds else (None, None)
    equivalence = margin.test == "equivalence"
    verdict: MarginVerdict = "inconclusive"
    if p_claim is not None and p_claim < ALPHA:
        verdict = "equivalent" if equivalence else "non-inferior"
    elif p_against is not None and p_against < ALPHA:
        verdict = "not equivalent" if equivalence else "inferior"
    source = (
        "as the idea states"
        if margin.value is not None
        else "the noise floor, the reference's std across seeds, as the default: the idea states no number"
    )
    head = f"{treatment} vs {reference} within a margin of {fmt(m)} ({source}): {verdict}"
    if c is None:
        why = "no seed has a finished run of both"
    elif c.seeds_identical:
        why = "every seed gave the same values, so the seeds give no interval to test the margin with"
    elif low is None or high is None:
        why = "one seed allows no test"
    else:
        worst = low if c.direction == "maximize" else high
        spread = (
            f"{100 * (2 * level - 1):.4g}% interval [{signed(low)}, {signed(high)}] against ±{fmt(m)}"
            if equivalence
            else f"one-sided {100 * level:.4g}% bound {signed(worst)} (the worst the seeds allow)"
        )
        why = (
            f"difference {signed(c.difference)} held-out {c.metric}, {spread}, p = {fmt_p(raw)}, "
            f"Holm-adjusted p = {fmt_p(p_claim)}"
        )
    return MarginTest(
        test=margin.test,
        pair=f"{treatment} vs {reference}",
        margin=m,
        stated=margin.value is not None,
        difference=c.difference if c else None,
        low=low,
        high=high,
        level=level,
        p_value=raw,
        p_adjusted=p_claim,
        verdict=verdict,
        statement=f"{head}; {why}",
        rule=RULE,
    )
