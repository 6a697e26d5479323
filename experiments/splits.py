"""The fixed train / validation / test splits and the training-set cuts that every task's data goes through.

The split never depends on the training seed, so a baseline and a candidate always see the same examples.
"""

from __future__ import annotations

import numpy as np
import torch

SPLIT_SEED = 0


def three_way_split(
    labels: np.ndarray, validation: float | int = 0.2, test: float | int = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train / validation / test indices, the same on every call; sizes are shares or counts."""
    rest, test_idx = _carve(np.arange(len(labels)), labels, test)
    val_size = validation if isinstance(validation, int) else validation / (1.0 - test)
    train_idx, val_idx = _carve(rest, labels, val_size)
    return train_idx, val_idx, test_idx


def _carve(rows: np.ndarray, labels: np.ndarray, size: float | int) -> tuple[np.ndarray, np.ndarray]:
    """Split `rows` in two, stratified by label where every class has enough rows for that."""
    from sklearn.model_selection import train_test_split

    try:
        kept, carved = train_test_split(rows, test_size=size, stratify=labels[rows], random_state=SPLIT_SEED)
    except ValueError:
        kept, carved = train_test_split(rows, test_size=size, random_state=SPLIT_SEED)
    return kept, carved


def fixed_split(
    labels: np.ndarray, source: np.ndarray, sizes: tuple[float | int, float | int] = (0.2, 0.2)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices that keep the source's own labelled splits where it has them.

    The held-out test is the source's test split, else its validation split (GLUE hides its test labels);
    validation is the source's validation split when that is not the test, else carved from train.
    """
    train, val, test = (np.flatnonzero(source == name) for name in ("train", "validation", "test"))
    if not len(train) or not (len(val) or len(test)):
        return three_way_split(labels, *sizes)
    if not len(test):
        test, val = val, test
    if len(val):
        return np.random.default_rng(SPLIT_SEED).permutation(train), val, test
    train, val = _carve(train, labels, sizes[0])
    return train, val, test


def subset(indices: np.ndarray, fraction: float) -> np.ndarray:
    """The first `fraction` of a split (already shuffled by the split), for low-resource exploration."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data_fraction must be in (0, 1], got {fraction}")
    return indices[: max(1, int(round(len(indices) * fraction)))]


def train_subset(indices: np.ndarray, fraction: float = 1.0, max_train: int = 0) -> np.ndarray:
    """The training split cut to its first `max_train` examples (0 keeps all), then to `fraction` of those.

    The cap comes first so that a script's `max_train_examples` fixes the training set of every run, arm and
    seed (the split is shuffled with a fixed seed), and data_fraction still explores below it.
    """
    if max_train < 0:
        raise ValueError(f"max_train_examples must be 0 (all) or a positive count, got {max_train}")
    return subset(indices[:max_train] if max_train else indices, fraction)


def tensor_splits(
    x: np.ndarray,
    y: np.ndarray,
    data_fraction: float = 1.0,
    x_dtype: torch.dtype = torch.float32,
    max_train: int = 0,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    train, val, test = three_way_split(y)
    train = train_subset(train, data_fraction, max_train)
    return {
        name: (torch.as_tensor(x[idx], dtype=x_dtype), torch.as_tensor(y[idx], dtype=torch.long))
        for name, idx in (("train", train), ("validation", val), ("test", test))
    }
