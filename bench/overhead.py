"""Per-trial overhead of research-loop's runner against calling the training script's entry point directly.

The runner's cost per trial is everything around `run()`: the worker popping a ticket from the storage, the
sampler's suggestion, heartbeats (PostgreSQL), storing metrics and the result, and the coordinator polling
progress and watching workers in the background. Measured side by side in one process tree:

- direct: `run(hparams, seed=...)` called in a loop in this process, with the hyperparameters the runner's
  trials used (read back from the storage);
- runner: the same trials as tickets of a study run by one worker process, on the journal file and on
  PostgreSQL.

Per-trial time is taken in the steady state (first trial excluded on both sides, as it pays one-time warm-up);
the one-time costs (worker start-up with its torch import, shutdown) are reported separately. The mean is what
throughput pays; the median start-to-start cycle is the typical trial, without the rare stalls of the disk's
fsync (a journal write waits for it), whose latency is measured beside them.
Two trial kinds: a contract script that sleeps 1 s, and the real digits-cnn task sized to about 1 s.

    python bench/overhead.py            # 20 trials of each kind on each storage (about 3 min)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import runs

from experiments import registry
from experiments.script import load_module
from experiments.training import torch_threads

POSTGRES = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")
DIGITS_HPARAMS = {"epochs": 10, "batch_size": 32}
TRIALS = 20
SMOKE_TRIALS = 3
FSYNC_CALLS = 200
SLEEP = "sleep"


def direct(script: Path, hparams: list[dict[str, Any]], seeds: list[int]) -> list[float]:
    """Seconds per call of the script's run(), in this process, after one warm-up call."""
    torch_threads(1)
    module = load_module(script)
    module.run(hparams[0], seed=seeds[0], device="cpu")
    times = []
    for hp, seed in zip(hparams, seeds, strict=True):
        t = time.perf_counter()
        module.run(hp, seed=seed, device="cpu")
        times.append(time.perf_counter() - t)
    return times


def fsync_latency_ms(folder: Path, calls: int) -> list[float]:
    """Latencies of appending a line and fsyncing it in `folder`, as the journal does."""
    path, times = folder / "fsync.probe", []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(calls):
            os.write(fd, b"x" * 200 + b"\n")
            t = time.perf_counter()
            os.fsync(fd)
            times.append(1000 * (time.perf_counter() - t))
            time.sleep(0.005)
    finally:
        os.close(fd)
        path.unlink()
    return times


def measure(kind: str, url: str, storage: str, root: Path, trials: int, seconds: float) -> dict[str, Any]:
    if kind == SLEEP:
        folder = runs.workspace(root, "contract.py", runs.CONTRACT_SCRIPT)
        script, space, fixed = folder / "contract.py", runs.CONTRACT_SPACE, {"seconds": seconds}
    else:
        task = registry.get("digits-cnn")
        folder = runs.workspace(root, task.script.name, task.script.read_text())
        script, space, fixed = folder / task.script.name, [task.search_space[0]], DIGITS_HPARAMS
    timeline = runs.run_study(url, folder, script.name, space, fixed, trials + 1, workers=1)
    calls = direct(script, [{**fixed, **p} for p in timeline.params[1:]], timeline.seeds[1:])
    per_direct = statistics.fmean(calls)
    per_runner = timeline.steady_per_trial_s()
    typical = statistics.median(timeline.steady_cycles_s()) - statistics.median(calls)
    return {
        "kind": f"sleep {seconds:g} s" if kind == SLEEP else kind,
        "storage": storage,
        "trials": trials,
        "direct_s": per_direct,
        "direct_sd": statistics.stdev(calls) if len(calls) > 1 else 0.0,
        "runner_s": per_runner,
        "overhead_ms": 1000 * (per_runner - per_direct),
        "overhead_pct": 100 * (per_runner - per_direct) / per_direct,
        "median_overhead_ms": 1000 * typical,
        "startup_s": timeline.startup_s,
        "shutdown_s": timeline.shutdown_s,
    }


def report(rows: list[dict[str, Any]], note: str, command: list[str], fsync_ms: list[float]) -> str:
    text = common.header("Runner overhead per trial", command)
    text += (
        "\nSteady state, first trial excluded on both sides. overhead = runner time per trial - direct time "
        "per call (the same hyperparameters and seeds); median overhead = median start-to-start cycle - "
        "median direct call. Negative values are measurement noise: the direct and runner trials run at "
        f"different moments on a shared CPU. This disk's fsync (append a line, then fsync, {len(fsync_ms)} "
        f"times): median {statistics.median(fsync_ms):.2f} ms, worst {max(fsync_ms):.0f} ms.\n\n"
    )
    text += common.table(
        ["trial", "storage", "trials", "direct s/trial", "runner s/trial", "overhead ms", "overhead %"]
        + ["median overhead ms"]
        + ["worker start-up s (once)", "shutdown s (once)"],
        [
            [
                r["kind"],
                r["storage"],
                r["trials"],
                f"{r['direct_s']:.4f} ± {r['direct_sd']:.4f}",
                f"{r['runner_s']:.4f}",
                f"{r['overhead_ms']:+.1f}",
                f"{r['overhead_pct']:+.2f}%",
                f"{r['median_overhead_ms']:+.1f}",
                f"{r['startup_s']:.2f}",
                f"{r['shutdown_s']:.2f}",
            ]
            for r in rows
        ],
    )
    sleep = [r for r in rows if r["kind"].startswith(SLEEP)]
    if sleep:
        worst = max(sleep, key=lambda r: r["overhead_ms"])
        verdict = "met" if worst["overhead_ms"] < 10 else "NOT met"
        text += (
            f"\nTarget (overhead under 1% of a 1-second trial, i.e. under 10 ms per trial, on the sleep trial "
            f"where nothing else varies): **{verdict}**; worst storage {worst['storage']}: "
            f"{worst['overhead_ms']:+.1f} ms per trial (median {worst['median_overhead_ms']:+.1f} ms).\n"
        )
    if note:
        text += f"\n{note}\n"
    return text


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--trials", type=int, default=TRIALS)
    args = parser.parse_args()
    trials, seconds = (SMOKE_TRIALS, 0.05) if args.smoke else (args.trials, 1.0)
    kinds = [SLEEP] if args.smoke else [SLEEP, "digits-cnn"]
    pg, why = (None, "not in --smoke") if args.smoke else runs.postgres_url(POSTGRES)
    note = "" if pg else f"PostgreSQL skipped: {why}."
    if note:
        print(note, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rl-overhead-") as tmp:
        root = Path(tmp)
        fsync = fsync_latency_ms(root, SMOKE_TRIALS if args.smoke else FSYNC_CALLS)
        for kind in kinds:
            storages = [("journal", str(root / "study.journal")), *([("postgresql", pg)] if pg else [])]
            for storage, url in storages:
                rows.append(measure(kind, url, storage, root, trials, seconds))
                print(f"{kind} on {storage}: {rows[-1]['overhead_ms']:+.1f} ms per trial", flush=True)
    text = report(rows, note, common.command_line(), fsync)
    path = common.write(args.out, "overhead.md", text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
