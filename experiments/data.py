"""Data for the tasks, as their scripts load it: offline built-ins, local files and hub data sets.

The fixed splits and training-set cuts are in `splits`, the readers of each kind of source in `sources`; the
split never depends on the training seed, so a baseline and a candidate always see the same examples.

A script names its data set with one string (`dataset = ...` in its hyperparameter block):
- a built-in that works offline: `rotten_tomatoes_offline` (text), `digits_offline` (images);
- one of scikit-learn's bundled tables, for the tabular task: `breast_cancer`, `wine`, `iris`, `digits`;
- a local file or folder: csv / tsv / jsonl / json / parquet with text and label columns, a folder holding
  train.* / validation.* / test.* tables, or a folder of class subfolders (`.txt` files or images), optionally
  under train/ validation/ test/ folders;
- a hub data set: an alias in `sources.HUB_ALIASES` (`glue/sst2`, `ag_news`, `imdb`, `cifar10`, ...) or any
  `owner/name`, with `:config` for a configuration (`nyu-mll/glue:mrpc`), loaded and cached by `datasets` as
  usual.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import hub
from experiments.hub import DataUnavailable
from experiments.sources import (
    BUILTIN_IMAGES,
    BUILTIN_TEXT,
    IMAGE_HINT,
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    Labelled,
    _class_folders,
    _digit_images,
    _hub_images,
    _hub_text,
    _local_text,
    _rotten_tomatoes,
    labelled,
)
from experiments.splits import SPLIT_SEED, tensor_splits, train_subset

# Validation and test sentences of the built-in text set: enough to rank configurations, quick on a CPU.
BUILTIN_TEXT_EVAL = 1000


def limit_examples(max_train: int, *columns: Any) -> Any:
    """A script's own training columns cut to `max_train` examples (0 keeps them as they are, the same objects):
    what the `limit_train_examples` code change calls on a script that builds its own training split.

    That split may be in any order (sorted by class, say), so the examples kept are not its first ones but
    train_subset's cut of the split shuffled with SPLIT_SEED, put back in their original order: the same
    examples for every run, arm and seed. The columns (tensors, arrays, lists, data frames, Hugging Face or
    torch data sets) are measured even when nothing is cut, so a split that cannot be (a generator, columns of
    different lengths) fails the preflight at the default, not a trial later.
    """
    if not columns:
        raise ValueError("limit_examples needs at least one training column")
    sizes = [len(c) for c in columns]
    if len(set(sizes)) != 1:
        raise ValueError(f"limit_examples: the training columns differ in length ({sizes})")
    order = np.random.default_rng(SPLIT_SEED).permutation(sizes[0])
    keep = np.sort(train_subset(order, max_train=int(max_train)))
    if len(keep) < sizes[0]:
        columns = tuple(_take(c, keep) for c in columns)
    return columns[0] if len(columns) == 1 else columns


def _take(column: Any, keep: np.ndarray) -> Any:
    """The rows `keep` of one training column, in the column's own type where it has one."""
    if isinstance(column, torch.Tensor):
        return column[torch.as_tensor(keep)]
    if isinstance(column, np.ndarray):
        return column[keep]
    if hasattr(column, "iloc"):
        return column.iloc[keep]
    if hasattr(column, "select"):  # a Hugging Face Dataset
        return column.select(keep.tolist())
    if isinstance(column, list | tuple):
        return type(column)(column[i] for i in keep)
    return torch.utils.data.Subset(column, keep.tolist())


def digits(data_fraction: float = 1.0, max_train: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), scaled to [0, 1], as N x 1 x 8 x 8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return tensor_splits(x, bunch.target, data_fraction, max_train=max_train)


# scikit-learn's bundled tables, by the name a script's `dataset = ...` gives, and their sklearn.datasets loader:
# breast cancer 569 x 30 (2 classes), wine 178 x 13 (3), iris 150 x 4 (3), digits 1,797 x 64 pixels (10).
TABLES: dict[str, str] = {
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
    "iris": "load_iris",
    "digits": "load_digits",
}


@dataclass(frozen=True)
class TableData:
    name: str
    classes: list[str]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # N x features floats, class indices


def tabular(name: str, data_fraction: float = 1.0, max_train: int = 0) -> TableData:
    """One of scikit-learn's bundled tables (TABLES), split once and for all, standardised on the train split.

    A feature that is constant on the train split (a digits border pixel, or any column of a small capped
    split) is only centred: dividing by its zero spread would blow the other splits up.
    """
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}: choose {', '.join(TABLES)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, TABLES[name])()
    splits = tensor_splits(bunch.data.astype(np.float32), bunch.target, data_fraction, max_train=max_train)
    train = splits["train"][0]
    std = train.std(0)
    mean, std = train.mean(0), torch.where(std > 0, std, torch.ones_like(std)) + 1e-6
    classes = [str(c) for c in bunch.target_names]
    return TableData(name, classes, {split: ((x - mean) / std, y) for split, (x, y) in splits.items()})


# --- text ---


