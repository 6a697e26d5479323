"""tabular-mlp: a multilayer perceptron on one of scikit-learn's bundled tables.

`dataset` picks the table: "breast_cancer" (Wisconsin, 569 patients, 30 measurements, benign or malignant; the
default), "wine" (178 x 13, 3 cultivars), "iris" (150 x 4, 3 species) or "digits" (1,797 8x8 images flattened
to 64 pixels, 10 classes). Features are standardised on the train split; the output layer has one unit per
class. `max_train_examples` caps the training split (0 keeps all), the same subset for every run and seed.
Offline and well under a second per trial on a CPU.
"""

import torch
from torch import nn

from experiments import data
from experiments.script import block_defaults
from experiments.training import (
    EpochLoss,
    batches,
    final_metrics,
    report,
    resolve_device,
    seed_everything,
)

# --- hyperparameters ---
dataset = "breast_cancer"
learning_rate = 1e-3
epochs = 10
batch_size = 32
hidden_size = 32
layers = 1
dropout = 0.0
weight_decay = 0.0
max_train_examples = 0
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)


def mlp(n_in: int, n_out: int, hidden: int, layers: int, dropout: float) -> nn.Sequential:
    blocks, width = [], n_in
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, n_out))


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    """Train with `hparams` over the defaults above; return validation metrics (and test ones if `holdout`)."""
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    generator = seed_everything(seed)
    dev = resolve_device(device)
    table = data.tabular(str(hp["dataset"]), data_fraction, max_train=int(hp["max_train_examples"]))
    splits = table.splits
    x_train, y_train = splits["train"]

    n_out = len(table.classes)
    model = mlp(x_train.shape[1], n_out, int(hp["hidden_size"]), int(hp["layers"]), float(hp["dropout"]))
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"])

    for epoch in range(int(hp["epochs"])):
        train_loss = EpochLoss()
        for idx in batches(len(x_train), int(hp["batch_size"]), generator):
            loss = nn.functional.cross_entropy(model(x_train[idx].to(dev)), y_train[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train_loss.add(loss, len(idx))
        val = final_metrics(model, splits, holdout=False)
        report(trial, val["accuracy"], epoch, train_loss=train_loss.mean(), **val)

    return final_metrics(model, splits, holdout, trial)
