"""add_label_smoothing: a no-op at 0.0 on the real scripts, a different training above it, refusals, and the
coder's checks around it."""

from __future__ import annotations

import pytest
from patching import propose, train

from agent.code import coder
from agent.code.edits.model import add_label_smoothing
from agent.code.source import EditError
from agent.schemas import CodeChangeIntent
from experiments import registry
from experiments.records import SearchParam
from experiments.script import find_block

pytestmark = pytest.mark.usefixtures("no_provider_env", "one_torch_thread")

DIGITS = registry.get("digits-cnn").script
SMOOTH = CodeChangeIntent(kind="add_label_smoothing", target="label_smoothing")
SPACE = SearchParam(name="label_smoothing", kind="float", low=0.0, high=0.3)

# A user's script whose loss is built by a helper and whose evaluation computes its own loss under no_grad.
USER_SCRIPT = '''"""Softmax regression on synthetic data, with the loss built by a helper."""

import torch
import torch.nn.functional as F
from torch import nn

from experiments.script import block_defaults

# --- hyperparameters ---
learning_rate = 0.5
epochs = 20
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)


def make_data(n=300):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def criterion():
    return nn.CrossEntropyLoss()


@torch.no_grad()
def evaluate(model, x, y):
    logits = model(x)
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return {"accuracy": accuracy, "loss": F.cross_entropy(logits, y).item()}


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    torch.manual_seed(seed)
    x, y = make_data()
    n = max(10, int(200 * data_fraction))
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=hp["learning_rate"])
    loss_fn = criterion()
    for epoch in range(int(hp["epochs"])):
        loss = loss_fn(model(x[:n]), y[:n])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return evaluate(model, x[200:], y[200:])
'''
# The same script with a home-made `cross_entropy` that takes no label_smoothing: the edit applies and
# compiles, and only running it shows that it is wrong.
OWN_LOSS = (
    USER_SCRIPT.replace(
        "def criterion():\n    return nn.CrossEntropyLoss()\n",
        "def cross_entropy(logits, labels):\n    return F.nll_loss(logits.log_softmax(1), labels)\n",
    )
    .replace("    loss_fn = criterion()\n", "")
    .replace("loss = loss_fn(model(x[:n]), y[:n])", "loss = cross_entropy(model(x[:n]), y[:n])")
)


def test_smoothing_on_the_digits_script_is_a_no_op_at_zero_and_changes_the_loss_above_it(tmp_path):
    original = DIGITS.read_text()
    patched = coder.apply_intents(original, [SMOOTH], DIGITS.name)
    assert find_block(patched).defaults["label_smoothing"] == 0.0
    call = 'cross_entropy(model(x_train[idx].to(dev)), y_train[idx].to(dev), label_smoothing=hp["label_smoothing"])'
    assert call in patched
    plain = train(tmp_path, original, "original", epochs=1)
    assert train(tmp_path, patched, "zero", epochs=1) == plain
    smoothed = train(tmp_path, patched, "smoothed", epochs=1, label_smoothing=0.2)
    assert smoothed["loss"] != plain["loss"]
    valued = coder.apply_intents(original, [SMOOTH.model_copy(update={"value": 0.1})], DIGITS.name)
    assert find_block(valued).defaults["label_smoothing"] == 0.1


