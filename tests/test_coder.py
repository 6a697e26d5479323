"""The coder: structured edits on the real task scripts, exact search/replace blocks, checks, the LLM repair loop,
and a user's own script as the target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, tool

from agent.code import coder
from agent.code.checks import Preflight, Subject, check_paths, preflight, safe_path
from agent.code.diffs import apply_file_edits, to_file_edits, unified_diff
from agent.code.edits.base import expose_constant, set_default
from agent.code.edits.model import add_dropout, change_optimizer, change_schedule
from agent.code.source import EditError
from agent.config import Settings
from agent.schemas import CodeChangeIntent, CodePatch, ExperimentPlan, FileEdit
from experiments import registry
from experiments.records import Metric, SearchParam
from experiments.script import find_block, load_module
from experiments.storage import JOURNAL_FILE

pytestmark = pytest.mark.usefixtures("no_provider_env")

DIGITS = registry.get("digits-cnn").script
TABULAR = registry.get("tabular-mlp").script
TINY = {"data_fraction": 0.15, "seed": 0, "device": "cpu"}

USER_SCRIPT = '''"""A user's own training script: least squares by gradient descent on synthetic data, in numpy."""

import numpy as np

from experiments.script import block_defaults

# --- hyperparameters ---
learning_rate = 0.05
epochs = 20
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)
NOISE = 0.1


def make_data(seed, *, n=200):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, x @ np.array([1.0, -2.0, 0.5]) + NOISE * rng.normal(size=n)


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    x, y = make_data(seed)
    n = max(10, int(len(x) * data_fraction))
    w = np.zeros(3)
    for epoch in range(int(hp["epochs"])):
        w -= hp["learning_rate"] * 2 * x[:n].T @ (x[:n] @ w - y[:n]) / n
    return {"mse": float(np.mean((x[n:] @ w - y[n:]) ** 2))}
