"""Search efficiency: research-loop's default strategy against Optuna's own samplers, on problems whose optimum
is known.

For every problem, strategy, budget (8, 16, 32, 64 trials) and seed: the normalized regret of the best trial
found (0 = the optimum, 1 = the median first trial of random search), the strategies' average rank, and a
paired Wilcoxon test over (problem, seed) of research-loop against each baseline.

Strategies:
- research-loop: `make_sampler("default", space, budget, seed)` (the code path every worker uses) with the
  task's defaults enqueued first through `warm_start`, exactly as a tuning study's first tickets;
- random: Optuna's RandomSampler; tpe: Optuna's default TPESampler(); gp: Optuna's GPSampler().

Optuna's samplers do not depend on the budget, so one 64-trial study gives all four budgets; research-loop's
default does (its start-up trials and sampler choice), so it runs one study per budget. Studies run
in-process on in-memory storage: the worker processes are measured by overhead.py and scaling.py.

    python bench/efficiency.py                 # 14 problems x 20 seeds (about 15 min on 2 cores)
    python bench/efficiency.py --quick         # 5 seeds
    python bench/efficiency.py --build-tables  # retrain the built-in tasks' look-up tables (about 12 min)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import common
import numpy as np
import optuna
import problems
from optuna.samplers import BaseSampler
from problems import Problem
from scipy import stats

from experiments.samplers import make_sampler, warm_start
from experiments.space import suggest

BUDGETS = (8, 16, 32, 64)
SEEDS = 20
QUICK_SEEDS = 5
REFERENCE_DRAWS = 1001
REFERENCE_SEED = 10_000
REGRET_FLOOR = 1e-4  # the plot's log scale cannot show an exact 0
OURS = "research-loop"
TASKS = ("digits-cnn", "tabular-mlp")

optuna.logging.set_verbosity(optuna.logging.ERROR)


@dataclass(frozen=True)
class Strategy:
    name: str
    sampler: Callable[[Problem, int, int], BaseSampler]
    warm: bool = False
    budget_aware: bool = False


RANDOM = Strategy("random", lambda p, budget, seed: optuna.samplers.RandomSampler(seed=seed))
STRATEGIES = [
    Strategy(OURS, lambda p, budget, seed: make_sampler("default", p.space, budget, seed), True, True),
    RANDOM,
    Strategy("tpe", lambda p, budget, seed: optuna.samplers.TPESampler(seed=seed)),
    Strategy("gp", lambda p, budget, seed: optuna.samplers.GPSampler(seed=seed)),
]

_PROBLEMS: list[Problem] = []


def study(problem: Problem, strategy: Strategy, budget: int, seed: int) -> list[float]:
    """One tuning study of `budget` trials; the objective value of each trial in order."""
    sampler = strategy.sampler(problem, budget, seed)
    s = optuna.create_study(direction=problem.direction, sampler=sampler)
    for params in warm_start(problem.space, [problem.defaults]) if strategy.warm else []:
        s.enqueue_trial(params)
    values = []
    for _ in range(budget):
        trial = s.ask()
        value = problem.value(suggest(trial, problem.space))
        s.tell(trial, value)
        values.append(value)
    return values


def reference(problem: Problem) -> float:
    """The median value of random search's first trial: its trials are independent draws from the same
    distribution, so one long random study (on a seed none of the paired studies use) estimates it closely."""
    return float(np.median(study(problem, RANDOM, REFERENCE_DRAWS, REFERENCE_SEED)))


def best_so_far(values: list[float], direction: str) -> np.ndarray:
    pick = np.maximum if direction == "maximize" else np.minimum
    return pick.accumulate(np.array(values))


def _job(args: tuple[int, int, tuple[int, ...], tuple[str, ...]]) -> dict:
    """All strategies on one (problem, seed): best-so-far curves, final values per budget, sampler seconds."""
    import torch
    from threadpoolctl import threadpool_limits

    # one thread per process: BLAS's worker threads only spin against the other processes of the pool
    torch.set_num_threads(1)
    threadpool_limits(1)
    index, seed, budgets, names = args
    problem = _PROBLEMS[index]
    out: dict = {"problem": index, "seed": seed, "curve": {}, "final": {}, "seconds": {}}
    for strategy in (s for s in STRATEGIES if s.name in names):
        started = time.process_time()
        runs = {b: study(problem, strategy, b, seed) for b in budgets} if strategy.budget_aware else {}
        longest = runs.get(max(budgets)) or study(problem, strategy, max(budgets), seed)
        curve = best_so_far(longest, problem.direction)
        out["curve"][strategy.name] = curve.tolist()
        out["final"][strategy.name] = {
            b: float(best_so_far(runs[b], problem.direction)[-1]) if runs else float(curve[b - 1])
            for b in budgets
        }
        out["seconds"][strategy.name] = time.process_time() - started
    return out


def run(
    chosen: list[Problem], seeds: int, budgets: tuple[int, ...], processes: int, names: tuple[str, ...]
) -> dict:
    """Every job in a pool of processes; values turned into normalized regret per problem."""
    global _PROBLEMS
    _PROBLEMS = chosen
    started = time.monotonic()
    refs = [reference(p) for p in chosen]
    jobs = [(i, seed, budgets, names) for i in range(len(chosen)) for seed in range(seeds)]
    with Pool(processes) as pool:
        done = pool.map(_job, jobs, chunksize=1)
    regret = {n: {b: np.zeros((len(chosen), seeds)) for b in budgets} for n in names}
    curves = {n: np.zeros((len(chosen), seeds, max(budgets))) for n in names}
    seconds = dict.fromkeys(names, 0.0)
    for job in done:
        p, seed, problem = job["problem"], job["seed"], chosen[job["problem"]]
        for n in names:
            curves[n][p, seed] = [problem.regret(v, refs[p]) for v in job["curve"][n]]
            for b in budgets:
                regret[n][b][p, seed] = problem.regret(job["final"][n][b], refs[p])
            seconds[n] += job["seconds"][n]
    return {
        "problems": [p.name for p in chosen],
        "groups": [p.group for p in chosen],
        "reference": refs,
        "optimum": [p.optimum for p in chosen],
        "defaults_regret": [
            p.regret(p.value(warm_start(p.space, [p.defaults])[0]), r) if p.defaults else None
            for p, r in zip(chosen, refs, strict=True)
        ],
        "seeds": seeds,
        "budgets": list(budgets),
        "regret": regret,
        "curves": curves,
        "sampler_seconds": seconds,
        "wall_s": time.monotonic() - started,
        "processes": processes,
    }


def ranks(result: dict, budget: int) -> dict[str, float]:
    """Average rank of each strategy (1 = lowest regret) over every (problem, seed), ties shared."""
    names = list(result["regret"])
    stacked = np.stack([result["regret"][n][budget].ravel() for n in names])
    ranked = stats.rankdata(stacked, axis=0)
    return {n: float(ranked[i].mean()) for i, n in enumerate(names)}


def paired(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Wins, ties, losses of `ours` (lower regret wins) and the two-sided Wilcoxon signed-rank p-value."""
    a, b = ours.ravel(), theirs.ravel()
    diff = a - b
    wins, losses = int((diff < -1e-12).sum()), int((diff > 1e-12).sum())
    p = float(stats.wilcoxon(a, b).pvalue) if wins + losses else 1.0
    return {"wins": wins, "ties": len(diff) - wins - losses, "losses": losses, "p": p}


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) >= 1e-4 or x == 0 else f"{x:.1e}"


