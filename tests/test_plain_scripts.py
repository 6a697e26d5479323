"""Plain scripts as their users have them, each in its own git repository: approve writes the measured values
back where each lives (an argparse default, a keyword literal, a constant, a typer default) and nowhere else,
and the three examples (scikit-learn, a PyTorch MLP with argparse flags, a Hugging Face Trainer script) run
through `research-loop run --script` to a report and an approve that changes only the measured defaults."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest
from conftest import git
from report_lint import lint
from typer.testing import CliRunner

from agent import runs
from agent.cli import app
from agent.code import coder
from agent.config import Settings
from agent.plan import planner
from agent.plan.rules import PlanInvalid, check_plan
from agent.results import RunResult
from agent.review import review
from agent.schemas import ExperimentPlan, Phase, RunInfo
from experiments import registry
from experiments.discovery import write_values
from experiments.program import SAME_SPLIT
from experiments.records import Comparison
from experiments.storage import JOURNAL_FILE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


pytestmark = pytest.mark.usefixtures("project_env")


def repository(tmp_path: Path, name: str, source: str) -> Path:
    """A user's repository holding one committed script; returns the script's path."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "tester@example.com")
    git(repo, "config", "user.name", "Tester")
    (repo / name).write_text(source)
    git(repo, "add", name)
    git(repo, "commit", "--quiet", "-m", "my script")
    return repo / name


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


ARGPARSE = """import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()
print(f"accuracy={min(1.0, args.lr * 100):.4f}")
"""
KEYWORD = """from torch.utils.data import DataLoader

loader = DataLoader(list(range(8)), batch_size=4, shuffle=True)
print("accuracy: 0.5")
"""
CONSTANT = """LEARNING_RATE = 1e-3  # the step size
EPOCHS = 5
print("accuracy=0.5")
"""
TYPER = """import typer


def main(lr: float = 0.001, epochs: int = 5):
    print(f"accuracy={lr}")


typer.run(main)
"""


@pytest.mark.parametrize(
    ("source", "best", "lines"),
    [
        (ARGPARSE, {"lr": 0.004, "epochs": 5}, ['parser.add_argument("--lr", type=float, default=0.004)']),
        (KEYWORD, {"batch_size": 2}, ["loader = DataLoader(list(range(8)), batch_size=2, shuffle=True)"]),
        (CONSTANT, {"learning_rate": 0.0025}, ["LEARNING_RATE = 0.0025  # the step size"]),
        (TYPER, {"lr": 0.01, "epochs": 7}, ["def main(lr: float = 0.01, epochs: int = 7):"]),
    ],
    ids=["argparse-default", "keyword-literal", "constant", "typer-default"],
)
def test_approve_writes_the_measured_values_where_the_script_keeps_them(tmp_path, source, best, lines):
    script = repository(tmp_path, "train.py", source)
    task = registry.from_script(script)
    measured = {k: v for k, v in best.items() if v != task.defaults[k]}
    info = RunInfo(run_id=runs.new_run_id("plain"), kind="run", status="awaiting_approval")
    folder = runs.create(tmp_path / "reports", info)
    plan = ExperimentPlan(
        title="t", idea="i", objective="o", hypothesis="h", task=task.name, metric=task.metric,
        search_space=[p for p in task.search_space if p.name in best],
    )  # fmt: skip
    patch = coder.propose_patch(plan, task, folder, Settings(device="cpu"))
    assert patch.checks_passed and patch.checks[-1].detail.startswith("accuracy=")
    coder.finalize_patch(folder, best, str(folder / JOURNAL_FILE))
    comparison = Comparison(
        metric="accuracy", direction="maximize", split="test", candidate_mean=0.6, candidate_std=0.0,
        baseline_mean=0.5, baseline_std=0.0, difference=0.1, ci_low=0.1, ci_high=0.1, p_value=0.5,
        noise_floor=0.0, n_seeds=2,
    )  # fmt: skip
    final = [{"metrics": {"accuracy": 0.6, "test_accuracy": 0.6, SAME_SPLIT: 1.0}}]
    (folder / "results.json").write_text(json.dumps({"comparison": comparison.model_dump(), "final": final}))

    decision = review.approve(folder)
    assert script.read_text() == write_values(source, measured)
    assert [line[1:] for line in changed_lines(source, script.read_text()) if line[0] == "+"] == lines
    assert "on the validation split (the script has no held-out one)" in decision.reason


def test_a_plain_script_is_planned_on_all_its_data_with_ranges_from_the_priors(tmp_path):
    task = registry.register(registry.from_script(repository(tmp_path, "train.py", ARGPARSE)))
    plan = planner.make_plan("Tune the learning rate of my script with 40 trials", Settings(), task.name)
    assert [p.data_fraction for p in plan.phases] == [1.0, 1.0]  # no explore round on a share of the data
    lr = next(p for p in plan.search_space if p.name == "lr")
    assert (lr.low, lr.high) == (1e-4, 1e-1)  # the written-down prior, not a guess around 1e-3
    explore = Phase(name="explore", description="d", data_fraction=0.25, trials=10)
    with pytest.raises(PlanInvalid, match=r"phases\[explore\].data_fraction: .* trains on all its data"):
        check_plan(plan.model_copy(update={"phases": [explore, *plan.phases]}), Settings(), task.name)