'''


def train(tmp_path: Path, text: str, label: str, **hparams: Any) -> dict[str, float]:
    """Import a script version from its own file, as a worker does, and train it on tiny settings."""
    path = tmp_path / label / "script.py"
    path.parent.mkdir()
    path.write_text(text)
    return load_module(path).run(hparams, **TINY)


def plan_for(task: str, changes: list[CodeChangeIntent], search: list[SearchParam], metric: str = "accuracy"):
    return ExperimentPlan(
        title="t",
        idea="i",
        objective="o",
        hypothesis="h",
        task=task,
        search_space=search,
        metric=Metric(name=metric, direction="maximize" if metric == "accuracy" else "minimize"),
        code_changes=changes,
    )


def test_set_default_changes_one_literal_and_more_epochs_change_the_trained_result(tmp_path):
    original = DIGITS.read_text()
    one, two = set_default(original, "epochs", 1), set_default(original, "epochs", 2.0)
    assert unified_diff("d.py", original, two).count("\n-") == 1
    assert find_block(two).defaults["epochs"] == 2 and isinstance(find_block(two).defaults["epochs"], int)
    assert train(tmp_path, one, "one") != train(tmp_path, two, "two")
    with pytest.raises(EditError, match="is an int in the script; 2.5"):
        set_default(original, "epochs", 2.5)
    with pytest.raises(EditError, match="momentum is not in the hyperparameter block"):
        set_default(original, "momentum", 0.5)


@pytest.mark.parametrize("location", [None, "features", "features.1"])
def test_added_dropout_is_a_no_op_at_rate_zero_and_changes_training_above_it(tmp_path, location):
    original = DIGITS.read_text()
    patched = add_dropout(original, "extra_dropout", 0.0, location)
    assert find_block(patched).defaults["extra_dropout"] == 0.0
    assert train(tmp_path, patched, "zero", epochs=1) == train(tmp_path, original, "original", epochs=1)
    assert train(tmp_path, patched, "half", epochs=1, extra_dropout=0.5) != train(
        tmp_path, original, "again", epochs=1
    )


def test_dropout_in_a_layer_list_reaches_the_model_through_the_builder_function(tmp_path):
    original = TABULAR.read_text()
    patched = add_dropout(original, "act_dropout", 0.0, "blocks.1")
    assert "nn.ReLU(), nn.Dropout(act_dropout)" in patched
    assert 'act_dropout=hp["act_dropout"]' in patched
    assert train(tmp_path, patched, "zero") == train(tmp_path, original, "original")
    assert train(tmp_path, patched, "high", act_dropout=0.7) != train(tmp_path, original, "again")


def test_a_dropout_location_that_does_not_exist_is_refused_with_the_ones_that_do():
    with pytest.raises(EditError, match=r"no single layer self.nope .* features, dropout, head, features.0"):
        add_dropout(DIGITS.read_text(), "extra_dropout", 0.1, "nope")
    with pytest.raises(EditError, match="dropout is already a hyperparameter"):
        add_dropout(DIGITS.read_text(), "dropout", 0.1)


def test_changed_optimizer_keeps_the_scripts_own_by_default_and_sgd_trains_differently(tmp_path):
    original = TABULAR.read_text()
    patched = change_optimizer(original, "optimizer")
    assert find_block(patched).defaults["optimizer"] == "adamw"
    assert (
        'torch.optim.SGD(model.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"], momentum=0.9)'
        in patched
    )
    assert train(tmp_path, patched, "own") == train(tmp_path, original, "original")
    assert train(tmp_path, patched, "sgd", optimizer="sgd") != train(tmp_path, original, "again")
    with pytest.raises(
        EditError,
        match=r"exactly one torch.optim optimizer; the script builds SGD \(line \d+\), Adam \(line \d+\), AdamW",
    ):
        change_optimizer(DIGITS.read_text(), "opt", "sgd")


def test_cosine_schedule_changes_training_and_the_constant_default_does_not(tmp_path):
    original = TABULAR.read_text()
    patched = change_schedule(original, "lr_schedule")
    assert find_block(patched).defaults["lr_schedule"] == "constant"
    assert patched.count("scheduler.step()") == 1
    assert train(tmp_path, patched, "constant") == train(tmp_path, original, "original")
    assert train(tmp_path, patched, "cosine", lr_schedule="cosine", epochs=3) != train(
        tmp_path, original, "again", epochs=3
    )
    with pytest.raises(EditError, match="not one of constant, cosine"):
        change_schedule(original, "lr_schedule", "exponential")


def test_exposed_literal_is_threaded_from_run_into_the_helper_that_uses_it(tmp_path):
    original = DIGITS.read_text()
    patched = expose_constant(original, "momentum")
    assert (
        "def make_optimizer(params, name: str, lr: float, weight_decay: float, *, momentum=0.9):" in patched
    )
    assert 'momentum=hp["momentum"]' in patched
    sgd = {"optimizer": "sgd", "epochs": 1}
    assert train(tmp_path, patched, "same", **sgd) == train(tmp_path, original, "original", **sgd)
    assert train(tmp_path, patched, "low", momentum=0.0, **sgd) != train(tmp_path, original, "again", **sgd)
    with pytest.raises(EditError, match="give the location .* DigitsCNN.kernel_size, DigitsCNN.padding"):
        expose_constant(original, "width")


def test_module_constant_becomes_a_hyperparameter_read_through_hp(tmp_path):
    patched = expose_constant(USER_SCRIPT, "noise")
    assert "NOISE = 0.1" not in patched and "noise = 0.1\n# --- end hyperparameters ---" in patched
    assert "def make_data(seed, *, n=200, noise=0.1):" in patched
    assert train(tmp_path, patched, "same") == train(tmp_path, USER_SCRIPT, "original")
    assert train(tmp_path, patched, "loud", noise=2.0)["mse"] > train(tmp_path, USER_SCRIPT, "again")["mse"]


def test_search_replace_blocks_must_match_exactly_once():
    files = {"train.py": "a = 1\nb = 2\na = 1\n"}
    assert apply_file_edits(files, [FileEdit(path="train.py", old="b = 2", new="b = 3")])["train.py"].count(
        "b = 3"
    )
    with pytest.raises(EditError, match="'c = 3' is not in the file"):
        apply_file_edits(files, [FileEdit(path="train.py", old="c = 3", new="c = 4")])
    with pytest.raises(EditError, match="matches 2 places; add lines around it"):
        apply_file_edits(files, [FileEdit(path="train.py", old="a = 1", new="a = 2")])
    with pytest.raises(EditError, match=r"is for '../train.py'; only train.py may be edited"):
        apply_file_edits(files, [FileEdit(path="../train.py", old="b = 2", new="b = 3")])


def test_structured_edits_become_minimal_unique_search_replace_blocks():
    original = DIGITS.read_text()
    patched = change_schedule(set_default(original, "epochs", 3), "lr_schedule", "cosine")
    edits = to_file_edits("digits_cnn.py", original, patched)
    assert len(edits) >= 3 and all(original.count(e.old) == 1 for e in edits)
    assert sum(len(e.old) for e in edits) < len(original) / 2
    assert apply_file_edits({"digits_cnn.py": original}, edits)["digits_cnn.py"] == patched


def test_paths_outside_the_workspace_are_refused(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (tmp_path / "elsewhere.py").write_text("x = 1\n")
    (workspace / "link.py").symlink_to(tmp_path / "elsewhere.py")
    for bad, why in [
        ("../x.py", "plain relative"),
        ("/etc/passwd", "plain relative"),
        ("link.py", "symbolic link"),
    ]:
        with pytest.raises(ValueError, match=why):
            safe_path(workspace, bad)
    patch = CodePatch(files={"../digits_cnn.py": "x = 1\n"})
    result = check_paths(Subject(patch, {"digits_cnn.py": "x = 0\n"}, workspace))
    assert not result.passed and "'../digits_cnn.py' is not a plain relative path" in result.detail


def test_a_symlinked_workspace_script_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "victim.py"
    victim.write_text("precious = True\n")
    (tmp_path / "run" / "workspace").mkdir(parents=True)
    (tmp_path / "run" / "workspace" / "digits_cnn.py").symlink_to(victim)
    plan = plan_for("digits-cnn", [], [SearchParam(name="epochs", kind="int", low=1, high=3)])
    with pytest.raises(coder.PatchError, match="symbolic link"):
        coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path / "run", Settings())
    assert victim.read_text() == "precious = True\n"


def test_an_edit_that_cannot_be_made_fails_the_edits_check_and_nothing_runs(tmp_path):
    plan = plan_for(
        "digits-cnn",
        [CodeChangeIntent(kind="set_default", target="momentum", value=0.5)],
        [SearchParam(name="epochs", kind="int", low=1, high=3)],
    )
    patch = coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, Settings())
    assert [(c.name, c.passed) for c in patch.checks] == [("edits", False)]
    assert "momentum is not in the hyperparameter block" in patch.checks[0].detail
    assert patch.diff == "" and (tmp_path / "workspace" / "digits_cnn.py").read_text() == DIGITS.read_text()


def test_a_searched_name_the_block_lacks_fails_the_contract_check(tmp_path):
    plan = plan_for("digits-cnn", [], [SearchParam(name="momentum", kind="float", low=0.5, high=0.9)])
    patch = coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, Settings())
    assert patch.checks[-1].name == "contract" and not patch.checks[-1].passed
    assert "searches momentum, which the hyperparameter block lacks" in patch.checks[-1].detail


def test_preflight_fails_a_script_that_hangs_or_returns_no_finite_metric(tmp_path):
    nan = tmp_path / "nan" / "train.py"
    nan.parent.mkdir()
    nan.write_text(USER_SCRIPT.replace('return {"mse": float(', 'return {"mse": float("nan") + float('))
    result = preflight(nan, Preflight(metric="mse"))
    assert not result.passed and result.detail == "run() returned mse=nan"
    hang = tmp_path / "hang" / "train.py"
    hang.parent.mkdir()
    hang.write_text(
        USER_SCRIPT.replace(
            "    x, y = make_data(seed)", "    import time\n    time.sleep(60)\n    x, y = 0, 0"
        )
    )
    result = preflight(hang, Preflight(metric="mse", timeout_s=1.5))
    assert not result.passed and result.detail == "ran past its 1.5 s time limit"


def test_user_script_outside_the_package_is_patched_in_the_workspace_and_preflighted(tmp_path):
    script = tmp_path / "project" / "train.py"
    script.parent.mkdir()
    script.write_text(USER_SCRIPT)
    task = registry.from_script(script, Metric(name="mse", direction="minimize"))
    plan = plan_for(
        task.name,
        [
            CodeChangeIntent(kind="expose_constant", target="noise", location="NOISE"),
            CodeChangeIntent(kind="set_default", target="epochs", value=30),
        ],
        [
            SearchParam(name="learning_rate", kind="float", low=0.01, high=0.1),
            SearchParam(name="noise", kind="float", low=0.0, high=0.2),
        ],
        metric="mse",
    )
    run = tmp_path / "run"
    patch = coder.propose_patch(plan, task, run, Settings(device="cpu"))
    assert patch.checks_passed, patch.checks
    assert [c.name for c in patch.checks] == [
        "paths",
        "applies",
        "compiles",
        "safety",
        "contract",
        "preflight",
    ]
    assert script.read_text() == USER_SCRIPT
    assert (run / "workspace" / "train.py").read_text() == patch.files["train.py"]
    assert (run / "patch.diff").read_text() == patch.diff and patch.diff.startswith(
        "--- a/train.py\n+++ b/train.py"
    )
    record = coder.load_record(run)
    assert record.target == script.resolve() and record.original == USER_SCRIPT

    final = coder.finalize_patch(
        run, {"learning_rate": 0.07300000000000001, "noise": 0.0}, str(run / JOURNAL_FILE)
    )
    defaults = find_block(final.files["train.py"]).defaults
    assert defaults == {"learning_rate": 0.07300000000000001, "epochs": 30, "noise": 0.0}
    assert final.checks_passed and (run / "patch.diff").read_text() == final.diff
    assert coder.load_record(run).patch.diff == patch.diff
    with pytest.raises(coder.PatchError, match="momentum is not in the hyperparameter block"):
        coder.finalize_patch(run, {"momentum": 0.9}, str(run / JOURNAL_FILE))


def test_free_form_edits_need_an_llm_when_the_setting_is_offline(tmp_path):
    plan = plan_for(
        "digits-cnn",
        [CodeChangeIntent(kind="free_form", target="activation", description="use GELU instead of ReLU")],
        [SearchParam(name="epochs", kind="int", low=1, high=3)],
    )
    patch = coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, Settings(llm="offline"))
    assert not patch.checks_passed and "free-form changes need an LLM" in patch.checks[-1].detail


def test_a_failed_check_goes_back_to_the_llm_and_its_repair_is_taken(tmp_path):
    broken = {
        "path": "digits_cnn.py",
        "old": "            nn.ReLU(),\n            nn.MaxPool2d(2),",
        "new": "nn.GELU(,",
    }
    twice = {"path": "digits_cnn.py", "old": "nn.ReLU()", "new": "nn.GELU()"}
    good = {
        "path": "digits_cnn.py",
        "old": "            nn.ReLU(),\n            nn.MaxPool2d(2),",
        "new": "            nn.GELU(),\n            nn.MaxPool2d(2),",
    }
    replies = [
        tool({"edits": [twice]}),
        tool({"edits": [broken]}),
        tool({"edits": [good], "rationale": "GELU"}),
    ]
    plan = plan_for(
        "digits-cnn",
        [
            CodeChangeIntent(
                kind="free_form", target="activation", description="use GELU after the second conv"
            )
        ],
        [SearchParam(name="epochs", kind="int", low=1, high=3)],
    )
    with FakeOpenAI(replies) as server:
        settings = Settings(
            llm="openai-compatible:fake", base_url=server.base_url, llm_repairs=2, device="cpu"
        )
        patch = coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, settings)
    assert patch.checks_passed, patch.checks
    assert "nn.GELU()" in patch.files["digits_cnn.py"] and patch.rationale.endswith("GELU")
    first_repair = server.requests[1]["messages"][-1]["content"]
    second_repair = server.requests[2]["messages"][-1]["content"]
    assert "matches 2 places" in first_repair
    assert "failed the compiles check: digits_cnn.py:" in second_repair
    assert "use GELU after the second conv" in server.requests[0]["messages"][1]["content"]


def test_repairs_run_out_and_the_last_failure_is_reported(tmp_path):
    broken = {"path": "digits_cnn.py", "old": "epochs = 6", "new": "epochs = "}
    plan = plan_for(
        "digits-cnn",
        [CodeChangeIntent(kind="free_form", target="epochs", description="train shorter")],
        [SearchParam(name="epochs", kind="int", low=1, high=3)],
    )
    with FakeOpenAI([tool({"edits": [broken]})]) as server:
        settings = Settings(llm="openai-compatible:fake", base_url=server.base_url, llm_repairs=0)
        patch = coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, settings)
    assert [(c.name, c.passed) for c in patch.checks] == [
        ("paths", True), ("applies", True), ("compiles", False), ("repairs", False)
    ]  # fmt: skip
    assert "gave no valid EditAnswer in 1 answers" in patch.checks[-1].detail
    assert DIGITS.read_text().count("epochs = 6") == 1


@pytest.mark.parametrize(
    "edits",
    [
        [{"path": "digits_cnn.py", "old": "nn.ReLU()", "new": "nn.GELU()", "every": True}],
        [{"path": "digits_cnn.py", "old": "nn.ReLU()", "new": "nn.GELU()"}] * 4,  # the 1.5B model's answer
    ],
    ids=["every", "repeated"],
)
def test_a_model_edit_marked_every_or_repeated_changes_each_place_its_search_block_occurs(tmp_path, edits):
    """ "use GELU instead of ReLU after each convolution": one `nn.ReLU()` block meant for both places."""
    plan = plan_for(
        "digits-cnn",
        [CodeChangeIntent(kind="free_form", target="activation", description="GELU after each convolution")],
        [SearchParam(name="epochs", kind="int", low=1, high=3)],
    )
    with FakeOpenAI([tool({"edits": edits})]) as server:
        settings = Settings(llm="openai-compatible:fake", base_url=server.base_url, device="cpu")
        patch = coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, settings)
    assert patch.checks_passed, patch.checks
    text = patch.files["digits_cnn.py"]
    assert text.count("nn.GELU()") == 2 and "nn.ReLU()" not in text
    assert '"every": true' in server.requests[0]["messages"][0]["content"]
    assert coder.load_record(tmp_path).usage.calls == 1


def test_a_search_block_not_in_the_script_is_sent_back_with_the_closest_line(tmp_path):
    missing = {"path": "digits_cnn.py", "old": "epochs = 8", "new": "epochs = 4"}
    good = {"path": "digits_cnn.py", "old": "epochs = 6", "new": "epochs = 4"}
    plan = plan_for(
        "digits-cnn",
        [CodeChangeIntent(kind="free_form", target="epochs", description="train for 4 epochs")],
        [SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-2, log=True)],
    )
    with FakeOpenAI([tool({"edits": [missing]}), tool({"edits": [good]})]) as server:
        settings = Settings(llm="openai-compatible:fake", base_url=server.base_url, device="cpu")
        coder.propose_patch(plan, registry.get("digits-cnn"), tmp_path, settings)
    repair = server.requests[1]["messages"][-1]["content"]
    assert "'epochs = 8' is not in the file; the closest line is 'epochs = 6'" in repair