def report(result: dict, command: list[str]) -> str:
    names, budgets = list(result["regret"]), result["budgets"]
    baselines = [n for n in names if n != OURS]
    mean = {n: {b: float(result["regret"][n][b].mean()) for b in budgets} for n in names}
    rank = {b: ranks(result, b) for b in budgets}
    n_problems = len(result["problems"])
    text = common.header("Search efficiency: research-loop's default strategy against Optuna's", command)
    text += (
        f"\n{n_problems} problems x {result['seeds']} paired seeds; "
        f"{result['processes']} processes, {result['wall_s']:.0f} s wall. "
        f"Normalized regret: 0 = the problem's optimum, 1 = the median first trial of random search. "
        "Lower is better.\n\n"
        f'- {OURS}: `make_sampler("default", space, budget, seed)` (what every worker builds) with the '
        "problem's defaults enqueued as the first trial (none for HPOLib, which publishes none); one study per "
        "budget, since its choices depend on the budget.\n"
        f"- random, tpe, gp: Optuna {optuna.__version__}'s `RandomSampler()`, `TPESampler()` and "
        "`GPSampler()` with their default settings; one 64-trial study each, read at every budget.\n\n"
        "## Mean normalized regret\n\n"
    )
    text += common.table(
        ["strategy", *(f"{b} trials" for b in budgets)],
        [[n, *(_fmt(mean[n][b]) for b in budgets)] for n in names],
    )
    text += "\n## Average rank (1 = best)\n\n"
    text += common.table(
        ["strategy", *(f"{b} trials" for b in budgets)],
        [[n, *(f"{rank[b][n]:.2f}" for b in budgets)] for n in names],
    )
    text += (
        f"\n## {OURS} against each baseline: paired Wilcoxon signed-rank test over (problem, seed)\n\n"
        "Two-sided; pairs with equal regret (ties) are left out of the test, as scipy's default does.\n\n"
    )
    rows, tests = [], {}
    for b in budgets:
        for other in baselines:
            t = tests[(b, other)] = paired(result["regret"][OURS][b], result["regret"][other][b])
            rows.append(
                [
                    b,
                    other,
                    _fmt(mean[OURS][b]),
                    _fmt(mean[other][b]),
                    f"{t['wins']}/{t['ties']}/{t['losses']}",
                ]
                + [f"{t['p']:.2g}"]
            )
    text += common.table(
        ["trials", "baseline", f"{OURS} regret", "baseline regret", "wins/ties/losses", "p"], rows
    )
    text += "\n## Targets\n\n" + targets(result, mean, tests)
    text += "\n## Mean normalized regret by problem group\n\n"
    groups = list(dict.fromkeys(result["groups"]))
    rows = []
    for g in groups:
        mask = np.array([x == g for x in result["groups"]])
        rows += [[g, n, *(_fmt(float(result["regret"][n][b][mask].mean())) for b in budgets)] for n in names]
    text += common.table(["group", "strategy", *(f"{b}" for b in budgets)], rows)
    at = 16 if 16 in budgets else budgets[-1]
    text += f"\n## Per problem at {at} trials (mean normalized regret; the defaults' own regret)\n\n"
    rows = []
    for i, name in enumerate(result["problems"]):
        d = result["defaults_regret"][i]
        means = [_fmt(float(result["regret"][n][at][i].mean())) for n in names]
        rows.append([name, "-" if d is None else _fmt(d), *means])
    text += common.table(["problem", "defaults", *names], rows)
    total = {n: result["sampler_seconds"][n] for n in names}
    studies = n_problems * result["seeds"]
    text += "\n## Cost: CPU seconds per (problem, seed), all budgets\n\n"
    text += common.table(["strategy", "s"], [[n, f"{total[n] / studies:.2f}"] for n in names])
    return text


