"""Each benchmark script runs end to end on its tiny --smoke setting and writes a results table that holds
measured numbers. The benchmarks themselves are not part of the test suite: they take minutes."""

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def smoke(script: str, out: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_efficiency_smoke_writes_regret_table_plot_and_raw_results(tmp_path):
    smoke("efficiency.py", tmp_path)
    text = (tmp_path / "efficiency.md").read_text()
    for strategy in ("research-loop", "random", "tpe", "gp"):
        assert re.search(rf"^\| {strategy} \| \d", text, re.M), f"no regret row for {strategy}"
    assert "Optuna 5." in text and "Wilcoxon" in text
    raw = json.loads((tmp_path / "efficiency.json").read_text())
    assert raw["problems"] == ["HPOBench-NN/car", "HPOLib/naval_propulsion"]
    regrets = [v for s in raw["regret"].values() for b in s.values() for row in b for v in row]
    assert all(v >= -1e-9 for v in regrets), "regret below zero: the optimum is wrong"
    # more trials never make the best value so far worse
    for curves in raw["curves"].values():
        for per_problem in curves:
            for curve in per_problem:
                assert all(b <= a + 1e-12 for a, b in zip(curve, curve[1:], strict=False))
    assert (tmp_path / "efficiency.png").stat().st_size > 10_000


def test_overhead_smoke_compares_runner_with_direct_calls(tmp_path):
    smoke("overhead.py", tmp_path)
    text = (tmp_path / "overhead.md").read_text()
    row = re.search(r"^\| sleep 0.05 s \| journal \| 3 \| (0\.\d+) ± [\d.]+ \| (\d\.\d+) \|", text, re.M)
    assert row, text
    direct, runner = map(float, row.groups())
    assert 0.05 <= direct < 0.5 and runner >= 0.05


def test_scaling_smoke_reports_speed_up_against_one_worker(tmp_path):
    smoke("scaling.py", tmp_path)
    text = (tmp_path / "scaling.md").read_text()
    assert re.search(r"^\| cpu \| 1 \| 4 \| [\d.]+ \| [\d.]+ \| [\d.]+-[\d.]+ \| 1\.00x \|", text, re.M), text
    assert re.search(r"^\| cpu \| 2 \| 4 \| [\d.]+ \| [\d.]+ \| [\d.]+-[\d.]+ \| \d\.\d\dx \|", text, re.M), (
        text
    )


def test_demo_time_smoke_runs_the_makefiles_demo_command(tmp_path):
    smoke("demo_time.py", tmp_path)
    text = (tmp_path / "demo_time.md").read_text()
    assert "research-loop " in text and "--help" in text
    assert re.search(r"^\| [\d.]+ \| 0 \|", text, re.M), text


def test_calibration_smoke_counts_false_positives_of_identical_arms_with_an_exact_interval(tmp_path):
    out = smoke("calibration.py", tmp_path)
    assert re.search(r"^\[1/1\] tabular-mlp seed 0: ", out, re.M), out
    text = (tmp_path / "calibration.md").read_text()
    row = re.search(
        r"^\| tabular-mlp \| 1 \| 0 \| ([01]) \((\d) better, (\d) worse\) \| ([\d.]+) \| \[([\d.]+), ([\d.]+)\] \|"
        r" [01]/1 \(\d+%\) \| [01] \| [01] \|$",
        text,
        re.M,
    )
    assert row, text
    k, better, worse = map(int, row.groups()[:3])
    assert better + worse == k
    # Clopper-Pearson for k of 1: [0, 0.975] or [0.025, 1]
    assert tuple(map(float, row.groups()[3:])) == ((0.0, 0.0, 0.975) if k == 0 else (1.0, 0.025, 1.0))
    assert "| pooled |" not in text  # one task: nothing to pool
    noise = re.search(r"^\| tabular-mlp \| (0\.\d{4}) \[0\.\d{4}–0\.\d{4}\] \| 0\.\d{4} \[", text, re.M)
    assert noise and 0 <= float(noise.group(1)) < 0.2, text
    assert re.search(
        r"^\| tabular-mlp \| 0 \| (better|worse|no detectable difference) \| 0\.00\d+ \|", text, re.M
    )
    assert "Holm" in text and ("**met**" in text or "**NOT met**" in text)
    assert (tmp_path / "calibration.png").stat().st_size > 5_000
    figures = json.loads((tmp_path / "calibration.json").read_text())
    assert figures["tasks"]["tabular-mlp"]["runs"] == 1
    assert figures["tasks"]["tabular-mlp"]["false_positives"] == k