@dataclass(frozen=True)
class TextSplit:
    texts: list[str]
    pairs: list[str] | None  # the second sentence of sentence-pair sets (MRPC), else None
    labels: torch.Tensor


@dataclass(frozen=True)
class TextData:
    name: str
    classes: list[str]
    splits: dict[str, TextSplit]


def load_text(dataset: str, data_fraction: float = 1.0, max_train: int = 0) -> TextData:
    """A text classification set, split once and for all; the training split is cut to its first
    `max_train` examples (0 keeps all) and then to `data_fraction` of those."""
    source, index = _text_source(dataset)
    index = {**index, "train": train_subset(index["train"], data_fraction, max_train)}
    return TextData(dataset, source.classes, {name: _text_split(source, idx) for name, idx in index.items()})


def _text_split(source: Labelled, idx: np.ndarray) -> TextSplit:
    items = [source.items[i] for i in idx]
    paired = bool(items) and isinstance(items[0], tuple)
    return TextSplit(
        texts=[item[0] for item in items] if paired else items,
        pairs=[item[1] for item in items] if paired else None,
        labels=torch.as_tensor(source.labels[idx], dtype=torch.long),
    )


@functools.lru_cache(maxsize=4)
def _text_source(dataset: str) -> tuple[Labelled, dict[str, np.ndarray]]:
    """Read and split once per process: a worker runs many trials on the same data."""
    if dataset == BUILTIN_TEXT:
        source = _rotten_tomatoes()
        return source, source.split((BUILTIN_TEXT_EVAL, BUILTIN_TEXT_EVAL))
    # A table name is a local path even when mistyped ("data/train.csv"): no hub set is named like a file.
    local = hub.is_local(dataset) or Path(dataset).suffix.lower() in TABLE_SUFFIXES
    source = _local_text(Path(dataset).expanduser(), dataset) if local else _hub_text(dataset)
    return source, source.split()


# --- images ---


@dataclass(frozen=True)
class ImageData:
    name: str
    classes: list[str]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # N x C x size x size floats, class indices


def load_images(dataset: str, image_size: int, data_fraction: float = 1.0, max_train: int = 0) -> ImageData:
    """An image classification set at `image_size` pixels square, split once and for all, standardised per
    channel with the training split's mean and spread; the training split is cut to its first `max_train`
    examples (0 keeps all) and then to `data_fraction` of those."""
    classes, x, y, index = _image_source(dataset, int(image_size))
    index = {**index, "train": train_subset(index["train"], data_fraction, max_train)}
    train = x[index["train"]]
    mean, std = train.mean(dim=(0, 2, 3), keepdim=True), train.std(dim=(0, 2, 3), keepdim=True) + 1e-6
    return ImageData(dataset, classes, {name: ((x[idx] - mean) / std, y[idx]) for name, idx in index.items()})


@functools.lru_cache(maxsize=2)
def _image_source(
    dataset: str, size: int
) -> tuple[list[str], torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """Decode and split once per process: decoding CIFAR-10 costs seconds that every trial would repeat."""
    if dataset == BUILTIN_IMAGES:
        source = _digit_images()
    elif hub.is_local(dataset):
        path = Path(dataset).expanduser()
        if not path.is_dir():
            raise DataUnavailable(f"no folder at {path}; set dataset = {IMAGE_HINT}")
        source = labelled(dataset, *_class_folders(path, IMAGE_SUFFIXES))
    else:
        source = _hub_images(dataset)
    x = _pixels(source.items, size)
    return source.classes, x, torch.as_tensor(source.labels, dtype=torch.long), source.split()


def _pixels(items: list[Any], size: int) -> torch.Tensor:
    """N x C x size x size floats in [0, 1]: arrays are resampled, image files and PIL images resized to RGB."""
    if isinstance(items[0], np.ndarray):
        x = torch.as_tensor(np.stack(items))
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    from PIL import Image

    def rgb(item: Any) -> np.ndarray:
        with Image.open(item) if isinstance(item, Path) else contextlib.nullcontext(item) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))

    return torch.as_tensor(np.stack([rgb(item) for item in items])).permute(0, 3, 1, 2).float() / 255.0


# --- the preflight ---


def check_available(hparams: Mapping[str, Any]) -> None:
    """Raise DataUnavailable (one line) unless the data set and model a script's hyperparameters name can be
    loaded here: call it before a study's first trial.

    The data set is loaded for real (a second or two for the built-ins and for cached hub sets, which are
    memory-mapped); on a machine with network that also fills the cache once, before workers race to. A model
    is only looked for. A block with `image_size` is read as an image task; a bundled table's name (TABLES) is
    always available; any other block with a `dataset` is read as a text task.
    """
    if "model_name" in hparams:
        hub.check_model(str(hparams["model_name"]))
    if "dataset" not in hparams:
        return
    if "image_size" not in hparams and str(hparams["dataset"]) in TABLES:
        return
    if "image_size" in hparams:
        load_images(str(hparams["dataset"]), int(hparams["image_size"]))
    else:
        load_text(str(hparams["dataset"]))
