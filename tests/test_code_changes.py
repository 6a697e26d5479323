"""change_activation, add_weight_decay, early_stopping and limit_train_examples: each a no-op at its default on a
real script, a different training away from it, a failed preflight on a script it breaks, and refusals."""

from __future__ import annotations

import optuna
import pytest
import torch
from patching import SMALL, propose, train

from agent.code import coder
from agent.code.edits.activation import change_activation
from agent.code.edits.training import add_weight_decay, early_stopping, limit_train_examples
from agent.code.source import EditError
from agent.schemas import CodeChangeIntent
from experiments import data, registry
from experiments.records import SearchParam
from experiments.script import find_block, load_module

pytestmark = pytest.mark.usefixtures("no_provider_env", "one_torch_thread")

DIGITS = registry.get("digits-cnn").script.read_text()
TABULAR = registry.get("tabular-mlp").script.read_text()
# The built-in scripts as a user might have written them: no weight decay, no training-set cap.
TABULAR_NO_DECAY = TABULAR.replace("weight_decay = 0.0\n", "").replace(
    ', weight_decay=hp["weight_decay"]', ""
)
DIGITS_NO_CAP = DIGITS.replace("max_train_examples = 0\n", "").replace(
    ', max_train=int(hp["max_train_examples"])', ""
)

# A user's own script: logistic regression on synthetic data, with its own split and its own report helper.
USER_SCRIPT = '''"""Logistic regression on synthetic data."""

import torch
from torch import nn

from experiments.script import block_defaults

# --- hyperparameters ---
learning_rate = 0.5
epochs = 8
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)


def report(trial, value, step):
    """Tell the trial the epoch's accuracy, when there is a trial."""
    if trial is not None:
        trial.report(value, step)


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    x_train, y_train = x[:200], y[:200]
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=hp["learning_rate"])
    for epoch in range(int(hp["epochs"])):
        loss = nn.functional.cross_entropy(model(x_train), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            accuracy = (model(x[200:]).argmax(1) == y[200:]).float().mean().item()
        report(trial, accuracy, epoch)
    return {"accuracy": accuracy, "loss": loss.item()}
'''
# Variants each edit applies to and compiles, where only running shows the edit is wrong for them.
WRAPPED_NN = USER_SCRIPT.replace(  # layers from a namespace of the user's that has no GELU or SiLU
    "from torch import nn\n",
    "from types import SimpleNamespace\n\nfrom torch import nn as torch_nn\n\n"
    "nn = SimpleNamespace(Linear=torch_nn.Linear, ReLU=torch_nn.ReLU, Sequential=torch_nn.Sequential,"
    " functional=torch_nn.functional)\n",
)
RPROP = USER_SCRIPT.replace("torch.optim.SGD(", "torch.optim.Rprop(")  # Rprop takes no weight_decay
LOGGED = USER_SCRIPT.replace(  # the helper takes a dict of metrics: there is no one number to watch
    "        trial.report(value, step)", '        trial.report(value["accuracy"], step)'
).replace("report(trial, accuracy, epoch)", 'report(trial, {"accuracy": accuracy}, epoch)')
STREAMED = (
    USER_SCRIPT.replace(  # the training split is a stream, which has no length to cut
        "    x_train, y_train = x[:200], y[:200]\n",
        "    train_stream = torch.utils.data.DataLoader(Stream(x[:200], y[:200]), batch_size=200)\n",
    )
    .replace(
        "        loss = nn.functional.cross_entropy(model(x_train), y_train)\n",
        "        x_train, y_train = next(iter(train_stream))\n"
        "        loss = nn.functional.cross_entropy(model(x_train), y_train)\n",
    )
    .replace(
        "def run(",
        "class Stream(torch.utils.data.IterableDataset):\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n\n"
        "    def __iter__(self):\n        return zip(self.x, self.y)\n\n\ndef run(",
    )
)


def change(kind: str, target: str, **fields) -> CodeChangeIntent:
    return CodeChangeIntent(kind=kind, target=target, **fields)  # type: ignore[arg-type]


def test_every_new_kind_is_a_schema_kind_and_a_coder_edit():
    kinds = {"change_activation", "add_weight_decay", "early_stopping", "limit_train_examples"}
    assert kinds <= set(coder.EDITS)
    assert all(CodeChangeIntent(kind=k, target="x").kind == k for k in kinds)


# --- change_activation ---


def test_activation_at_relu_trains_as_before_and_gelu_trains_differently(tmp_path):
    patched = change_activation(DIGITS, "activation")
    assert find_block(patched).defaults["activation"] == "relu"
    assert 'ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}' in patched
    assert patched.count("ACTIVATIONS[activation]()") == 2 and patched.count("nn.ReLU") == 1
    plain = train(tmp_path, DIGITS, "original", epochs=1)
    assert train(tmp_path, patched, "relu", epochs=1) == plain
    assert train(tmp_path, patched, "gelu", epochs=1, activation="gelu") != plain
    one = change_activation(DIGITS, "activation", "silu", location="features.1")
    assert one.count("ACTIVATIONS[activation]()") == 1 and find_block(one).defaults["activation"] == "silu"


