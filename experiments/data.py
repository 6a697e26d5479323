"""Data for the tasks: fixed splits, offline built-ins, local files and Hugging Face hub data sets.

The split never depends on the training seed, so a baseline and a candidate always see the same examples.
"""

from __future__ import annotations

import numpy as np
import torch

SPLIT_SEED = 0


class DataUnavailable(RuntimeError):
    """A data set or model that cannot be loaded here; the message says what is missing and how to supply it."""


def three_way_split(
    labels: np.ndarray, validation: float = 0.2, test: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train / validation / test indices, the same on every call."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test_idx = train_test_split(idx, test_size=test, stratify=labels, random_state=SPLIT_SEED)
    val_share = validation / (1.0 - test)
    train_idx, val_idx = train_test_split(
        rest, test_size=val_share, stratify=labels[rest], random_state=SPLIT_SEED
    )
    return train_idx, val_idx, test_idx


def subset(indices: np.ndarray, fraction: float) -> np.ndarray:
    """The first `fraction` of a split (already shuffled by the split), for low-resource exploration."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data_fraction must be in (0, 1], got {fraction}")
    return indices[: max(1, int(round(len(indices) * fraction)))]


def tensor_splits(
    x: np.ndarray, y: np.ndarray, data_fraction: float = 1.0, x_dtype: torch.dtype = torch.float32
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    train, val, test = three_way_split(y)
    train = subset(train, data_fraction)
    return {
        name: (torch.as_tensor(x[idx], dtype=x_dtype), torch.as_tensor(y[idx], dtype=torch.long))
        for name, idx in (("train", train), ("validation", val), ("test", test))
    }


def digits(data_fraction: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), scaled to [0, 1], as N x 1 x 8 x 8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return tensor_splits(x, bunch.target, data_fraction)


def breast_cancer(data_fraction: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's bundled Wisconsin breast cancer table (569 x 30), standardised on the train split."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    splits = tensor_splits(bunch.data.astype(np.float32), bunch.target, data_fraction)
    mean, std = splits["train"][0].mean(0), splits["train"][0].std(0) + 1e-6
    return {name: ((x - mean) / std, y) for name, (x, y) in splits.items()}
