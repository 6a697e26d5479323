"""A/A calibration: how often does a controlled comparison call two arms with no difference different?

Every repetition is a whole run through `loop.drive`, exactly as `research-loop run` drives one: a plan with a
control and one treatment with no effect, each tuned with the same small budget, every arm re-run over the
plan's seeds on the held-out split at the shared values chosen on validation (`arms.compared_finals`), and the
treatment judged against the control by `agent.analyse.comparisons.compare_arms` (paired t-test by seed,
Holm-adjusted p < ALPHA and |difference| > noise floor). Any "better" or "worse" verdict is a false positive.
Two kinds of null treatment:

- `identical`: the treatment is the control (both fix the script's current dropout). Re-run at the same
  shared values, identical arms train the same models; this checks that the pipeline makes them agree.
- `perturbed`: the treatment fixes dropout at PERTURBED (0.1% of the head's units dropped per step): no
  effect worth the name, but every step's mask changes the training trajectory, so the two arms' runs differ
  by training noise as two real techniques would. This one measures the statistics.

Each run also judges, side by side from the same stored runs, the design before 2026-12-03: every arm at its
own best configuration (its finalist 0), which is what the first calibration measured.

Repetitions differ only in `LoopOptions.seed`, so the samplers' seeds and the training seeds of the baseline,
the tuning trials and the held-out re-runs all differ between repetitions (SEED_STRIDE keeps them apart).

Each run's plan: the shared search space is learning_rate on [LR_LOW, LR_HIGH] x the task's default (log
scale), sampler "default", pruner none, one round, TRIALS trials per arm, SEEDS seeds, WORKERS workers.

    python bench/calibration.py                            # 20 runs per task and kind (about 60 min on 2 cores)
    python bench/calibration.py --runs 5 --tasks tabular-mlp --kinds perturbed
    python bench/calibration.py --smoke                    # one tiny run on tabular-mlp: plumbing only
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common
from scipy import stats

from agent import runs
from agent.analyse.comparisons import RULE, compare_arms
from agent.analyse.verdict import ALPHA
from agent.config import Settings
from agent.loop import drive as loop
from agent.loop.arms import study_name
from agent.loop.rounds import ARM_SEED_STRIDE
from agent.plan.rules import check_plan
from agent.report import render as reporting
from agent.results import ArmResult, RunResult
from agent.schemas import Arm, Budget, ExperimentPlan
from experiments import registry
from experiments.records import SearchParam
from experiments.results import records

TASKS = ("digits-cnn", "tabular-mlp")
KINDS = ("perturbed", "identical")
PERTURBED = 0.001  # the perturbed treatment's dropout
RUNS = 20
TRIALS = 5
SEEDS = 3
# one worker per study is the fastest on 2 cores (whole run, 5 trials per arm, 2026-12-02: tabular-mlp 37.0 s
# with 1 worker, 41.8 s with 2; digits-cnn 38.2 s and 47.3-55.0 s): a run spends most of its time starting a
# worker process per study (7 studies), and a second worker only adds a start. Two runs side by side took
# 106 s against 32 s for one alone, so the repetitions run one after another.
WORKERS = 1
LR_LOW, LR_HIGH = 0.5, 2.0  # the searched learning rate, as multiples of the script's default
# repetition k runs with LoopOptions.seed = SEED_STRIDE * k: its training seeds (seed .. seed + SEEDS - 1)
# never overlap another's, and no sampler seed (seed + ARM_SEED_STRIDE * arm + 1000 * worker) repeats
SEED_STRIDE = 101
TARGET_FPR = ALPHA
FALSE_POSITIVES = ("better", "worse")
CONSTANT = 1e-9  # per-seed differences closer than this are the same number up to rounding
SMOKE = {"runs": 1, "tasks": "tabular-mlp", "kinds": "perturbed", "trials": 2}


@dataclass(frozen=True)
class Outcome:
    """One repetition: the verdict on identical arms and the numbers it came from."""

    kind: str
    task: str
    seed: int
    verdict: str
    wall_s: float
    own_best_verdict: str = ""  # the same run judged with every arm at its own best (the earlier design)
    own_best_p: float | None = None
    p: float | None = None
    p_adjusted: float | None = None
    difference: float | None = None
    noise_floor: float | None = None  # the control's std of the held-out metric across seeds
    diff_std: float | None = None  # std across seeds of the per-seed held-out difference
    n_seeds: int = 0
    control_lr: float | None = None
    treatment_lr: float | None = None
    note: str = ""

    @property
    def false_positive(self) -> bool:
        return self.verdict in FALSE_POSITIVES

    @property
    def own_best_false_positive(self) -> bool:
        return self.own_best_verdict in FALSE_POSITIVES

    @property
    def constant_difference(self) -> bool:
        """Every seed moved by the same non-zero amount: the t-test's variance is (numerically) zero."""
        return self.diff_std is not None and self.diff_std < CONSTANT and abs(self.difference or 0) > CONSTANT


