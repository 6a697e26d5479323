"""Paired comparison of a candidate against the baseline over the same seeds, and Holm's correction for
several such comparisons in one run."""

from __future__ import annotations

import math
import statistics

from scipy import stats as scipy_stats

from experiments.records import Comparison, Metric, TrialRecord

CONSTANT_TOLERANCE = 1e-9  # differences whose std is below this (relative) are constant, not noisy


def metric_values(runs: list[TrialRecord], key: str) -> dict[int, float]:
    """seed -> value of `key` (a metric, else a measurement) for runs that completed; a run that failed has
    no value to compare."""
    return {
        r.seed: value
        for r in runs
        if r.state == "COMPLETE" and r.seed is not None and (value := r.reading(key)) is not None
    }


def compare(
    candidate: list[TrialRecord],
    baseline: list[TrialRecord],
    metric: Metric,
    split: str = "test",
    looks: int = 1,
    key: str | None = None,
    baseline_key: str | None = None,
) -> Comparison | None:
    """Difference (candidate - baseline), t-interval and paired t-test p-value over the shared seeds.

    `key` reads another value of the same runs than the metric on `split` (a measurement such as
    `train_time_s`), compared the same way; `baseline_key` reads the baseline's under another name (a
    compressed model's `test_accuracy` against the same runs' `uncompressed_test_accuracy`).

    The interval is at 95%, or at 1 - 0.05 / looks when the seeds were added in `looks` sequential looks, so
    that stopping at the first look whose interval excludes 0 keeps its error rate (Bonferroni over looks).

    The noise floor is the baseline's standard deviation across seeds: a difference inside it is not a finding.
    Returns None when fewer than one seed has both runs.
    """
    key = key or (metric.name if split == "validation" else f"test_{metric.name}")
    cand, base = metric_values(candidate, key), metric_values(baseline, baseline_key or key)
    seeds = sorted(set(cand) & set(base))
    if not seeds:
        return None
    c, b = [cand[s] for s in seeds], [base[s] for s in seeds]
    diffs = [x - y for x, y in zip(c, b, strict=True)]
    mean = statistics.fmean(diffs)
    n = len(diffs)
    if n > 1:
        sd = statistics.stdev(diffs)
        half = scipy_stats.t.ppf(1 - 0.025 / looks, n - 1) * sd / math.sqrt(n)
        if sd > CONSTANT_TOLERANCE * max(1.0, abs(mean)):
            p_value = float(scipy_stats.ttest_rel(c, b).pvalue)
        else:
            # the same difference on every seed (up to rounding) leaves t undefined, and a t-test on
            # rounding noise would give p = 1e-29: the exact sign test says what n agreeing seeds can
            half, p_value = 0.0, 1.0 if mean == 0 else sign_test_p(n)
    else:
        half, p_value = None, None
    return Comparison(
        metric=metric.name,
        direction=metric.direction,
        split="validation" if split == "validation" else "test",
        candidate_mean=statistics.fmean(c),
        candidate_std=statistics.stdev(c) if n > 1 else 0.0,
        baseline_mean=statistics.fmean(b),
        baseline_std=statistics.stdev(b) if n > 1 else 0.0,
        difference=mean,
        difference_std=statistics.stdev(diffs) if n > 1 else None,
        ci_low=None if half is None else mean - half,
        ci_high=None if half is None else mean + half,
        p_value=p_value,
        noise_floor=statistics.stdev(b) if n > 1 else 0.0,
        n_seeds=n,
        looks=looks,
    )


def shifted_p(c: Comparison, shift: float, greater: bool) -> float | None:
    """One-sided paired t-test p-value of "the mean difference exceeds `shift`" (`greater`) or "falls below
    it": how a margin is tested. Differences constant over the seeds (up to rounding) leave t undefined;
    then the exact sign test says what n seeds on the claimed side of the shift can (p = 0.5 ** n), and 1
    when they are not on it. None with one seed."""
    if c.n_seeds < 2 or c.difference_std is None:
        return None
    gap = c.difference - shift if greater else shift - c.difference
    if c.difference_std <= CONSTANT_TOLERANCE * max(1.0, abs(c.difference)):
        return 0.5**c.n_seeds if gap > 0 else 1.0
    t = gap / (c.difference_std / math.sqrt(c.n_seeds))
    return float(scipy_stats.t.sf(t, c.n_seeds - 1))


def one_sided_bounds(c: Comparison, alpha: float) -> tuple[float, float] | None:
    """The lower and upper one-sided (1 - alpha) bounds of the mean difference (together a 1 - 2 alpha
    two-sided interval); None with one seed."""
    if c.n_seeds < 2 or c.difference_std is None:
        return None
    half = scipy_stats.t.ppf(1 - alpha, c.n_seeds - 1) * c.difference_std / math.sqrt(c.n_seeds)
    return c.difference - half, c.difference + half


def detectable(c: Comparison, alpha: float, power: float = 0.8) -> float | None:
    """The smallest true difference a two-sided paired t-test at `alpha` over these seeds would find with
    probability `power`, from the observed spread of the paired differences: (t_{1-alpha/2} + t_{power}) *
    sd / sqrt(n) on n - 1 degrees of freedom (the usual approximation to the noncentral t). None with one
    seed."""
    if c.n_seeds < 2 or c.difference_std is None:
        return None
    df = c.n_seeds - 1
    quantiles = scipy_stats.t.ppf(1 - alpha / 2, df) + scipy_stats.t.ppf(power, df)
    return float(quantiles * c.difference_std / math.sqrt(c.n_seeds))


def sign_test_p(n: int) -> float:
    """Two-sided exact sign test when all n paired differences share a sign: 2 * 0.5 ** n."""
    return min(1.0, 2.0 ** (1 - n))


def holm(p_values: list[float | None], looks: int = 1) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and does not count as a test), multiplied by
    `looks` too when the seeds were looked at that many times (Bonferroni over looks).

    Sorted ascending, the k-th smallest of m p-values is multiplied by m - k + 1, and the running maximum keeps
    the adjusted values in the same order: rejecting where adjusted p < alpha holds the family-wise error at
    alpha without assuming the tests are independent.
    """
    ranked = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(ranked)
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = min(1.0, running * looks)
    return out