def test_activation_in_a_helper_is_threaded_and_other_callers_keep_relu(tmp_path):
    patched = change_activation(TABULAR, "activation")
    assert (
        'def mlp(n_in: int, n_out: int, hidden: int, layers: int, dropout: float, *, activation="relu")'
        in patched
    )
    assert 'activation=hp["activation"])' in patched
    plain = train(tmp_path, TABULAR, "original", epochs=2)
    assert train(tmp_path, patched, "relu", epochs=2) == plain
    assert train(tmp_path, patched, "silu", epochs=2, activation="silu") != plain


def test_activation_refusals_name_what_the_script_offers():
    with pytest.raises(EditError, match="found no nn.ReLU"):
        change_activation(DIGITS.replace("nn.ReLU()", "nn.Tanh()"), "activation")
    with pytest.raises(EditError, match="'tanh' is not one of relu, gelu, silu"):
        change_activation(DIGITS, "activation", "tanh")
    with pytest.raises(
        EditError, match=r"no ReLU layer at 'head'; ReLU locations here: features.1, features.3"
    ):
        change_activation(DIGITS, "activation", location="head")


def test_activation_preflight_fails_on_a_namespace_without_gelu(tmp_path):
    space = SearchParam(name="activation", kind="categorical", choices=["relu", "gelu"])
    good = propose(tmp_path / "good", USER_SCRIPT, change("change_activation", "activation"), space)
    assert good.checks_passed, good.checks
    bad = propose(tmp_path / "bad", WRAPPED_NN, change("change_activation", "activation"), space)
    assert (
        'nn.Sequential(nn.Linear(4, 8), ACTIVATIONS[hp["activation"]](), nn.Linear(8, 2))'
        in bad.files["train.py"]
    )
    assert not bad.checks_passed and bad.checks[-1].name == "preflight"
    assert "has no attribute 'GELU'" in bad.checks[-1].detail


# --- add_weight_decay ---


def test_weight_decay_defaults_to_the_optimizers_own_and_trains_as_before(tmp_path):
    patched = add_weight_decay(TABULAR_NO_DECAY, "weight_decay")
    assert find_block(patched).defaults["weight_decay"] == 0.01  # AdamW's own default
    assert (
        'torch.optim.AdamW(model.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"])'
        in patched
    )
    plain = train(tmp_path, TABULAR_NO_DECAY, "original", epochs=2)
    assert train(tmp_path, patched, "own", epochs=2) == plain
    assert train(tmp_path, patched, "strong", epochs=2, weight_decay=0.5) != plain
    assert find_block(add_weight_decay(USER_SCRIPT, "weight_decay")).defaults["weight_decay"] == 0.0  # SGD's


def test_weight_decay_refuses_an_optimizer_that_sets_it_or_several_optimizers():
    with pytest.raises(EditError, match=r"the AdamW\(...\) may already set weight_decay"):
        add_weight_decay(TABULAR, "wd")
    with pytest.raises(EditError, match="add_weight_decay needs exactly one torch.optim optimizer"):
        add_weight_decay(DIGITS.replace("weight_decay = 0.0\n", ""), "weight_decay")
    with pytest.raises(EditError, match="must be a number >= 0, got -1"):
        add_weight_decay(USER_SCRIPT, "weight_decay", -1)


def test_weight_decay_preflight_fails_on_an_optimizer_that_takes_none(tmp_path):
    space = SearchParam(name="weight_decay", kind="float", low=1e-5, high=1e-2, log=True)
    assert propose(
        tmp_path / "good", USER_SCRIPT, change("add_weight_decay", "weight_decay"), space
    ).checks_passed
    bad = propose(tmp_path / "bad", RPROP, change("add_weight_decay", "weight_decay"), space)
    assert not bad.checks_passed and bad.checks[-1].name == "preflight"
    assert "unexpected keyword argument 'weight_decay'" in bad.checks[-1].detail


# --- early_stopping ---