def make_plan(
    kind: str, task_name: str, trials: int, seeds: int, workers: int, settings: Settings
) -> ExperimentPlan:
    task = registry.get(task_name)
    lr = float(task.defaults["learning_rate"])
    same = {"dropout": task.defaults["dropout"]}
    treatment = dict(same) if kind == "identical" else {"dropout": PERTURBED}
    label = "same as control" if kind == "identical" else f"dropout {PERTURBED:g}"
    plan = ExperimentPlan(
        title=f"A/A calibration on {task_name}",
        idea=f"A/A calibration ({kind}): a treatment with no effect",
        objective="measure how often arms with no difference are called different",
        hypothesis="the two arms do not differ",
        task=task_name,
        search_space=[
            SearchParam(name="learning_rate", kind="float", low=lr * LR_LOW, high=lr * LR_HIGH, log=True)
        ],
        metric=task.metric,
        samplers=["default"],
        pruner="none",
        budget=Budget(trials=trials, seeds=seeds, rounds=1, workers=workers),
        arms=[
            Arm(name="control", role="control", label="control", fixed=same),
            Arm(name="same", role="treatment", label=label, fixed=treatment),
        ],
    )
    return check_plan(plan, settings, task_name)


def one_run(
    kind: str, task_name: str, seed: int, trials: int, seeds: int, workers: int, root: Path
) -> Outcome:
    """Drive one whole run in its own folder under `root`, read its verdicts, and delete the folder."""
    settings = Settings(reports_dir=root / f"{kind}-{task_name}-{seed}", storage=None)
    started = time.monotonic()
    try:
        plan = make_plan(kind, task_name, trials, seeds, workers, settings)
        folder = loop.start(
            loop.LoopOptions(idea=plan.idea, task=task_name, seed=seed), settings, ["bench/calibration.py"]
        )
        (folder / "plan.json").write_text(plan.model_dump_json())
        result = loop.drive(folder, settings, report=reporting.render)
        shown = reporting.load_data(folder / reporting.DATA).comparisons
        own = own_best(folder, settings, result)
        return outcome(kind, task_name, seed, result, shown, own, time.monotonic() - started)
    except loop.LoopError as exc:
        return Outcome(kind, task_name, seed, "failed", time.monotonic() - started, note=str(exc)[:200])
    finally:
        shutil.rmtree(settings.reports_dir, ignore_errors=True)


def own_best(folder: Path, settings: Settings, result: RunResult) -> tuple[str, float | None]:
    """The verdict had every arm been compared at its own best configuration: its finalist 0, read from the
    run's storage."""
    url = loop.storage_url(folder, runs.load(folder), settings)
    arms = result.plan.arm_list()
    finals = [
        ArmResult(
            name=a.name,
            role=a.role,
            final=records(url, study_name(result.run_id, arms, a, "final", "0")),
        )
        for a in arms
    ]
    judged = compare_arms(result.plan.arms, finals, result.plan.metric)
    c = judged[0].comparison if judged else None
    return (judged[0].verdict if judged else "failed"), (None if c is None else c.p_value)


