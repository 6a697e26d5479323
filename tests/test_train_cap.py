"""The training-set cap (`max_train_examples`) on the built-in scripts, and the tabular task's bundled tables."""

from __future__ import annotations

import pytest
import torch

from experiments import data, registry, sources
from experiments.tasks import digits_cnn, image_classification, tabular_mlp

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TABLE_SHAPES = {"breast_cancer": (30, 2), "wine": (13, 3), "iris": (4, 3), "digits": (64, 10)}


def sizes(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, int]:
    return {name: len(y) for name, (_, y) in splits.items()}


def test_the_cap_keeps_the_first_examples_of_the_train_split_and_never_cuts_the_others():
    full, capped = data.digits(), data.digits(max_train=50)
    assert sizes(capped) == {**sizes(full), "train": 50}
    assert torch.equal(capped["train"][0], full["train"][0][:50])
    assert all(torch.equal(capped[s][0], full[s][0]) for s in ("validation", "test"))
    again = data.digits(max_train=50)
    assert torch.equal(again["train"][0], capped["train"][0]) and torch.equal(
        again["train"][1], capped["train"][1]
    )


def test_data_fraction_applies_to_the_capped_set():
    capped, half = data.digits(max_train=50), data.digits(0.5, max_train=50)
    assert sizes(half)["train"] == 25 and torch.equal(half["train"][0], capped["train"][0][:25])
    images = data.load_images(sources.BUILTIN_IMAGES, 8, 0.5, max_train=50)
    assert len(images.splits["train"][1]) == 25
    assert len(images.splits["validation"][1]) == len(
        data.load_images(sources.BUILTIN_IMAGES, 8).splits["validation"][1]
    )
    with pytest.raises(ValueError, match="max_train_examples must be 0"):
        data.digits(max_train=-1)


@pytest.mark.parametrize(("module", "train_size"), [(digits_cnn, 1077), (tabular_mlp, 341)])
def test_a_capped_script_trains_on_exactly_those_examples(module, train_size):
    """Capping at 50 trains on the same rows as data_fraction=50/N, which the loaders say are the first 50."""
    loaded = data.digits() if module is digits_cnn else data.tabular("breast_cancer").splits
    assert sizes(loaded)["train"] == train_size
    capped = module.run({"max_train_examples": 50, "epochs": 1}, seed=0, device="cpu")
    assert module.run({"epochs": 1}, seed=0, data_fraction=50 / train_size, device="cpu") == capped
    assert module.run({"epochs": 1}, seed=0, device="cpu") != capped
    assert module.run({"max_train_examples": 50, "epochs": 1}, seed=0, device="cpu") == capped


@pytest.mark.parametrize("module", [digits_cnn, tabular_mlp, image_classification])
def test_the_default_cap_of_zero_trains_exactly_as_before(module):
    assert module.HYPERPARAMETERS["max_train_examples"] == 0
    small = {"epochs": 1, "width": 4} if module is image_classification else {"epochs": 1}
    plain = module.run(small, seed=0, data_fraction=0.3, device="cpu")
    assert module.run({**small, "max_train_examples": 0}, seed=0, data_fraction=0.3, device="cpu") == plain


@pytest.mark.parametrize("name", list(TABLE_SHAPES))
def test_each_bundled_table_loads_standardised_and_trains(name):
    table = data.tabular(name)
    features, classes = TABLE_SHAPES[name]
    x_train, y_train = table.splits["train"]
    assert x_train.shape[1] == features and len(table.classes) == classes
    assert set(y_train.tolist()) == set(range(classes))
    assert torch.allclose(x_train.mean(0), torch.zeros(features), atol=1e-4)
    assert all(torch.isfinite(x).all() and x.abs().max() < 1e3 for x, _ in table.splits.values())
    metrics = tabular_mlp.run({"dataset": name, "epochs": 1}, seed=0, holdout=True, device="cpu")
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert {"test_loss", "test_top5_accuracy"} <= set(metrics)


def test_an_unknown_table_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown table 'titanic': choose breast_cancer, wine, iris, digits"):
        tabular_mlp.run({"dataset": "titanic", "epochs": 1}, device="cpu")


def test_check_available_accepts_the_tables_and_the_tabular_task():
    for name in TABLE_SHAPES:
        data.check_available({"dataset": name, "hidden_size": 32})
    data.check_available(registry.get("tabular-mlp").defaults)
    assert registry.get("tabular-mlp").defaults["dataset"] == "breast_cancer"
    data.check_available({"dataset": sources.BUILTIN_IMAGES, "image_size": 8})