def targets(result: dict, mean: dict, tests: dict) -> str:
    """The issue's two targets, checked against this run's numbers."""
    lines = []
    budgets = result["budgets"]
    if {16, 32} <= set(budgets) and "tpe" in mean:
        ours, theirs = mean[OURS][16], mean["tpe"][32]
        t = paired(result["regret"][OURS][16], result["regret"]["tpe"][32])
        verdict = "met" if ours <= theirs else "NOT met"
        lines.append(
            f"- {OURS} at 16 trials vs Optuna's default TPE at 32 trials: mean regret {_fmt(ours)} vs "
            f"{_fmt(theirs)} ({t['wins']}/{t['ties']}/{t['losses']} wins/ties/losses, p = {t['p']:.2g}): "
            f"**{verdict}**"
        )
    if "random" in mean:
        beaten = [
            b for b in budgets if tests[(b, "random")]["p"] < 0.05 and mean[OURS][b] < mean["random"][b]
        ]
        missed = [b for b in budgets if b not in beaten]
        verdict = "met" if not missed else f"NOT met at {', '.join(map(str, missed))} trials"
        ps = ", ".join(f"{b}: p = {tests[(b, 'random')]['p']:.2g}" for b in budgets)
        lines.append(f"- beats random search at every budget with p < 0.05 ({ps}): **{verdict}**")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ["all", *dict.fromkeys(result["groups"])]
    cols = 2
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3.6 * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups, strict=False):
        mask = np.array([group in ("all", g) for g in result["groups"]])
        for n, curves in result["curves"].items():
            y = np.maximum(curves[mask].mean(axis=(0, 1)), REGRET_FLOOR)
            width = 2.4 if n == OURS else 1.3
            (line,) = ax.plot(np.arange(1, len(y) + 1), y, label=n, linewidth=width)
            if n == OURS:
                dots = [max(result["regret"][n][b][mask].mean(), REGRET_FLOOR) for b in result["budgets"]]
                ax.scatter(result["budgets"], dots, color=line.get_color(), zorder=3, s=22)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{group} ({int(mask.sum())} problems)", fontsize=10)
        ax.set_xlabel("trials")
        ax.set_ylabel("mean normalized regret")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    axes[0][0].legend()
    fig.suptitle(
        f"Best so far over {result['seeds']} seeds per problem; dots: {OURS} studies run with exactly that budget",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_json(result: dict) -> str:
    def plain(x: object) -> object:
        if isinstance(x, np.ndarray):
            return np.round(x, 6).tolist()
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        return x

    return json.dumps(plain(result))


def load(smoke: bool) -> list[Problem]:
    if smoke:
        return problems.tabular_problems(limit=1)
    tabular = problems.tabular_problems()
    missing = [t for t in TASKS if not problems.table_path(t).is_file()]
    if missing:
        raise SystemExit(f"no look-up table for {', '.join(missing)}: run with --build-tables first")
    return tabular + [problems.task_problem(t) for t in TASKS]


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seeds instead of {SEEDS}")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--processes", type=int, default=common.cores())
    parser.add_argument("--build-tables", action="store_true", help="retrain the built-in tasks' tables")
    args = parser.parse_args()
    if args.build_tables:
        for task in TASKS:
            print(f"built {problems.build_task_table(task, args.processes)}", flush=True)
    seeds = args.seeds or (2 if args.smoke else QUICK_SEEDS if args.quick else SEEDS)
    budgets = (4, 8) if args.smoke else BUDGETS
    print(f"Optuna {optuna.__version__}; {common.machine()}", flush=True)
    chosen = load(args.smoke)
    result = run(chosen, seeds, budgets, args.processes, tuple(s.name for s in STRATEGIES))
    text = report(result, common.command_line())
    common.write(args.out, "efficiency.md", text)
    common.write(args.out, "efficiency.json", to_json(result))
    plot(result, args.out / "efficiency.png")
    print(text)
    print(f"wrote {args.out / 'efficiency.md'}, efficiency.json, efficiency.png in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