LSTM_SGD = """import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=20, help="initial learning rate")
args = parser.parse_args()
print(f"loss={1 / args.lr:.4f}")
"""
ADADELTA = """import torch

model = torch.nn.Linear(4, 2)
optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
print("loss=0.5")
"""


@pytest.mark.parametrize(
    ("source", "default"), [(LSTM_SGD, 20.0), (ADADELTA, 1.0)], ids=["float-flag", "adadelta"]
)
def test_a_learning_rate_far_from_the_priors_is_searched_as_a_float_around_its_default(
    tmp_path, source, default
):
    task = registry.register(registry.from_script(repository(tmp_path, "main.py", source)))
    assert (
        type(task.defaults["lr"]) is float and task.defaults["lr"] == default
    )  # `type=float` wins over `20`
    plan = planner.make_plan("Tune the learning rate of my model", Settings(), task.name)
    lr = next(p for p in plan.search_space if p.name == "lr")
    assert (lr.kind, lr.log) == ("float", True)
    assert (lr.low, lr.high) == (pytest.approx(default / 30), pytest.approx(default * 30))


def run_example(tmp_path: Path, name: str, idea: str, *options: str) -> tuple[Path, Path, str]:
    """The example script committed in its own repository, run through the CLI; (script, run folder, text)."""
    source = (EXAMPLES / name).read_text()
    script = repository(tmp_path, name, source)
    result = CliRunner().invoke(
        app,
        [
            "run",
            idea,
            "--script",
            str(script),
            "--rounds",
            "1",
            "--workers",
            "2",
            "--device",
            "cpu",
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "name\tdefault\twhere\n" in result.output and "runs as a program" in result.output
    folder = next((tmp_path / "reports").iterdir())
    return script, folder, source


def approve_and_check(script: Path, folder: Path, source: str) -> list[str]:
    """Approve the run's best values: the file then differs from its original exactly by them.

    Two trials over a seed or two support no value (the run's own patch carries what the evidence supports,
    tests/test_evidence.py), so the best values are finalized here, sealed like the loop's own, to check how
    approve writes them into a plain script."""
    result = RunResult.model_validate_json((folder / "results.json").read_text())
    best = result.best.params
    report = (folder / "report.md").read_text()
    assert "Validation only; selection and comparison use the same split." in report
    task = registry.from_script(script)
    measured = {k: v for k, v in best.items() if v != task.defaults[k]}
    assert measured, f"the defaults measured best ({best}); nothing to approve"
    assert coder.load_record(folder).final_params == {
        c.param: c.candidate for c in result.patch_changes if c.carried
    }
    coder.finalize_patch(folder, best, str(folder / JOURNAL_FILE))
    review.approve(folder)
    assert script.read_text() == write_values(source, measured)
    assert git(script.parent, "status", "--porcelain") == " M " + script.name + "\n"
    return changed_lines(source, script.read_text())


def test_an_sklearn_script_with_keyword_literals(tmp_path):
    script, folder, source = run_example(
        tmp_path, "sklearn_digits.py", "Random search of more trees for a random forest on digits",
        "--trials", "2", "--seeds", "2",
    )  # fmt: skip
    changed = approve_and_check(script, folder, source)
    assert all("RandomForestClassifier(n_estimators=" in line for line in changed)


def test_a_pytorch_mlp_with_argparse_flags(tmp_path):
    script, folder, source = run_example(
        tmp_path, "torch_mlp.py", "Random search of the learning rate of my MLP on digits",
        "--trials", "2", "--seeds", "2",
    )  # fmt: skip
    changed = approve_and_check(script, folder, source)
    assert all('add_argument("--lr", type=float, default=' in line for line in changed)


def test_a_hugging_face_trainer_script_with_training_arguments(tmp_path):
    script, folder, source = run_example(
        tmp_path, "hf_trainer.py", "Random search of the learning rate and the number of epochs of my MiniLM",
        "--trials", "2", "--seeds", "1",
    )  # fmt: skip
    # the default of one epoch lies below the written-down range (2-4), so the measured best always differs
    changed = approve_and_check(script, folder, source)
    assert "-        num_train_epochs=1," in changed
    assert all(line.lstrip("+- ").startswith(("learning_rate=", "num_train_epochs=")) for line in changed)


SEEDLESS = """import argparse
import math

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1e-3)
args = parser.parse_args()
print(f"accuracy={0.9 - 0.1 * abs(math.log10(args.lr) + 2):.6f}")
"""


def test_a_script_that_ignores_the_seed_is_not_measurable_never_improved(tmp_path):
    script = repository(tmp_path, "train.py", SEEDLESS)
    result = CliRunner().invoke(
        app,
        ["run", "Random search of the learning rate", "--script", str(script), "--rounds", "1",
         "--trials", "3", "--seeds", "2", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "conclusion: not measurable" in result.output
    folder = next((tmp_path / "reports").iterdir())
    comparison = RunResult.model_validate_json((folder / "results.json").read_text()).comparison
    assert comparison.difference != 0 and comparison.ci_low == comparison.ci_high  # once called improved
    assert not comparison.excludes_zero
    report = (folder / "report.md").read_text()
    assert "**Conclusion: not measurable.**" in report and "improved" not in report.split("## ")[0]
    assert "the seed does not reach the script" in report and "RESEARCH_LOOP_SEED" in report
    assert lint(folder) == []
