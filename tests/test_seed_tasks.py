"""The three seed tasks on their offline data: they learn, they repeat, and missing data fails in one line."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from experiments import data, hub, registry, sources
from experiments.hub import DataUnavailable
from experiments.script import load_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEED_TASKS = ("text-classification", "image-classification", "lstm-sentiment")


def script(task: str):
    return load_module(registry.get(task).script)


def majority_share(dataset: str) -> float:
    labels = data.load_text(dataset).splits["validation"].labels
    return torch.bincount(labels).max().item() / len(labels)


@pytest.fixture
def no_hub(monkeypatch):
    """The hub switched off the way a user would, with its offline switch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_seed_tasks_are_registered_with_searchable_hyperparameters():
    for name in SEED_TASKS:
        task = registry.get(name)
        assert task.name in registry.names()
        unknown = {p.name for p in task.search_space} - set(task.defaults)
        assert not unknown, f"{name} searches hyperparameters its script does not have: {unknown}"


def test_text_classification_fine_tunes_minilm_past_the_majority_class():
    share = majority_share(sources.BUILTIN_TEXT)
    metrics = script("text-classification").run(seed=0, device="cpu")
    assert metrics["accuracy"] > share + 0.04, (metrics, share)
    assert metrics["f1_macro"] > 0.55, metrics


def test_lstm_sentiment_learns_past_the_majority_class():
    share = majority_share(sources.BUILTIN_TEXT)
    small = {"epochs": 6, "hidden_size": 64, "embedding_dim": 50, "learning_rate": 3e-3}
    metrics = script("lstm-sentiment").run(small, seed=0, data_fraction=0.5, device="cpu")
    assert metrics["accuracy"] > share + 0.04, (metrics, share)
    assert metrics["f1_macro"] > 0.55, metrics


def test_image_classification_resnet_learns_digits_and_reports_holdout():
    metrics = script("image-classification").run(
        {"width": 8, "epochs": 2, "batch_size": 32}, seed=0, data_fraction=0.5, holdout=True, device="cpu"
    )
    assert metrics["accuracy"] > 0.5, metrics  # ten classes: chance is 0.1
    assert metrics["top5_accuracy"] >= metrics["accuracy"]
    assert {"test_accuracy", "test_top5_accuracy", "test_loss"} <= set(metrics)


def test_same_seed_gives_the_same_metrics_and_another_seed_does_not():
    run = script("image-classification").run
    tiny = {"width": 8, "epochs": 1, "batch_size": 32, "augmentation": "crop_flip"}
    first = run(tiny, seed=3, data_fraction=0.3, device="cpu")
    assert run(tiny, seed=3, data_fraction=0.3, device="cpu") == first
    assert run(tiny, seed=4, data_fraction=0.3, device="cpu")["loss"] != first["loss"]


def test_every_seed_task_default_passes_the_availability_check_offline(no_hub):
    for name in SEED_TASKS:
        data.check_available(registry.get(name).defaults)


@pytest.mark.parametrize(
    "hparams, named",
    [
        ({"dataset": "glue/sst2"}, "glue/sst2"),
        ({"dataset": "cifar10", "image_size": 32}, "cifar10"),
        ({"model_name": "bert-base-uncased"}, "bert-base-uncased"),
    ],
)
def test_missing_hub_item_offline_is_one_clear_line(no_hub, hparams, named):
    started = time.monotonic()
    with pytest.raises(DataUnavailable) as caught:
        data.check_available(hparams)
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert "\n" not in message
    assert repr(named) in message and "HF_HOME" in message
    assert ("model_name = " if "model_name" in hparams else "dataset = ") in message