def reported_steps(module, **hparams) -> list[int]:
    """The epochs a run reported to a real (in-memory) Optuna trial: how far it trained."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    module.run(hparams, trial=trial, **SMALL)
    return sorted(study._storage.get_trial(trial._trial_id).intermediate_values)


def test_early_stopping_at_zero_patience_trains_every_epoch_and_stops_a_learner_that_stalls(tmp_path):
    patched = early_stopping(DIGITS, "patience")
    assert find_block(patched).defaults["patience"] == 0
    assert 'monitored = val["accuracy"]' in patched
    plain = train(tmp_path, DIGITS, "original", epochs=3)
    assert train(tmp_path, patched, "off", epochs=3) == plain
    path = tmp_path / "stopping" / "script.py"
    path.parent.mkdir()
    path.write_text(patched)
    module = load_module(path)
    # a learning rate of 0 never improves on epoch 0: patience 2 stops after epochs 1 and 2 show no gain
    assert reported_steps(module, epochs=10, learning_rate=0.0) == list(range(10))
    assert reported_steps(module, epochs=10, learning_rate=0.0, patience=2) == [0, 1, 2]


def test_early_stopping_watches_in_the_metrics_direction_and_reuses_a_named_value():
    minimizing = early_stopping(USER_SCRIPT, "patience", 3, direction="minimize")
    assert "if accuracy < best_monitored:" in minimizing
    assert "monitored =" not in minimizing and find_block(minimizing).defaults["patience"] == 3
    assert coder.apply_intents(
        USER_SCRIPT, [change("early_stopping", "patience")], "train.py", "minimize"
    ) == (early_stopping(USER_SCRIPT, "patience", direction="minimize", where="train.py"))


def test_early_stopping_refuses_a_loop_that_reports_nothing_or_a_bad_patience():
    with pytest.raises(EditError, match="early_stopping watches the value the epoch loop reports"):
        early_stopping(USER_SCRIPT.replace("        report(trial, accuracy, epoch)\n", ""), "patience")
    with pytest.raises(EditError, match="whole number >= 0, got 1.5"):
        early_stopping(USER_SCRIPT, "patience", 1.5)


def test_early_stopping_preflight_fails_when_the_reported_value_is_not_a_number(tmp_path):
    space = SearchParam(name="patience", kind="int", low=1, high=4)
    assert propose(tmp_path / "good", USER_SCRIPT, change("early_stopping", "patience"), space).checks_passed
    bad = propose(tmp_path / "bad", LOGGED, change("early_stopping", "patience"), space)
    assert not bad.checks_passed and bad.checks[-1].name == "preflight"
    assert "'>' not supported between instances of 'dict' and 'float'" in bad.checks[-1].detail


# --- limit_train_examples ---


def test_the_cap_at_zero_trains_on_the_whole_split_and_a_cap_on_the_same_examples_every_seed(tmp_path):
    patched = limit_train_examples(DIGITS_NO_CAP, "max_train_examples")
    assert 'x_train, y_train = data.limit_examples(hp["max_train_examples"], x_train, y_train)' in patched
    plain = train(tmp_path, DIGITS_NO_CAP, "original", epochs=1)
    assert train(tmp_path, patched, "all", epochs=1) == plain
    assert train(tmp_path, patched, "capped", epochs=1, max_train_examples=50) != plain
    x, y = torch.arange(100.0), torch.arange(100) % 3
    torch.manual_seed(1)
    first = data.limit_examples(30, x, y)
    torch.manual_seed(2)
    again = data.limit_examples(30, x, y)
    assert torch.equal(first[0], again[0]) and len(first[1]) == 30
    assert torch.equal(first[0], first[0].sort().values)  # kept in the split's own order
    assert [c is o for c, o in zip(data.limit_examples(0, x, y), (x, y), strict=True)] == [True, True]
    assert data.limit_examples(0, x) is x


def test_the_cap_keeps_each_columns_type_and_refuses_columns_of_different_lengths():
    rows = list(range(10))
    kept = data.limit_examples(4, rows)
    assert isinstance(kept, list) and len(kept) == 4 and kept == sorted(kept)
    assert data.limit_examples(4, tuple(rows)) == tuple(kept)
    with pytest.raises(ValueError, match=r"differ in length \(\[10, 9\]\)"):
        data.limit_examples(4, rows, rows[1:])
    with pytest.raises(ValueError, match="max_train_examples must be 0"):
        data.limit_examples(-1, rows)


def test_the_cap_on_a_users_script_imports_its_helper_and_fails_the_preflight_on_a_stream(tmp_path):
    space = SearchParam(name="learning_rate", kind="float", low=0.1, high=1.0)
    cap = change("limit_train_examples", "max_train_examples", value=100)
    good = propose(tmp_path / "good", USER_SCRIPT, cap, space)
    assert good.checks_passed, good.checks
    text = good.files["train.py"]
    assert "from experiments.data import limit_examples\n" in text
    assert find_block(text).defaults["max_train_examples"] == 100
    bad = propose(tmp_path / "bad", STREAMED, cap, space)
    assert 'train_stream = limit_examples(hp["max_train_examples"], train_stream)' in bad.files["train.py"]
    assert not bad.checks_passed and bad.checks[-1].name == "preflight"
    assert "has no len()" in bad.checks[-1].detail


def test_the_cap_refuses_a_script_without_a_training_split_or_with_the_cap_already():
    with pytest.raises(EditError, match="found no assignment in run\\(\\) of a name holding 'train'"):
        limit_train_examples(
            USER_SCRIPT.replace("x_train", "xs").replace("y_train", "ys"), "max_train_examples"
        )
    with pytest.raises(EditError, match="max_train_examples is already a hyperparameter"):
        limit_train_examples(DIGITS, "max_train_examples")
    located = limit_train_examples(
        USER_SCRIPT.replace("x_train", "xs").replace("y_train", "ys"), "cap", location="xs"
    )
    assert 'xs, ys = limit_examples(hp["cap"], xs, ys)' in located
