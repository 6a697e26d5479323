"""Real repositories as they are: each example repository under examples/repos/ committed in a git repository of
its own, run unmodified through `research-loop run --command` to a report, then approved. Trials run in a copy
of the repository (sibling imports, a configurator file, relative data, an ignored prepared data folder), the
flags the command sets are conditions (held fixed, never searched, never written back), and a Trainer script
takes its seed and learning rate through TrainingArguments."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git
from typer.testing import CliRunner

from agent.cli import app
from agent.code import coder
from agent.results import RunResult
from agent.review import review
from agent.schemas import ExperimentPlan
from experiments import project, registry
from experiments.discovery import write_values
from experiments.storage import JOURNAL_FILE

REPOS = Path(__file__).resolve().parents[1] / "examples" / "repos"


pytestmark = pytest.mark.usefixtures("project_env")


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def repository(tmp_path: Path, name: str) -> Path:
    """The example repository committed as its user has it (its .gitignore honoured); returns its folder."""
    repo = tmp_path / name
    shutil.copytree(REPOS / name, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "tester@example.com")
    git(repo, "config", "user.name", "Tester")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "my project")
    return repo


def run(repo: Path, monkeypatch: pytest.MonkeyPatch, idea: str, command: str, *options: str) -> Path:
    """`research-loop run IDEA --command COMMAND` from the repository's folder; the run folder."""
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(
        app,
        ["run", idea, "--command", command, "--rounds", "1", "--trials", "2", "--seeds", "2",
         "--workers", "2", "--device", "cpu", *options],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "set by the command, so held fixed for every arm and seed" in result.output
    return next((repo.parent / "reports").iterdir())


def approve(repo: Path, folder: Path, script: str) -> tuple[str, str, dict]:
    """Finalize a measured trial's searched values (the best unless it is the defaults: two trials over two
    seeds rarely give evidence for a value, so the loop's own patch may carry none) and approve; (before,
    after, the values written)."""
    result = RunResult.model_validate_json((folder / "results.json").read_text())
    plan = ExperimentPlan.model_validate_json((folder / "plan.json").read_text())
    assert all(c.param not in plan.conditions for c in result.patch_changes)
    before = (repo / script).read_text()
    defaults = registry.from_script(repo / script).defaults
    searched = [p.name for p in plan.search_space]
    measured = next(
        values
        for values in [result.best.params, *trial_params(folder)]
        if any(values[k] != defaults[k] for k in searched)
    )
    written = {k: measured[k] for k in searched}
    coder.finalize_patch(folder, written, str(folder / JOURNAL_FILE))
    review.approve(folder)
    assert git(repo, "status", "--porcelain") == f" M {script}\n"  # nothing else in the repository moved
    return before, (repo / script).read_text(), written


def trial_params(folder: Path) -> list[dict]:
    result = RunResult.model_validate_json((folder / "results.json").read_text())
    return [t.params for r in result.rounds for s in r.studies for t in s.trials] + [
        t.params for t in result.baseline
    ]


def test_a_multi_file_gpt_with_a_configurator_and_prepared_data_runs_unmodified(tmp_path, monkeypatch):
    repo = repository(tmp_path, "gpt_multifile")
    subprocess.run([sys.executable, "data/tiny/prepare.py"], cwd=repo, check=True, capture_output=True)
    assert git(repo, "status", "--porcelain") == ""  # the prepared data is ignored, as nanoGPT's is
    folder = run(
        repo, monkeypatch, "Tune the learning rate", "python train.py --max_iters=20", "--metric", "val_loss"
    )
    workspace = folder / "workspace"
    assert (workspace / "model.py").is_file() and (workspace / "configurator.py").is_file()
    assert (workspace / "data" / "tiny" / "train.bin").resolve() == repo / "data" / "tiny" / "train.bin"
    assert project.linked(workspace) == [repo / "data/tiny/train.bin", repo / "data/tiny/val.bin"]
    assert "max_iters = 20, set by the command" in (folder / "plan.md").read_text()
    assert {p["max_iters"] for p in trial_params(folder)} == {20}
    before, after, best = approve(repo, folder, "train.py")
    assert after == write_values(before, {"learning_rate": best["learning_rate"]})
    assert "max_iters = 60" in after  # the command's 20 is a condition, never the script's default


def test_an_argparse_lstm_with_size_flags_in_the_command(tmp_path, monkeypatch):
    repo = repository(tmp_path, "lstm_argparse")
    folder = run(
        repo, monkeypatch, "Tune the learning rate of my LSTM",
        "python main.py --data ./data/tiny --epochs 1 --emsize 16 --nhid=16", "--metric", "valid_loss",
    )  # fmt: skip
    plan = ExperimentPlan.model_validate_json((folder / "plan.json").read_text())
    assert plan.conditions == {"data": "data/tiny", "epochs": 1, "emsize": 16, "nhid": 16}
    assert not {"epochs", "emsize", "nhid"} & {p.name for p in plan.search_space}
    assert all(p["epochs"] == 1 and p["nhid"] == 16 for p in trial_params(folder))
    before, after, best = approve(repo, folder, "main.py")
    assert after == write_values(before, {"lr": best["lr"]})


def test_a_trainer_script_takes_its_seed_and_learning_rate_through_training_arguments(tmp_path, monkeypatch):
    repo = repository(tmp_path, "hf_trainer")
    folder = run(
        repo, monkeypatch, "Tune the learning rate",
        "python run_classifier.py --output_dir out --num_train_epochs 1 --save_strategy no --disable_tqdm true",
    )  # fmt: skip
    task = registry.from_script(repo / "run_classifier.py")
    assert task.defaults["learning_rate"] == 5e-5 and "validation_split_percentage" in task.defaults
    plan = ExperimentPlan.model_validate_json((folder / "plan.json").read_text())
    assert [p.name for p in plan.search_space] == ["learning_rate"]  # never the evaluation split's size
    assert plan.conditions == {"num_train_epochs": 1.0}
    baseline = RunResult.model_validate_json((folder / "results.json").read_text()).baseline
    seeds = {json.dumps(t.metrics, sort_keys=True) for t in baseline}
    assert len(seeds) == 2, "both seeds trained the same model: --seed did not reach TrainingArguments"
    before, after, best = approve(repo, folder, "run_classifier.py")
    added = f"    parser.set_defaults(learning_rate={best['learning_rate']!r})\n"
    assert after == before.replace("TrainingArguments))\n", "TrainingArguments))\n" + added, 1)


def test_the_copy_links_ignored_data_and_skips_a_run_folder_inside_the_repository(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "train.py").write_text("from helpers import VALUE\nprint(f'accuracy={VALUE}')\n")
    (repo / "src" / "helpers.py").write_text("VALUE = 0.5\n")
    (repo / ".gitignore").write_text("data/\nreports/\n")
    (repo / "data").mkdir()
    (repo / "data" / "big.bin").write_bytes(b"x" * 10)
    git(repo, "init", "--quiet")
    target = repo / "reports" / "run" / "workspace"
    target.mkdir(parents=True)
    assert project.root(repo / "src" / "train.py") == repo.resolve()
    script = project.copy(repo / "src" / "train.py", target, repo.resolve())
    assert (
        script == target / "src" / "train.py"
        and (target / "src" / "helpers.py").read_text() == "VALUE = 0.5\n"
    )
    assert (target / "data").is_symlink() and not (target / "reports").exists()
    assert project.linked(target) == [repo.resolve() / "data"]


def test_a_module_missing_from_the_repository_is_explained_in_one_line(tmp_path):
    from experiments.program import ProgramError, ProgramScript

    script = tmp_path / "run" / "workspace" / "train.py"
    script.parent.mkdir(parents=True)
    script.write_text("from helpers import VALUE\n\nRATE = 0.1\nprint(f'accuracy={VALUE * RATE}')\n")
    with pytest.raises(ProgramError) as failed:
        ProgramScript(script, "accuracy").run()
    assert str(failed.value).splitlines()[0] == (
        "train.py imports `helpers`, which is neither installed nor in the repository: commit it or add it "
        "next to the script (or install the package that provides it)"
    )