def test_unreachable_hub_without_offline_switch_fails_fast(monkeypatch):
    for name in hub.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused at once
    started = time.monotonic()
    assert not hub.reachable()
    with pytest.raises(DataUnavailable, match="'imdb' is not in the local cache"):
        data.load_text("imdb")
    with pytest.raises(DataUnavailable, match="'distilbert-base-uncased' is not in the local cache"):
        script("text-classification").run({"model_name": "distilbert-base-uncased"}, device="cpu")
    assert time.monotonic() - started < 15


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(DataUnavailable, match="no file or folder at"):
        data.check_available({"dataset": str(tmp_path / "absent.csv")})
    with pytest.raises(DataUnavailable, match="no file or folder at"):
        data.check_available({"dataset": "data/absent.jsonl"})
    with pytest.raises(DataUnavailable, match="has no config.json"):
        data.check_available({"model_name": str(tmp_path)})


def sentences(n: int, offset: int = 0) -> list[dict]:
    """Real labelled sentences from the offline set, as a user's file would hold them."""
    train = data.load_text(sources.BUILTIN_TEXT).splits["train"]
    names = ["fresh", "rotten"]
    return [{"text": train.texts[i], "label": names[int(train.labels[i])]} for i in range(offset, offset + n)]


def test_local_csv_jsonl_and_parquet_tables_load_with_their_labels(tmp_path):
    import pandas as pd

    rows = sentences(50)
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame.to_parquet(tmp_path / "reviews.parquet")
    for suffix in ("csv", "jsonl", "parquet"):
        text = data.load_text(str(tmp_path / f"reviews.{suffix}"))
        assert text.classes == ["fresh", "rotten"]
        sizes = {name: len(split.texts) for name, split in text.splits.items()}
        assert sizes == {"train": 30, "validation": 10, "test": 10}
        seen = {
            t: names
            for split in text.splits.values()
            for t, names in zip(split.texts, split.labels, strict=True)
        }
        assert all(text.classes[int(seen[r["text"]])] == r["label"] for r in rows)


def test_glue_style_folder_keeps_its_splits_and_holds_out_validation_when_test_is_unlabelled(tmp_path):
    import pandas as pd

    pd.DataFrame([{"sentence1": "a b", "sentence2": "b a", "label": i % 2} for i in range(40)]).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame([{"sentence1": "c", "sentence2": "d", "label": i % 2} for i in range(12)]).to_csv(
        tmp_path / "validation.csv", index=False
    )
    pd.DataFrame([{"sentence1": "e", "sentence2": "f", "label": -1} for _ in range(9)]).to_csv(
        tmp_path / "test.csv", index=False
    )
    text = data.load_text(str(tmp_path))
    assert len(text.splits["test"].texts) == 12 and set(text.splits["test"].texts) == {"c"}
    assert len(text.splits["train"].texts) + len(text.splits["validation"].texts) == 40
    assert text.splits["train"].pairs is not None and text.splits["train"].pairs[0] == "b a"


def test_text_classification_trains_on_a_local_jsonl_file(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sentences(60)))
    metrics = script("text-classification").run(
        {"dataset": str(path), "max_seq_length": 16, "batch_size": 12}, seed=0, holdout=True, device="cpu"
    )
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["test_f1_macro"] <= 1.0
    assert np.isfinite(metrics["loss"])


def test_folders_of_text_files_and_images_load_as_classes(tmp_path):
    for label, rows in (("neg", range(0, 12)), ("pos", range(12, 24))):
        (tmp_path / "text" / "train" / label).mkdir(parents=True)
        for i in rows:
            (tmp_path / "text" / "train" / label / f"{i}.txt").write_text(f"review number {i}")
    text = data.load_text(str(tmp_path / "text"))
    assert text.classes == ["neg", "pos"] and sum(len(s.texts) for s in text.splits.values()) == 24

    digits = data.load_images(sources.BUILTIN_IMAGES, 8).splits["test"]
    for i in range(30):
        folder = tmp_path / "images" / f"digit{int(digits[1][i])}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits[0][i, 0].numpy() - digits[0].min().item()) * 30
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    images = data.load_images(str(tmp_path / "images"), 12)
    assert images.splits["train"][0].shape[1:] == (3, 12, 12)
    assert images.classes == sorted(images.classes) and all(c.startswith("digit") for c in images.classes)
