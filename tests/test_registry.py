import pytest

from experiments import registry
from experiments.script import ScriptContractError, find_block
from experiments.tasks import digits_cnn, tabular_mlp


def test_every_task_space_names_hyperparameters_its_script_takes():
    for name in registry.names():
        task = registry.get(name)
        assert task.script.is_file()
        missing = {p.name for p in task.search_space} - set(task.defaults)
        assert not missing, f"{name}: search space names {missing} absent from the script's block"


def test_unknown_task_error_lists_the_known_ones():
    with pytest.raises(registry.UnknownTask) as info:
        registry.get("nope")
    assert "digits-cnn" in str(info.value)


@pytest.mark.parametrize("module", [digits_cnn, tabular_mlp])
def test_same_seed_same_metric_other_seed_other_metric(module):
    small = {"epochs": 2}
    first = module.run(small, seed=3, data_fraction=0.5)
    assert module.run(small, seed=3, data_fraction=0.5) == first
    assert module.run(small, seed=4, data_fraction=0.5) != first


def test_holdout_adds_test_metrics_only_when_asked():
    val = digits_cnn.run({"epochs": 1}, data_fraction=0.3)
    both = digits_cnn.run({"epochs": 1}, data_fraction=0.3, holdout=True)
    assert not any(k.startswith("test_") for k in val)
    assert both["accuracy"] == val["accuracy"] and "test_accuracy" in both


def test_hyperparameters_change_the_result():
    base = digits_cnn.run({"epochs": 1}, data_fraction=0.5)
    more = digits_cnn.run({"epochs": 4}, data_fraction=0.5)
    assert more["accuracy"] > base["accuracy"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "exactly one"),
        ("# --- hyperparameters ---\nlr = foo()\n# --- end hyperparameters ---\n", "not a literal"),
        ("# --- hyperparameters ---\nimport os\n# --- end hyperparameters ---\n", "only `name = literal`"),
        ("# --- hyperparameters ---\n# --- end hyperparameters ---\n", "empty"),
        ("# --- hyperparameters ---\nlr = [1]\n# --- end hyperparameters ---\n", "number, string or boolean"),
    ],
)
def test_script_contract_errors_say_what_is_wrong(source, message):
    with pytest.raises(ScriptContractError, match=message):
        find_block(source)


def test_user_script_becomes_a_task_with_a_space_around_its_defaults(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "# --- hyperparameters ---\nlearning_rate = 0.01\nepochs = 4\nuse_bias = True\n"
        "# --- end hyperparameters ---\n\n"
        "def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device='auto'):\n"
        "    return {'accuracy': 0.5}\n"
    )
    task = registry.from_script(script)
    space = {p.name: p for p in task.search_space}
    assert space["learning_rate"].log and space["learning_rate"].contains(0.01)
    assert space["epochs"].contains(4) and space["use_bias"].choices == [False, True]