def outcome(
    kind: str,
    task_name: str,
    seed: int,
    result: RunResult,
    shown: list,
    own: tuple[str, float | None],
    wall_s: float,
) -> Outcome:
    """The report's verdict (it recomputes the comparison from storage) with the run's per-seed numbers."""
    if len(shown) != 1 or len(result.comparisons) != 1:
        return Outcome(
            kind, task_name, seed, "failed", wall_s, note=f"{len(shown)} comparisons in the report"
        )
    judged = shown[0]
    note = "" if judged.verdict == result.comparisons[0].verdict else "results.json's verdict differs"
    c = judged.comparison
    arms = {a.name: a for a in result.arms}
    key = f"test_{result.plan.metric.name}"
    per_seed = {
        name: {r.seed: r.metrics[key] for r in a.final if key in r.metrics} for name, a in arms.items()
    }
    shared = sorted(set(per_seed["control"]) & set(per_seed["same"]))
    diffs = [per_seed["same"][s] - per_seed["control"][s] for s in shared]

    def lr(name: str) -> float | None:
        best = arms[name].best
        return None if best is None else best.params.get("learning_rate")

    return Outcome(
        kind=kind,
        task=task_name,
        seed=seed,
        verdict=judged.verdict,
        wall_s=wall_s,
        own_best_verdict=own[0],
        own_best_p=own[1],
        p=None if c is None else c.p_value,
        p_adjusted=judged.p_adjusted,
        difference=None if c is None else c.difference,
        noise_floor=None if c is None else c.noise_floor,
        diff_std=statistics.stdev(diffs) if len(diffs) > 1 else None,
        n_seeds=len(diffs),
        control_lr=lr("control"),
        treatment_lr=lr("same"),
        note=note,
    )


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact binomial 95% interval for k successes in n trials."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def spread(values: list[float]) -> str:
    """mean [min–max]"""
    if not values:
        return "—"
    return f"{statistics.fmean(values):.4f} [{min(values):.4f}–{max(values):.4f}]"


def figures(tasks: list[str], kinds: list[str], outcomes: list[Outcome]) -> dict[str, object]:
    """calibration.json: each task's rate as a report's "How sure" section quotes it, from the first kind
    measured (`perturbed` where it ran: identical arms agree by construction, so only it tests the statistics)."""
    out = {}
    for task in tasks:
        done = judged([o for o in outcomes if o.task == task and o.kind == kinds[0]])
        k, n = sum(o.false_positive for o in done), len(done)
        if n:
            lo, hi = clopper_pearson(k, n)
            out[task] = {"runs": n, "false_positives": k, "rate": k / n, "ci_low": lo, "ci_high": hi}
    when = time.strftime("%Y-%m-%d", time.gmtime())
    where = f"{when}, {common.cpu_model()}, {common.cores()} cores, {kinds[0]} null treatment"
    return {"measured": where, "tasks": out}


def judged(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.verdict != "failed"]


def rate_row(label: str, outcomes: list[Outcome]) -> list[object]:
    done = judged(outcomes)
    k, n = sum(o.false_positive for o in done), len(done)
    better = sum(o.verdict == "better" for o in done)
    lo, hi = clopper_pearson(k, n) if n else (math.nan, math.nan)
    ps = [o.p for o in done if o.p is not None]
    low_p = sum(p < ALPHA for p in ps)
    own = [o for o in done if o.own_best_verdict not in ("", "failed")]
    k_own = sum(o.own_best_false_positive for o in own)
    return [
        label,
        n,
        len(outcomes) - n,
        f"{k} ({better} better, {k - better} worse)",
        fmt(k / n if n else None, ".3f"),
        f"[{fmt(lo, '.3f')}, {fmt(hi, '.3f')}]",
        f"{low_p}/{len(ps)}" + (f" ({low_p / len(ps):.0%})" if ps else ""),
        sum(o.constant_difference for o in done),
        f"{k_own}/{len(own)} = {fmt(k_own / len(own) if own else None, '.3f')}",
    ]


