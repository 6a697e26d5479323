"""`research-loop study` through typer's runner: a real small study, and refusals that leave nothing behind."""

import json

import pytest
from typer.testing import CliRunner

from agent.cli import app
from experiments import registry
from experiments.records import StudyResult


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_study_writes_a_run_folder_with_results_and_report(in_tmp):
    result = CliRunner().invoke(
        app,
        [
            "study",
            "--task",
            "tabular-mlp",
            "--trials",
            "3",
            "--seeds",
            "2",
            "--workers",
            "2",
            "--sampler",
            "random",
        ],
    )
    assert result.exit_code == 0, result.output
    (folder,) = (in_tmp / "reports").iterdir()
    assert str(folder.name) in result.output
    stored = StudyResult.model_validate_json((folder / "results.json").read_text())
    assert len(stored.trials) == 3 and len(stored.baseline) == 2 and len(stored.final) == 2
    assert (folder / "report.md").is_file() and (folder / "study.journal").is_file()
    assert json.loads((folder / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--sampler", "annealing"], "unknown sampler 'annealing'"),
        (["--pruner", "wilcoxon"], "unknown pruner 'wilcoxon'"),
        (["--trials", "0"], "must each be at least 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], "unreachable"),
        (["--storage", "redis://localhost"], "unsupported storage URL"),
        (["--script", "missing.py"], "no such file"),
    ],
)
def test_invalid_input_exits_non_zero_with_one_line_and_no_run_folder(in_tmp, args, message):
    result = CliRunner().invoke(app, ["study", *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert "secret" not in result.output
    assert not (in_tmp / "reports").exists() or not any((in_tmp / "reports").iterdir())


def test_a_hub_model_missing_offline_is_refused_before_any_trial(in_tmp, monkeypatch):
    source = registry.get("text-classification").script.read_text()
    script = in_tmp / "bert_task.py"
    script.write_text(source.replace('model_name = "', 'model_name = "bert-base-uncased"  # was "', 1))
    task = registry.get("text-classification").model_copy(update={"name": "bert-sst2", "script": script})
    monkeypatch.setitem(registry.TASKS, task.name, task)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(in_tmp / "empty-cache"))
    result = CliRunner().invoke(app, ["study", "--task", "bert-sst2"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "bert-base-uncased" in result.output and "not in the local cache" in result.output
    assert not (in_tmp / "reports").exists()
