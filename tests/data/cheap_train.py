"""A cheap training script: accuracy is a smooth function of the hyperparameters."""

import math

# --- hyperparameters ---
learning_rate = 0.01
dropout = 0.1
epochs = 3
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"learning_rate": learning_rate, "dropout": dropout, "epochs": epochs, **(hparams or {})}
    accuracy = 0.9 - 0.01 * (math.log10(hp["learning_rate"]) + 2) ** 2 - 0.1 * (hp["dropout"] - 0.2) ** 2
    accuracy += 0.001 * seed
    return {"accuracy": accuracy, **({"test_accuracy": accuracy - 0.005} if holdout else {})}