RATE_COLUMNS = [
    "task",
    "runs",
    "failed",
    "false positives",
    "FPR",
    "95% CI (Clopper-Pearson)",
    f"unadjusted p < {ALPHA:g}",
    "constant non-zero per-seed difference",
    "FPR with each arm at its own best (the earlier design, same runs)",
]


def noise_row(task: str, outcomes: list[Outcome]) -> list[object]:
    done = judged(outcomes)
    diffs = [o.difference for o in done if o.difference is not None]
    n_seeds = max((o.n_seeds for o in done), default=0)
    # what the paired t-test assumes the mean difference varies by, against what it varies by between runs
    se = [o.diff_std / math.sqrt(o.n_seeds) for o in done if o.diff_std is not None and o.n_seeds]
    return [
        task,
        spread([o.noise_floor for o in done if o.noise_floor is not None]),
        spread([o.diff_std for o in done if o.diff_std is not None]),
        fmt(statistics.fmean(se) if se else None),
        fmt(statistics.stdev(diffs) if len(diffs) > 1 else None),
        fmt(statistics.fmean(abs(d) for d in diffs) if diffs else None),
        n_seeds,
    ]


NOISE_COLUMNS = [
    "task",
    "noise floor: control's std across seeds, mean [range]",
    "std of the per-seed difference within a run, mean [range]",
    "t-test's standard error of the mean difference (mean)",
    "std of the mean difference across runs",
    "mean abs difference",
    "seeds",
]


def p_summary(outcomes: list[Outcome]) -> list[object]:
    ps = sorted(o.p for o in judged(outcomes) if o.p is not None)
    undefined = sum(o.p is None for o in judged(outcomes))
    if not ps:
        return ["—"] * 6 + [undefined]
    share = [sum(p < cut for p in ps) / len(ps) for cut in (0.01, 0.05, 0.10, 0.50)]
    return [
        *(f"{s:.0%}" for s in share),
        f"{statistics.median(ps):.3g}",
        sum(p == 1.0 for p in ps),
        undefined,
    ]


P_COLUMNS = [
    "p < 0.01",
    "p < 0.05",
    "p < 0.10",
    "p < 0.50",
    "median p",
    "p = 1 (no difference)",
    "p undefined",
]


def verdict_line(kind: str, outcomes: list[Outcome]) -> str:
    done = judged(outcomes)
    k, n = sum(o.false_positive for o in done), len(done)
    if not n:
        return f"- {kind}: no run finished: **not measured**"
    lo, hi = clopper_pearson(k, n)
    met = k / n <= TARGET_FPR
    where = (
        f"the whole 95% interval lies above {TARGET_FPR:.0%}"
        if lo > TARGET_FPR
        else f"the 95% interval [{lo:.3f}, {hi:.3f}] still includes {TARGET_FPR:.0%}"
    )
    return (
        f"- {kind}, pooled over the tasks: false-positive rate {k}/{n} = {k / n:.3f} against the target FPR <= {TARGET_FPR:.0%} "
        f"at the default significance level (ALPHA = {ALPHA:g}): **{'met' if met else 'NOT met'}** ({where})"
    )


def diagnosis(outcomes: list[Outcome]) -> str:
    """What the false positives have in common, counted from the runs, against the earlier design's."""
    done = judged(outcomes)
    fps = [o for o in done if o.false_positive]
    own = [o for o in done if o.own_best_false_positive]
    text = (
        f"With every arm compared at its own best configuration (the design the first calibration measured, "
        f"judged here on the same stored runs), {len(own)} of {len(done)} runs would have been called better "
        f"or worse; with the arms re-run at the same shared values, {len(fps)}. "
    )
    if not fps:
        return text + "No run called arms with no difference different.\n"
    constant = sum(o.constant_difference for o in fps)
    tiny = [o.p for o in fps if o.p is not None and o.p < 1e-6]
    return text + (
        f"Of the {len(fps)} false positives, {constant} had the same non-zero difference on every seed (up to "
        f"rounding; such a t-test has no variance, so its p-value is 0 or nearly 0), and {len(tiny)} had an "
        "unadjusted p below 1e-6.\n"
    )


