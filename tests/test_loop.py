"""The whole loop offline: real planner, patches, worker processes, storage, reports; tiny budgets."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from typer.testing import CliRunner

from agent import runs
from agent.cli import app
from agent.code import coder
from agent.config import Settings
from agent.loop import drive as loop
from agent.report import render as reporting
from agent.results import RunResult
from experiments import storage as storages

# The metric climbs with the learning rate, so a grid's top point wins and sits on the range's edge.
RISING = """
import time

# --- hyperparameters ---
learning_rate = 0.01
epochs = 3
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    time.sleep({sleep})
    import math
    lr = hparams["learning_rate"]
    score = 0.5 + 0.04 * math.log10(lr / 1e-6) + 0.001 * (seed % 3)
    metrics = {{"accuracy": score}}
    if holdout:
        metrics["test_accuracy"] = score - 0.01
    return metrics
"""

FLAT = """
# --- hyperparameters ---
learning_rate = 0.01
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    return {"accuracy": 0.5, "test_accuracy": 0.5} if holdout else {"accuracy": 0.5}
"""


def write_script(folder: Path, source: str) -> Path:
    path = folder / "train.py"
    path.write_text(source)
    return path


def settings_for(tmp_path: Path) -> Settings:
    return Settings(reports_dir=tmp_path / "reports")


def start_and_drive(tmp_path: Path, options: loop.LoopOptions) -> tuple[Path, RunResult]:
    settings = settings_for(tmp_path)
    folder = loop.start(options, settings, ["test"])
    return folder, loop.drive(folder, settings, report=reporting.render)


def tuning_trials(result: RunResult) -> list:
    return [t for r in result.rounds for s in r.studies for t in s.trials]


def test_second_round_searches_a_space_revised_by_a_finding(tmp_path):
    script = write_script(tmp_path, RISING.format(sleep=0))
    options = loop.LoopOptions(
        idea="Grid search of the learning rate for my training script", script=script,
        trials=16, rounds=2, seeds=2, workers=1,
    )  # fmt: skip
    folder, result = start_and_drive(tmp_path, options)
    first, second = result.rounds
    edge = [f for f in first.findings if f.kind == "edge" and f.param == "learning_rate"]
    assert edge and edge[0].evidence["side"] == "high"
    assert any("widened learning_rate" in change for change in first.revision)
    lr_first = next(p for p in first.studies[0].search_space if p.name == "learning_rate")
    lr_second = next(p for p in second.studies[0].search_space if p.name == "learning_rate")
    assert lr_second.high > lr_first.high and lr_second.low == lr_first.low
    assert result.best is not None and result.best.params["learning_rate"] > lr_first.high
    assert runs.load(folder).status == "awaiting_approval"
    assert (folder / "report.md").is_file() and (folder / "patch.diff").is_file()


def test_two_rounds_without_gain_stop_the_loop_early(tmp_path):
    script = write_script(tmp_path, FLAT)
    options = loop.LoopOptions(
        idea="Random search of the learning rate for my training script", script=script,
        trials=12, rounds=4, seeds=2, workers=1,
    )  # fmt: skip
    _, result = start_and_drive(tmp_path, options)
    assert [r.phase for r in result.rounds] == ["explore", "optimise", "optimise"]
    assert result.stop_reason == "2 rounds without a gain above the noise floor"
    no_gain = [any(f.kind == "no_gain" for f in r.findings) for r in result.rounds]
    assert no_gain == [False, True, True], "an explore round on a subset is not judged against the baseline"
    searched = [[t.params for t in r.studies[0].trials[1:]] for r in result.rounds[1:]]
    assert searched[0] != searched[1], "each round draws points of its own, not the last round's again"


def test_offline_run_on_a_real_task_ends_with_a_report_and_a_patch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["run", "Does dropout help a small MLP on the breast cancer table?", "--trials", "4", "--seeds", "2",
         "--rounds", "1", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "research-loop approve" in result.output
    folder = runs.all_folders(tmp_path / "reports")[0]
    stored = RunResult.model_validate_json((folder / "results.json").read_text())
    assert stored.plan.task == "tabular-mlp"
    assert [a.name for a in stored.plan.arms] == ["no-dropout", "dropout"]
    assert {a.name: a.trials for a in stored.arms} == {"no-dropout": 4, "dropout": 4}
    searched = [r for r in stored.rounds if r.phase != "matched"]
    assert sum(len(s.trials) for r in searched for s in r.studies) == 4 * 2 * len(stored.plan.samplers)
    assert stored.compared_at.keys() == {p.name for p in stored.plan.search_space}
    assert {a.final[0].params["learning_rate"] for a in stored.arms} == {stored.compared_at["learning_rate"]}
    assert stored.comparison is not None and stored.comparison.n_seeds == 2
    assert [c.treatment for c in stored.comparisons] == ["dropout"]
    assert "answer: " in result.output
    carried = {c.param: c.candidate for c in stored.patch_changes if c.carried}
    assert coder.load_record(folder).final_params == carried, "the patch writes only the supported values"
    assert ("+++ b/" in (folder / "patch.diff").read_text()) == bool(carried)


def test_planner_failure_ends_with_a_clear_error_and_the_folder_says_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESEARCH_LOOP_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RESEARCH_LOOP_API_KEY", "sk-test-planted-secret")
    result = CliRunner().invoke(
        app, ["run", "Tune the learning rate of the digits CNN", "--llm", "openai-compatible:none"]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "planning failed" in result.output
    folder = runs.all_folders(tmp_path / "reports")[0]
    info = runs.load(folder)
    assert info.status == "failed" and info.stage == "plan"
    assert "sk-test-planted-secret" not in "".join(p.read_text() for p in folder.iterdir() if p.is_file())


def _finished_counts(url: str, run_id: str) -> dict[str, tuple[int, int]]:
    """study -> (trials that count: finished and not replaced by a retry, distinct trial numbers)."""
    storage = storages.open_storage(url)
    out = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
        counted = [t for t in trials if t.state.is_finished() and t.number not in retried]
        out[summary.study_name.removeprefix(run_id + "-")] = (len(counted), len({t.number for t in trials}))
    return out


def test_a_run_killed_mid_study_resumes_to_exactly_the_trials_asked(tmp_path):
    script = write_script(tmp_path, RISING.format(sleep=0.4))
    env = {**os.environ, "RESEARCH_LOOP_REPORTS_DIR": str(tmp_path / "reports")}
    cmd = [sys.executable, "-m", "agent.cli", "run", "Random search of the learning rate for my script",
           "--script", str(script), "--trials", "8", "--rounds", "1", "--seeds", "2", "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 120
    folder = None
    while time.monotonic() < deadline:
        found = runs.all_folders(tmp_path / "reports")
        if found and (found[0] / storages.JOURNAL_FILE).is_file():
            folder = found[0]
            counts = _finished_counts(str(folder / storages.JOURNAL_FILE), folder.name)
            if any(k.startswith("r1-") and v[0] >= 2 for k, v in counts.items()):
                break
        time.sleep(0.2)
    assert folder is not None, "the run never reached its first study"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert runs.load(folder).stage == "round-1"

    result = CliRunner().invoke(app, ["resume", folder.name], env=env)
    assert result.exit_code == 0, result.output
    stored = RunResult.model_validate_json((folder / "results.json").read_text())
    counts = _finished_counts(str(folder / storages.JOURNAL_FILE), folder.name)
    assert counts["baseline"][0] == 2
    assert sum(v[0] for k, v in counts.items() if k.startswith("r1-")) == 8
    trials = tuning_trials(stored)
    replaced = {t.retry_of for t in trials if t.retry_of is not None}
    assert len([t for t in trials if t.state != "WAITING" and t.number not in replaced]) == 8
    assert json.loads((folder / "run.json").read_text())["status"] == "awaiting_approval"
