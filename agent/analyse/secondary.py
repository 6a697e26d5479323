"""The secondary objectives a plan names ("faster", "saves time", "smaller"): each compared for the same pairs
of arms as the metric, from the measurements the worker stored with every final run (TrialRecord.measured),
paired by seed with the same test, interval and noise floor, Holm-corrected across the pairs per objective.

A measurement every seed gave each arm to the last digit (epochs run at a fixed epoch count, a model's bytes)
is exact, not a sign that the seed missed the script: the difference is then the answer, with no interval.
A timing taken while the machine's load average exceeded its cores says so: it includes waiting for a core.
"""

from __future__ import annotations

from agent.analyse.verdict import ALPHA, better, fmt, fmt_p, signed
from agent.results import ArmVerdict, SecondaryComparison
from agent.schemas import SecondaryObjective
from experiments import stats
from experiments.records import CORES, LOAD, Comparison, Metric, TrialRecord

# name -> (what it is, its unit, the word for less of it, the word for more)
WORDS = {
    "train_time_s": ("training time", " s", "less", "more"),
    "epochs_run": ("epochs run", "", "fewer", "more"),
    "size_bytes": ("model size", " bytes", "a smaller", "a larger"),
    "latency_ms": ("CPU latency per batch", " ms", "a lower", "a higher"),
}
TIMINGS = ("train_time_s", "latency_ms")
COMPRESSED = ("size_bytes", "latency_ms")  # what a compression records for its model and the uncompressed one
RULE = (
    "each secondary objective for the same pairs, paired by seed from the measurements stored with each run; "
    f"better / worse in the objective's direction when the Holm-adjusted p < {ALPHA:g} across the pairs and "
    "|difference| exceeds the noise floor, or exactly when every seed measured the same value for both arms"
)

Pair = tuple[str, str, list[TrialRecord], list[TrialRecord]]  # titles, then the two arms' final runs


def compare_secondary(
    objectives: list[SecondaryObjective], pairs: list[Pair], looks: int = 1, second_prefix: str = ""
) -> list[list[SecondaryComparison]]:
    """Per pair, one comparison per objective (first minus second, as the metric's comparison); the second's
    value is read under `second_prefix` + name (`uncompressed_`: the same runs' model before compression)."""
    out: list[list[SecondaryComparison]] = [[] for _ in pairs]
    for o in objectives:
        metric = Metric(name=o.name, direction=o.direction)
        key, other = o.name, f"{second_prefix}{o.name}"
        raw = [stats.compare(first, second, metric, "test", looks, key, other) for *_, first, second in pairs]
        adjusted = stats.holm([None if c is None else c.p_value for c in raw], looks)
        for row, (t, r, first, second), c, p in zip(out, pairs, raw, adjusted, strict=True):
            row.append(_judge(o, t, r, c, p, _load(o.name, [*first, *second])))
    return out


def _judge(
    o: SecondaryObjective, t: str, r: str, c: Comparison | None, p: float | None, loaded: str
) -> SecondaryComparison:
    noun, unit, less, more = WORDS[o.name]
    if c is None:
        return SecondaryComparison(
            name=o.name,
            pair=f"{t} vs {r}",
            verdict="not measurable",
            statement=f"{noun} of {t} vs {r}: not measured (no seed has it stored for both; a plain script's "
            "model is not in reach, so its size and latency are not measured)",
            rule=RULE,
        )
    verdict: ArmVerdict = "no detectable difference"
    exact = c.seeds_identical
    shown = exact or (p is not None and p < ALPHA and abs(c.difference) > c.noise_floor)
    if shown and c.difference != 0:
        verdict = "better" if better(c.difference, 0.0, o.direction) else "worse"
    claim = (
        f"{t} has {less if c.difference < 0 else more} {noun} than {r}"
        if verdict in ("better", "worse")
        else f"no detectable difference in {noun} between {t} and {r}"
    )
    evidence = (
        "every seed measured the same value for each arm, so the difference is exact"
        if exact
        else f"{c.ci_text()}, p = {fmt_p(c.p_value)}, Holm-adjusted p = {fmt_p(p)}"
    )
    statement = (
        f"{claim}: {signed(c.difference)}{unit} ({fmt(c.candidate_mean)} vs {fmt(c.baseline_mean)}{unit}, "
        f"{evidence}, {c.n_seeds} seed{'s' if c.n_seeds != 1 else ''})"
    )
    return SecondaryComparison(
        name=o.name,
        pair=f"{t} vs {r}",
        comparison=c,
        p_adjusted=p,
        verdict=verdict,
        loaded=loaded,
        statement=f"{statement}; {loaded}" if loaded else statement,
        rule=RULE,
    )


def _load(name: str, runs: list[TrialRecord]) -> str:
    """For a timing: whether the machine was loaded (1-minute load average above its cores) when it was taken."""
    readings = [(r.measured[LOAD], r.measured.get(CORES, 1.0)) for r in runs if LOAD in r.measured]
    if name not in TIMINGS or not readings or all(load <= cores for load, cores in readings):
        return ""
    load, cores = max(readings)
    return (
        f"measured on a loaded machine (1-minute load average up to {load:.1f} on {cores:.0f} cores), so the "
        "times include waiting for a core"
    )