def runs_table(outcomes: list[Outcome]) -> str:
    rows = [
        [
            o.kind,
            o.task,
            o.seed,
            o.verdict,
            o.own_best_verdict,
            fmt(o.control_lr, ".3g"),
            fmt(o.treatment_lr, ".3g"),
            fmt(o.difference, "+.4f"),
            fmt(o.diff_std, ".2g"),
            fmt(o.p, ".3g"),
            fmt(o.noise_floor),
            f"{o.wall_s:.0f}",
            o.note,
        ]
        for o in outcomes
    ]
    columns = ["kind", "task", "seed", "verdict", "verdict at own bests", "control lr", "treatment lr"]
    columns += ["difference", "std of difference"]
    return common.table([*columns, "p", "noise floor", "wall s", "note"], rows)


def plot(groups: dict[str, list[Outcome]], path: Path) -> None:
    """Empirical distribution of the unadjusted p-values per task against the uniform one of a calibrated test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated (uniform)")
    for label, outcomes in groups.items():
        ps = sorted(o.p for o in judged(outcomes) if o.p is not None)
        if ps:
            ax.step(
                [0, *ps, 1], [0, *(i / len(ps) for i in range(1, len(ps) + 1)), 1], where="post", label=label
            )
    ax.axvline(ALPHA, color="red", linewidth=0.8)
    ax.set_xlabel("unadjusted paired t-test p-value (arms with no difference)")
    ax.set_ylabel("share of runs with p at most x")
    ax.set_title("A/A calibration: p-values under no difference", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_seeds(runs: int, workers: int) -> None:
    """The repetitions' sampler seeds are all distinct (see SEED_STRIDE)."""
    seen = [
        SEED_STRIDE * k + ARM_SEED_STRIDE * arm + 1000 * w
        for k in range(runs)
        for arm in (0, 1)
        for w in range(workers)
    ]
    if len(set(seen)) != len(seen):
        raise SystemExit(f"{runs} repetitions with {workers} workers would reuse a sampler seed")


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument(
        "--runs", type=int, default=RUNS, help="repetitions per task and kind (default: %(default)s)"
    )
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: %(default)s)")
    p.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated null kinds (default: %(default)s)"
    )
    p.add_argument("--trials", type=int, default=TRIALS, help="tuning trials per arm (default: %(default)s)")
    p.add_argument(
        "--seeds", type=int, default=SEEDS, help="seeds per held-out re-run (default: %(default)s)"
    )
    p.add_argument("--workers", type=int, default=WORKERS, help="workers per study (default: %(default)s)")
    args = p.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [t for t in tasks if t not in registry.TASKS] + [k for k in kinds if k not in KINDS]
    if unknown or not kinds or args.runs < 1 or args.seeds < 2:
        raise SystemExit(
            f"need known tasks and kinds ({', '.join(unknown)} unknown?), --runs >= 1 and --seeds >= 2"
        )
    check_seeds(args.runs, args.workers)
    command = common.command_line()
    head = common.header("A/A calibration of the arms comparison", command)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    total = args.runs * len(tasks) * len(kinds)
    with tempfile.TemporaryDirectory(prefix="rl-calibration-") as tmp:
        # repetition by repetition across kinds and tasks, the results rewritten after each run: stopped
        # early, the files hold every finished run, balanced between the groups
        for k in range(args.runs):
            for kind in kinds:
                for task in tasks:
                    o = one_run(kind, task, SEED_STRIDE * k, args.trials, args.seeds, args.workers, Path(tmp))
                    outcomes.append(o)
                    fps = sum(x.false_positive for x in outcomes if (x.task, x.kind) == (task, kind))
                    print(
                        f"[{len(outcomes)}/{total}] {kind} {task} seed {o.seed}: {o.verdict} (at own bests: "
                        f"{o.own_best_verdict}), difference {fmt(o.difference, '+.4f')}, p = {fmt(o.p, '.3g')}, "
                        f"noise floor {fmt(o.noise_floor)}, lr {fmt(o.control_lr, '.3g')} / "
                        f"{fmt(o.treatment_lr, '.3g')}, {o.wall_s:.0f} s; false positives so far {fps}/{k + 1} "
                        f"{o.note}",
                        flush=True,
                    )
                    text = write_results(args, head, tasks, kinds, outcomes, time.monotonic() - started)
    print(text)
    print(f"wrote {args.out / 'calibration.md'}")


