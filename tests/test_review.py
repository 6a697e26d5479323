"""approve / reject / show: a run's measured patch into a real git work tree, and every refusal changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git
from typer.testing import CliRunner

from agent import runs
from agent.cli import app
from agent.code import coder
from agent.config import Settings
from agent.review import review
from agent.schemas import CodeChangeIntent, ExperimentPlan, RunInfo
from experiments import registry
from experiments.records import Comparison, Metric, SearchParam
from experiments.storage import JOURNAL_FILE

SCRIPT = '''"""Least squares by gradient descent on synthetic data: a user's script kept in their own repository."""

import numpy as np

from experiments.script import block_defaults

# --- hyperparameters ---
learning_rate = 0.05
epochs = 20
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)
    w = np.zeros(3)
    for epoch in range(int(hp["epochs"])):
        w -= hp["learning_rate"] * 2 * x[:150].T @ (x[:150] @ w - y[:150]) / 150
    return {"mse": float(np.mean((x[150:] @ w - y[150:]) ** 2))}
'''
BEST = {"learning_rate": 0.0875}


pytestmark = pytest.mark.usefixtures("project_env")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "tester@example.com")
    git(repo, "config", "user.name", "Tester")
    (repo / "src" / "train.py").write_text(SCRIPT)
    (repo / "README").write_text("a project\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "initial")
    return repo


def make_run(
    tmp_path: Path, script: Path, finalize: bool = True, gain: bool = True, arms: dict | None = None
) -> Path:
    """A run folder as the loop leaves it: proposed patch, measured comparison, final patch."""
    task = registry.from_script(script, Metric(name="mse", direction="minimize"))
    info = RunInfo(run_id=runs.new_run_id("approve me"), kind="run", status="awaiting_approval")
    folder = runs.create(tmp_path / "reports", info)
    plan = ExperimentPlan(
        title="t",
        idea="i",
        objective="o",
        hypothesis="h",
        task=task.name,
        search_space=[SearchParam(name="learning_rate", kind="float", low=0.01, high=0.1)],
        metric=task.metric,
        code_changes=[CodeChangeIntent(kind="set_default", target="epochs", value=40)],
    )
    assert coder.propose_patch(plan, task, folder, Settings(device="cpu")).checks_passed
    if finalize:
        coder.finalize_patch(folder, BEST, str(folder / JOURNAL_FILE), arms=arms)
    if gain:
        comparison = Comparison(
            metric="mse", direction="minimize", split="test", candidate_mean=0.0112, candidate_std=0.001,
            baseline_mean=0.0150, baseline_std=0.002, difference=-0.0038, ci_low=-0.0051, ci_high=-0.0025,
            p_value=0.004, noise_floor=0.002, n_seeds=3,
        )  # fmt: skip
        (folder / "results.json").write_text(json.dumps({"comparison": comparison.model_dump()}))
    return folder


def final_text(folder: Path) -> str:
    record = coder.load_record(folder)
    return record.final.files[record.script]


def assert_undecided(folder: Path, script: Path, text: str) -> None:
    assert script.read_text() == text
    assert runs.load(folder).status == "awaiting_approval"
    assert not (folder.parent / review.LEDGER).exists()


def test_approve_applies_the_measured_patch_to_the_work_tree_and_records_the_decision(tmp_path, repo):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script)
    decision = review.approve(folder)
    assert script.read_text() == final_text(folder)
    assert "learning_rate = 0.0875\nepochs = 40\n" in script.read_text()
    assert git(repo, "status", "--porcelain") == " M src/train.py\n"
    assert decision.commit is None and decision.target == str(script.resolve())
    assert "measured mse -0.0038 against the unmodified script on the test split" in decision.reason
    assert runs.load(folder).status == "approved"
    ledger = (folder.parent / review.LEDGER).read_text().splitlines()
    assert [json.loads(line)["action"] for line in ledger] == ["approve"]


def test_approve_with_commit_makes_a_branch_and_a_commit_that_name_the_run_and_its_gain(tmp_path, repo):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script)
    run_id = runs.load(folder).run_id
    decision = review.approve(folder, commit=True)
    assert decision.branch == f"research-loop/{run_id}"
    assert git(repo, "branch", "--show-current").strip() == decision.branch
    assert git(repo, "rev-parse", "HEAD").strip() == decision.commit
    assert git(repo, "status", "--porcelain") == ""
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith(f"research-loop: apply run {run_id}\n")
    assert "measured mse -0.0038" in message and "learning_rate = 0.0875" in message
    assert git(repo, "show", "--stat", "--format=", "HEAD").strip().startswith("src/train.py")
    assert git(repo, "show", "main:src/train.py") == SCRIPT


def test_approve_of_an_arm_applies_exactly_that_arms_variant_checked(tmp_path, repo):
    script = repo / "src" / "train.py"
    arms = {"long": {"epochs": 80}, "fast": {"learning_rate": 0.09}}
    folder = make_run(tmp_path, script, arms=arms)
    record = coder.load_record(folder)
    assert record.arms["long"].patch.checks_passed and record.arms["long"].params == {"epochs": 80}
    decision = review.approve(folder, commit=True, arm="long")
    assert script.read_text() == record.arms["long"].patch.files[record.script]
    assert "learning_rate = 0.05\nepochs = 80\n" in script.read_text(), "the arm's value, not the patch's"
    assert decision.arm == "long" and decision.reason.startswith("arm long's variant instead of")
    assert "epochs = 80" in git(repo, "log", "-1", "--format=%B")


def test_approve_of_an_unknown_or_edited_arm_is_refused_in_one_line(tmp_path, repo):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script, arms={"long": {"epochs": 80}, "fast": {"learning_rate": 0.09}})
    refused = CliRunner().invoke(app, ["approve", folder.name, "--arm", "slow"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "has no variant for arm 'slow'; arms with one: fast, long" in refused.stderr
    path = folder / coder.PATCH_JSON
    record = json.loads(path.read_text())
    record["arms"]["long"]["params"] = {"epochs": 800}
    path.write_text(json.dumps(record))
    with pytest.raises(review.Refused, match="patch.json differs from what was measured"):
        review.approve(folder, arm="long")
    assert_undecided(folder, script, SCRIPT)


def test_commit_message_says_when_nothing_was_measured(tmp_path, repo):
    folder = make_run(tmp_path, repo / "src" / "train.py", gain=False)
    review.approve(folder, commit=True)
    assert "no measured gain: the run has no results.json" in git(repo, "log", "-1", "--format=%B")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        ("dirty", "src/train.py has uncommitted changes; commit or stash them first"),
        ("changed", r"src/train.py changed since the run started \(the changes are shown above\)"),
        ("moved", r"train.py no longer exists \(moved or deleted since the run started\)"),
        ("branch", "already exists; delete it or approve without --commit"),
    ],
)
def test_approve_refuses_with_one_line_and_changes_nothing(tmp_path, repo, spoil, message):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script)
    if spoil == "dirty":
        script.write_text(SCRIPT + "# work in progress\n")
    elif spoil == "changed":
        script.write_text(SCRIPT.replace("epochs = 20", "epochs = 25"))
        git(repo, "commit", "--quiet", "-am", "more epochs")
    elif spoil == "moved":
        git(repo, "mv", "src/train.py", "src/fit.py")
        git(repo, "commit", "--quiet", "-m", "rename")
        script = repo / "src" / "fit.py"
    elif spoil == "branch":
        git(repo, "branch", f"research-loop/{runs.load(folder).run_id}")
    head, before = git(repo, "rev-parse", "HEAD"), script.read_text()
    with pytest.raises(review.Refused, match=message) as refused:
        review.approve(folder, commit=True)
    assert "\n" not in str(refused.value)
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "branch", "--show-current").strip() == "main"
    assert_undecided(folder, script, before)
    if spoil == "changed":
        assert "-epochs = 20\n+epochs = 25" in refused.value.conflict


def test_approve_refuses_a_target_outside_git_or_untracked(tmp_path, repo):
    loose = tmp_path / "loose" / "train.py"
    loose.parent.mkdir()
    loose.write_text(SCRIPT)
    folder = make_run(tmp_path, loose)
    with pytest.raises(review.Refused, match=r"train.py is not inside a git work tree"):
        review.approve(folder)
    assert_undecided(folder, loose, SCRIPT)
    untracked = repo / "src" / "new.py"
    untracked.write_text(SCRIPT)
    folder = make_run(tmp_path, untracked)
    with pytest.raises(review.Refused, match=r"src/new.py is not tracked by git"):
        review.approve(folder)
    assert untracked.read_text() == SCRIPT


def test_only_a_measured_patch_of_a_finished_run_can_be_approved(tmp_path, repo):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script, finalize=False)
    with pytest.raises(review.Refused, match="has no final patch"):
        review.approve(folder)
    assert_undecided(folder, script, SCRIPT)
    folder = make_run(tmp_path, script)
    info = runs.load(folder)
    info.status, info.stage = "failed", "report"
    runs.save(folder, info)
    with pytest.raises(review.Refused, match=r"is failed \(stage report\); only a finished run"):
        review.approve(folder)
    assert script.read_text() == SCRIPT and runs.load(folder).status == "failed"


def test_a_run_is_decided_once(tmp_path, repo):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script)
    review.approve(folder)
    with pytest.raises(review.Refused, match=r"was already approved on .* UTC; a run is decided once"):
        review.approve(folder)
    with pytest.raises(review.Refused, match="already approved"):
        review.reject(folder, "changed my mind")
    other = make_run(tmp_path, script)
    assert "epochs = 40" in script.read_text()
    decision = review.reject(other, "the gain is inside the noise floor")
    assert decision.reason == "the gain is inside the noise floor" and runs.load(other).status == "rejected"
    with pytest.raises(review.Refused, match="already rejected"):
        review.approve(other)
    ledger = [json.loads(line) for line in (folder.parent / review.LEDGER).read_text().splitlines()]
    assert [(d["action"], d["reason"]) for d in ledger][1] == ("reject", "the gain is inside the noise floor")


def test_cli_approve_show_and_reject(tmp_path, repo):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script)
    cli = CliRunner()
    shown = cli.invoke(app, ["show", folder.name])
    assert shown.exit_code == 0, shown.output
    assert "final patch (what approve applies)" in shown.stdout and "+learning_rate = 0.0875" in shown.stdout
    script.write_text(SCRIPT + "# local edit\n")
    refused = cli.invoke(app, ["approve", folder.name, "--commit"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: src/train.py has uncommitted changes")
    script.write_text(SCRIPT)
    approved = cli.invoke(app, ["approve", folder.name[:22], "--commit"])
    assert approved.exit_code == 0, approved.output
    assert "committed" in approved.stdout and script.read_text() == final_text(folder)
    again = cli.invoke(app, ["reject", folder.name, "--reason", "too late"])
    assert again.exit_code == 2 and "a run is decided once" in again.stderr
    empty = cli.invoke(app, ["reject", make_run(tmp_path, script).name, "--reason", " "])
    assert empty.exit_code == 2 and 'a rejection needs its reason: --reason "..."' in empty.stderr
    marked = cli.invoke(app, ["reject", make_run(tmp_path, script).name, "--reason", "[/bold] x [red]"])
    assert marked.exit_code == 0, marked.output
    assert "[/bold] x [red]" in marked.stdout


def _tamper(folder: Path, how: str) -> None:
    """Edit the run folder after the run, as a person or a program with write access to it could."""
    path = folder / coder.PATCH_JSON
    record = json.loads(path.read_text())
    final = record["final"]
    name = record["script"]
    if how == "files":
        # an extra line in the final text, its diff and hash recomputed so patch.json agrees with itself
        text = final["files"][name] + "import os\nos.system('touch /tmp/owned')\n"
        rebuilt = coder.build_patch(name, record["original"], text, final["rationale"])
        final.update(files=rebuilt.files, diff=rebuilt.diff, sha256=rebuilt.sha256)
        (folder / coder.PATCH_DIFF).write_text(rebuilt.diff)
    elif how == "diff":
        final["diff"] = final["diff"].replace("+learning_rate = 0.0875", "+learning_rate = 0.5")
    elif how == "checks":
        final["checks"] = []
        final["files"][name] += "import socket\n"
    elif how == "params":
        record["final_params"] = {"learning_rate": 0.5}
    elif how == "patch.diff":
        (folder / coder.PATCH_DIFF).write_text(final["diff"] + "+import os\n")
        return
    elif how == "workspace":
        script = folder / coder.WORKSPACE / name
        script.write_text(script.read_text() + "\nimport os\n")
        return
    elif how == "seal":
        (folder / JOURNAL_FILE).unlink()
        return
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("files", "patch.json differs from what was measured"),
        ("diff", "patch.json differs from what was measured"),
        ("checks", "patch.json differs from what was measured"),
        ("params", "patch.json differs from what was measured"),
        ("patch.diff", "patch.diff differs from what was measured"),
        ("workspace", "train.py differs from the workspace the final runs executed"),
        ("seal", "holds no seal for run"),
    ],
)
def test_approve_applies_only_what_was_measured(tmp_path, repo, how, message):
    script = repo / "src" / "train.py"
    folder = make_run(tmp_path, script)
    _tamper(folder, how)
    before = script.read_bytes()
    with pytest.raises(review.Refused, match=message) as refused:
        review.approve(folder)
    assert "\n" not in str(refused.value)
    assert script.read_bytes() == before
    assert_undecided(folder, script, before.decode())