def test_a_helper_built_loss_is_threaded_and_evaluation_keeps_the_plain_loss(tmp_path):
    patched = add_label_smoothing(USER_SCRIPT, "label_smoothing")
    assert "def criterion(*, label_smoothing=0.0):" in patched
    assert "nn.CrossEntropyLoss(label_smoothing=label_smoothing)" in patched
    assert 'criterion(label_smoothing=hp["label_smoothing"])' in patched
    assert "F.cross_entropy(logits, y).item()" in patched  # under no_grad: measures, so untouched
    plain = train(tmp_path, USER_SCRIPT, "original")
    assert train(tmp_path, patched, "zero") == plain
    assert train(tmp_path, patched, "smoothed", label_smoothing=0.3)["loss"] != plain["loss"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (registry.get("text-classification").script.read_text(), "found no training cross-entropy loss"),
        (
            DIGITS.read_text().replace("y_train[idx].to(dev))", "y_train[idx].to(dev), label_smoothing=0.1)"),
            r"digits_cnn.py:\d+: this cross_entropy\(...\) may already set label_smoothing; change it by hand",
        ),
        (
            USER_SCRIPT.replace(
                "nn.CrossEntropyLoss()", "nn.CrossEntropyLoss(None, None, -100, None, 'mean', 0.1)"
            ),
            "may already set label_smoothing",
        ),
        (
            USER_SCRIPT.replace("    loss_fn = criterion()\n", "").replace(
                "HYPERPARAMETERS = block_defaults(__file__)\n",
                "HYPERPARAMETERS = block_defaults(__file__)\nloss_fn = nn.CrossEntropyLoss()\n",
            ),
            "the loss is built where a trial's hyperparameters cannot reach",
        ),
    ],
)
def test_a_script_the_edit_cannot_serve_is_refused_in_one_line(text, message):
    with pytest.raises(EditError, match=message) as info:
        add_label_smoothing(text, "label_smoothing", where="digits_cnn.py")
    assert "\n" not in str(info.value)


def test_a_bad_value_or_a_taken_name_is_refused():
    with pytest.raises(EditError, match=r"must be a number in \[0, 1\), got 1.5"):
        add_label_smoothing(DIGITS.read_text(), "label_smoothing", 1.5)
    with pytest.raises(EditError, match="dropout is already a hyperparameter"):
        add_label_smoothing(DIGITS.read_text(), "dropout")


def test_the_coder_preflights_the_patch_and_fails_one_whose_loss_does_not_take_the_keyword(tmp_path):
    good = propose(tmp_path / "good", USER_SCRIPT, SMOOTH, SPACE)
    assert good.checks_passed, good.checks
    assert [c.name for c in good.checks] == [
        "paths",
        "applies",
        "compiles",
        "safety",
        "contract",
        "preflight",
    ]
    bad = propose(tmp_path / "bad", OWN_LOSS, SMOOTH, SPACE)
    assert "cross_entropy(model(x[:n]), y[:n], label_smoothing=" in bad.files["train.py"]
    assert not bad.checks_passed and bad.checks[-1].name == "preflight"
    assert "unexpected keyword argument 'label_smoothing'" in bad.checks[-1].detail
    refused = propose(tmp_path / "refused", USER_SCRIPT, SMOOTH.model_copy(update={"value": 1.5}), SPACE)
    assert [(c.name, c.passed) for c in refused.checks] == [("edits", False)]


PLAIN = """import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.5)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
torch.manual_seed(0)
x = torch.randn(300, 4)
y = (x[:, 0] > 0).long()
model = nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()
for _ in range(args.epochs):
    loss = loss_fn(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"loss={loss.item():.6f}")
"""


def test_add_label_smoothing_on_a_plain_script_adds_a_flag_the_study_searches(tmp_path):
    from agent.config import Settings
    from agent.plan import planner
    from experiments.program import ProgramScript

    script = tmp_path / "project" / "train.py"
    script.parent.mkdir()
    script.write_text(PLAIN)
    task = registry.register(registry.from_script(script))
    plan = planner.make_plan("Add label smoothing to my model", Settings(), task.name)
    assert [c.kind for c in plan.code_changes] == ["add_label_smoothing"]
    assert "label_smoothing" in [p.name for p in plan.search_space]
    patch = coder.propose_patch(plan, task, tmp_path / "run", Settings(device="cpu"))
    assert patch.checks_passed, patch.checks  # the contract check: every searched name is the script's own
    patched = (tmp_path / "run" / "workspace" / "train.py").read_text()
    assert 'parser.add_argument("--label_smoothing", type=float, default=0.0)\n' in patched
    assert "loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)" in patched
    trials = ProgramScript(tmp_path / "run" / "workspace" / "train.py", "loss")
    plain, smoothed = trials.run({"label_smoothing": 0.0}), trials.run({"label_smoothing": 0.3})
    assert smoothed["loss"] > plain["loss"]  # the searched value reaches the training loss
