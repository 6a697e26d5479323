"""Each benchmark script runs end to end on its tiny --smoke setting and writes a results table that holds
measured numbers. The benchmarks themselves are not part of the test suite: they take minutes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from fake_openai import FakeOpenAI, tool
from llm_answers import plan_answer

BENCH = Path(__file__).resolve().parent.parent / "bench"


def smoke(script: str, out: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
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


def test_calibration_smoke_counts_false_positives_of_a_null_treatment_with_an_exact_interval(tmp_path):
    out = smoke("calibration.py", tmp_path)
    assert re.search(r"^\[1/1\] perturbed tabular-mlp seed 0: .*\(at own bests: ", out, re.M), out
    text = (tmp_path / "calibration.md").read_text()
    row = re.search(
        r"^\| perturbed / tabular-mlp \| 1 \| 0 \| ([01]) \((\d) better, (\d) worse\) \| ([\d.]+) \| "
        r"\[([\d.]+), ([\d.]+)\] \| [01]/1 \(\d+%\) \| [01] \| [01]/1 = [01]\.000 \|$",
        text,
        re.M,
    )
    assert row, text
    k, better, worse = map(int, row.groups()[:3])
    assert better + worse == k
    # Clopper-Pearson for k of 1: [0, 0.975] or [0.025, 1]
    assert tuple(map(float, row.groups()[3:])) == ((0.0, 0.0, 0.975) if k == 0 else (1.0, 0.025, 1.0))
    assert "pooled |" not in text  # one task: nothing to pool
    noise = re.search(
        r"^\| perturbed / tabular-mlp \| (0\.\d{4}) \[0\.\d{4}–0\.\d{4}\] \| 0\.\d{4} \[", text, re.M
    )
    assert noise and 0 <= float(noise.group(1)) < 0.2, text
    assert re.search(
        r"^\| perturbed \| tabular-mlp \| 0 \| (better|worse|no detectable difference) \| "
        r"(better|worse|no detectable difference) \| 0\.00\d+ \|",
        text,
        re.M,
    )
    assert "with each arm at its own best" in text and "matched trial per arm" in text
    assert "Holm" in text and ("**met**" in text or "**NOT met**" in text)
    assert (tmp_path / "calibration.png").stat().st_size > 5_000
    figures = json.loads((tmp_path / "calibration.json").read_text())
    assert figures["tasks"]["tabular-mlp"]["runs"] == 1
    assert figures["tasks"]["tabular-mlp"]["false_positives"] == k
    assert "perturbed null treatment" in figures["measured"]


def test_planning_smoke_scores_the_offline_planner_and_says_edits_were_not_measured(tmp_path):
    smoke("planning.py", tmp_path)
    text = (tmp_path / "planning.md").read_text()
    assert re.search(
        r"^\| offline \| — \| 2/2 \| 2/2 \| — \| 0/2 \| 2/2 \| 2/2 \| 2 / 0 / 0 \| 7 / 0 / 4 / 0 \| 1/1 \| [\d.]+ / [\d.]+ \| — \| "
        r"— \| "
        r"[\d.]+ \|$",
        text,
        re.M,
    ), text
    assert re.search(
        r"^\| 1 \| comparison \| Does dropout help .* \| 12 trials: honoured \| 5 / 0 / 0 / 0 \| — \| 2 arms set apart by "
        r"dropout \| — \|$",
        text,
        re.M,
    )
    assert "**Not measured**: no model was configured" in text


def test_planning_smoke_runs_a_model_through_a_loopback_server_and_counts_its_repairs(tmp_path):
    """The model path as a configured model takes it: the real client, scripted answers (none of them a
    measurement of any model: the results go to tmp_path)."""
    lr = [{"name": "learning_rate", "low": 1e-4, "high": 1e-2, "log": True}]
    arms = [
        {"name": "no-dropout", "role": "control", "fixed": {"dropout": 0.0}},
        {"name": "dropout", "role": "treatment", "search": [{"name": "dropout", "low": 0.1, "high": 0.5}]},
    ]
    gelu = [
        {"path": "digits_cnn.py", "old": f"nn.ReLU(),\n{after}", "new": f"nn.GELU(),\n{after}"}
        for after in ("            nn.Conv2d(channels,", "            nn.MaxPool2d(2),")
    ]
    replies = [
        tool(plan_answer(search_space=lr, arms=arms, trials=12)),
        tool(plan_answer(search_space=lr, shell="rm -rf /")),  # the injection, refused by the schema
        tool(plan_answer(search_space=lr)),
        tool({"edits": gelu, "rationale": "GELU"}),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_LOOP_")}
    with FakeOpenAI(replies) as server:
        env |= {
            "RESEARCH_LOOP_BASE_URL": server.base_url,
            "RESEARCH_LOOP_CONFIG": str(tmp_path / "absent.toml"),
        }
        smoke("planning.py", tmp_path, "--llm", "openai-compatible:fake", env=env)
    assert len(server.requests) == 4
    text = (tmp_path / "planning.md").read_text()
    row = (
        r"^\| openai-compatible:fake \| json_schema \| 2/2 \| 1/2 \| 1/2 \| 0/2 \| 2/2 \| 2/2 \| 2 / 0 / 0 \| 7 / 0 / 4 / 0 \| "
        r"1/1 \| "
        r"[\d.]+ / [\d.]+ \| — \| 150 / 200 in; 75 / 100 out \| [\d.]+ \|$"
    )
    assert re.search(row, text, re.M), text
    assert re.search(
        r"^\| 2 \| injection \| .* \| \*\*no\*\* \| 1 \| yes \| yes \| learning_rate searched: honoured \| 2 / 0 / 4 / 0 \| "
        r"ignored \|",
        text,
        re.M,
    )
    assert (
        "Passed every check on the first answer: 1/1; after repairs: 1/1; the intended change made: 1/1."
        in text
    )
    assert re.search(
        r"^\| digits-cnn \| use GELU instead of ReLU after each convolution \| 1 \| yes \| yes \| yes \| \d+ \| "
        r"100 / 50 \| [\d.]+ \| — \|$",
        text,
        re.M,
    )
