"""Trial throughput with 1, 2 (and, where the machine has the cores, 4 and 8) worker processes on one study.

Three trial kinds, each a fixed cost per trial, run through research-loop's runner on the journal file storage:
- cpu: pure-Python arithmetic in the contract script: single-threaded real compute, the case the target is
  about (two workers can only go twice as fast if each gets a core of its own);
- digits-cnn: the real task; torch's threads are shared out between the workers (torch_threads), so one
  worker already uses every core and more workers gain less;
- sleep: no compute at all, for reference: it scales with the number of workers whatever the cores.

Throughput is counted in the steady state (each worker's first trial excluded) from the storage's timestamps,
and also end to end (worker start-up included). A shared 2-core virtual machine's speed drifts by 20% from one
minute to the next, so each setting runs `--repeats` times, the worker counts taking turns, and the median counts.

    python bench/scaling.py             # 16 trials per setting, 3 repeats (about 9 min on 2 cores)
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import common
import runs

from experiments import registry

TRIALS = 16
REPEATS = 3
# Fixed costs of the contract script's trials: pure-Python rounds of arithmetic, or seconds of sleep.
COSTS = {"cpu": {"seconds": 0.0, "work": 4_000_000}, "sleep": {"seconds": 0.5, "work": 0}}
DIGITS_HPARAMS = {"epochs": 4, "batch_size": 32}


def worker_counts(cores: int) -> list[int]:
    return [w for w in (1, 2, 4, 8) if w <= max(2, cores)]


def measure(kind: str, workers: int, trials: int, root: Path, scale: float) -> dict[str, Any]:
    url = str(root / f"{kind}-{workers}.journal")
    if kind == "digits-cnn":
        task = registry.get(kind)
        folder = runs.workspace(root, task.script.name, task.script.read_text())
        timeline = runs.run_study(url, folder, task.script.name, [], DIGITS_HPARAMS, trials, workers)
    else:
        fixed = {k: type(v)(v * scale) for k, v in COSTS[kind].items()}
        folder = runs.workspace(root, "contract.py", runs.CONTRACT_SCRIPT)
        timeline = runs.run_study(url, folder, "contract.py", runs.CONTRACT_SPACE, fixed, trials, workers)
    return {
        "kind": kind,
        "workers": workers,
        "trials": trials,
        "steady": timeline.steady_throughput(skip=workers),
        "end_to_end": trials / (timeline.ended - timeline.started),
        "mean_trial_s": statistics.fmean(e - s for s, e in timeline.trials[workers:]),
    }


def median_run(runs_: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat whose steady throughput is the median, with how far the repeats spread."""
    ranked = sorted(runs_, key=lambda r: r["steady"])
    return {**ranked[len(ranked) // 2], "spread": (ranked[0]["steady"], ranked[-1]["steady"])}


def report(rows: list[dict[str, Any]], command: list[str], repeats: int) -> str:
    text = common.header("Worker scaling: trial throughput", command)
    text += (
        "\nOne study per setting on the journal file storage; `speed-up` is steady-state throughput over the "
        f"1-worker throughput of the same trial kind, measured in the same run; the median of {repeats} "
        "repeats, with their range. `s per trial` excludes each worker's first trial. No GPU on this machine: the "
        "shared-GPU measurement (workers on one GPU, text-classification) was not run.\n\n"
    )
    base = {r["kind"]: r for r in rows if r["workers"] == 1}
    text += common.table(
        ["trial", "workers", "trials", "s per trial", "trials/s steady", "repeats' range", "speed-up"]
        + ["trials/s end to end", "speed-up end to end"],
        [
            [
                r["kind"],
                r["workers"],
                r["trials"],
                f"{r['mean_trial_s']:.3f}",
                f"{r['steady']:.3f}",
                f"{r['spread'][0]:.3f}-{r['spread'][1]:.3f}",
                f"{r['steady'] / base[r['kind']]['steady']:.2f}x",
                f"{r['end_to_end']:.3f}",
                f"{r['end_to_end'] / base[r['kind']]['end_to_end']:.2f}x",
            ]
            for r in rows
        ],
    )
    two = [r for r in rows if r["kind"] == "cpu" and r["workers"] == 2]
    if two:
        ratio = two[0]["steady"] / base["cpu"]["steady"]
        verdict = "met" if ratio >= 1.8 else "NOT met"
        text += f"\nTarget (2 workers >= 1.8x on single-threaded CPU-bound trials): **{verdict}** ({ratio:.2f}x).\n"
    return text


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    trials, scale, repeats = (4, 0.05, 1) if args.smoke else (args.trials, 1.0, args.repeats)
    kinds = ["cpu"] if args.smoke else ["cpu", "digits-cnn", "sleep"]
    counts = worker_counts(common.cores())
    rows = []
    with tempfile.TemporaryDirectory(prefix="rl-scaling-") as tmp:
        for kind in kinds:
            taken: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
            for repeat in range(repeats):
                for workers in counts:
                    root = Path(tmp) / f"{kind}-{workers}-{repeat}"
                    root.mkdir()
                    taken[workers].append(measure(kind, workers, trials, root, scale))
                    print(
                        f"{kind}, {workers} workers: {taken[workers][-1]['steady']:.3f} trials/s", flush=True
                    )
            rows += [median_run(taken[w]) for w in counts]
    text = report(rows, common.command_line(), repeats)
    path = common.write(args.out, "scaling.md", text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