def write_results(
    args: argparse.Namespace,
    head: str,
    tasks: list[str],
    kinds: list[str],
    outcomes: list[Outcome],
    wall: float,
) -> str:
    """calibration.md, .json and .png from the runs finished so far; returns the markdown."""
    groups = {f"{k} / {t}": [o for o in outcomes if (o.kind, o.task) == (k, t)] for k in kinds for t in tasks}
    by_kind = {k: [o for o in outcomes if o.kind == k] for k in kinds}
    rows = [rate_row(g, os_) for g, os_ in groups.items()]
    if len(tasks) > 1:
        rows += [rate_row(f"{k} / pooled", os_) for k, os_ in by_kind.items()]
    p_rows = [[g, *p_summary(os_)] for g, os_ in groups.items()]
    holm_same = all(o.p_adjusted == o.p for o in judged(outcomes))
    total = args.runs * len(tasks) * len(kinds)
    done = "" if len(outcomes) == total else f" (stopped after {len(outcomes)} of them)"
    text = head + (
        f"\nWall time {wall:.0f} s for {total} runs{done}, {args.runs} per task and kind. Each run: a control "
        f"that fixes the script's dropout at its current value and a treatment with no effect (*identical*: "
        f"the same; *perturbed*: dropout {PERTURBED:g}), learning_rate searched on [{LR_LOW:g}, {LR_HIGH:g}] "
        f"x the default (log), sampler default, pruner none, 1 round, {args.trials} trials per arm, then one "
        f"matched trial per arm at the other's best learning rate, {args.seeds} seeds, {args.workers} "
        f"worker(s); run k has LoopOptions.seed = {SEED_STRIDE} k. A *false positive* is a verdict of better "
        f"or worse ({RULE}).\n\n"
    )
    text += "## False-positive rate\n\n" + "\n".join(verdict_line(k, os_) for k, os_ in by_kind.items())
    text += "\n\n" + common.table(["kind / task", *RATE_COLUMNS[1:]], rows)
    text += "\n" + diagnosis(outcomes)
    text += (
        "\n## Noise floor\n\nHeld-out metric: "
        + ", ".join(f"{t}: test_{registry.get(t).metric.name}" for t in tasks)
        + ".\n\n"
        + common.table(["kind / task", *NOISE_COLUMNS[1:]], [noise_row(g, os_) for g, os_ in groups.items()])
    )
    text += (
        "\n## Unadjusted p-values\n\nUnder no difference a calibrated test's p-values are uniform: 5% of "
        "them below 0.05, half below 0.5. With one treatment Holm's correction multiplies the only p-value "
        "by 1, so the adjusted p-value is the unadjusted one"
        + (
            " (it was, in every run)"
            if holm_same
            else " (but some runs' adjusted p-values differ: see the runs)"
        )
        + ".\n\n"
        + common.table(["kind / task", *P_COLUMNS], p_rows)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    plot(groups, args.out / "calibration.png")
    text += "\nThe p-values' distribution per kind and task: `calibration.png`.\n"
    text += "\n## Runs\n\n" + runs_table(outcomes)
    common.write(args.out, "calibration.md", text)
    common.write(args.out, "calibration.json", json.dumps(figures(tasks, kinds, outcomes), indent=2) + "\n")
    return text


if __name__ == "__main__":
    main()
