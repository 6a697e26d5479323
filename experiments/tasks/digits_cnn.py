"""digits-cnn: a small convolutional network on scikit-learn's bundled 8x8 handwritten digits.

Offline, a second or two per trial on a laptop CPU. research-loop edits the hyperparameter block below and
calls `run`; everything after the block is an ordinary PyTorch training script.
`max_train_examples` caps the training split (0 keeps all 1,077 of its examples), the same subset for every
run and seed.
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
learning_rate = 1e-3
epochs = 6
batch_size = 64
dropout = 0.0
weight_decay = 0.0
channels = 8
optimizer = "adamw"
max_train_examples = 0
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)


class DigitsCNN(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.dropout(self.features(x).flatten(1)))


def make_optimizer(params, name: str, lr: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: choose adamw, adam or sgd")


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    """Train with `hparams` over the defaults above; return validation metrics (and test ones if `holdout`)."""
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    generator = seed_everything(seed)
    dev = resolve_device(device)
    splits = data.digits(data_fraction, max_train=int(hp["max_train_examples"]))
    x_train, y_train = splits["train"]

    model = DigitsCNN(int(hp["channels"]), float(hp["dropout"])).to(dev)
    opt = make_optimizer(model.parameters(), hp["optimizer"], hp["learning_rate"], hp["weight_decay"])

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
