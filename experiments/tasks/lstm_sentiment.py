"""lstm-sentiment: an LSTM sentence classifier (embedding, LSTM, dropout, linear) trained from scratch.

Offline by default: 4,000 of the Rotten Tomatoes critics' sentences (fresh or rotten) with a word vocabulary
built from the training split, so that a trial takes seconds on a CPU; `max_train_examples = 0` trains on the
whole training split. For IMDb set `dataset = "imdb"` (from the Hugging Face cache, or downloaded into it when
the hub can be reached) and a longer `max_len` (256); local csv / jsonl / parquet files with text and label
columns, or folders of .txt files per class, work too.
"""

import re
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader, TensorDataset

from experiments import data
from experiments.script import block_defaults
from experiments.training import (
    EpochLoss,
    autocast,
    classification_scores,
    grad_scaler,
    record_confusion,
    report,
    resolve_device,
    seed_everything,
)

# --- hyperparameters ---
dataset = "rotten_tomatoes_offline"
max_train_examples = 4000
embedding_dim = 100
hidden_size = 128
layers = 1
dropout = 0.3
learning_rate = 2e-3
batch_size = 64
epochs = 3
max_len = 40
clip = 1.0
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)
MIN_COUNT = 2  # words seen fewer times in the training split share the unknown-word vector
PAD, UNKNOWN = 0, 1
EVAL_BATCH_SIZE = 256
WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def words(split) -> list[list[str]]:
    texts = (
        split.texts
        if split.pairs is None
        else [f"{a} | {b}" for a, b in zip(split.texts, split.pairs, strict=True)]
    )
    return [WORD.findall(text.lower()) for text in texts]


def vocabulary(sentences: list[list[str]]) -> dict[str, int]:
    counts = Counter(word for sentence in sentences for word in sentence)
    kept = sorted(word for word, count in counts.items() if count >= MIN_COUNT)
    return {word: index for index, word in enumerate(kept, start=2)}


def encode(
    sentences: list[list[str]], vocab: dict[str, int], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids padded to `max_len`, and each sentence's length (at least 1, so empty ones still pack)."""
    ids = torch.full((len(sentences), max_len), PAD, dtype=torch.long)
    lengths = torch.ones(len(sentences), dtype=torch.long)
    for row, sentence in enumerate(sentences):
        tokens = [vocab.get(word, UNKNOWN) for word in sentence[:max_len]] or [UNKNOWN]
        ids[row, : len(tokens)] = torch.tensor(tokens)
        lengths[row] = len(tokens)
    return ids, lengths


class LSTMClassifier(nn.Module):
    def __init__(
        self, vocab_size: int, embedding_dim: int, hidden: int, layers: int, dropout: float, classes: int
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(
            embedding_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(
            self.dropout(self.embedding(ids)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.lstm(packed)
        return self.head(self.dropout(hidden[-1]))


def loader(ids, lengths, labels, batch_size: int, device, generator=None) -> DataLoader:
    return DataLoader(
        TensorDataset(ids, lengths, labels),
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        pin_memory=device.type == "cuda",
    )


@torch.no_grad()
def evaluate(model, batches, device, trial=None) -> dict[str, float]:
    """Metrics on one split; with `trial`, its confusion matrix is noted for the trial's record too."""
    model.eval()
    logits, labels = [], []
    for ids, lengths, y in batches:
        with autocast(device):
            logits.append(model(ids.to(device, non_blocking=True), lengths).float())
        labels.append(y)
    model.train()
    record_confusion(trial, torch.cat(logits), torch.cat(labels))
    return classification_scores(torch.cat(logits), torch.cat(labels))


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    """Train with `hparams` over the defaults above; return validation metrics (and test ones if `holdout`)."""
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    generator = seed_everything(seed)
    dev = resolve_device(device)
    text = data.load_text(hp["dataset"], data_fraction, max_train=int(hp["max_train_examples"]))
    sentences = {name: words(split) for name, split in text.splits.items()}
    vocab = vocabulary(sentences["train"])
    encoded = {name: encode(s, vocab, int(hp["max_len"])) for name, s in sentences.items()}

    def batches(name, size, shuffle=None):
        return loader(*encoded[name], text.splits[name].labels, size, dev, shuffle)

    model = LSTMClassifier(
        len(vocab) + 2,
        int(hp["embedding_dim"]),
        int(hp["hidden_size"]),
        int(hp["layers"]),
        float(hp["dropout"]),
        len(text.classes),
    ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=float(hp["learning_rate"]))
    scaler = grad_scaler(dev)
    train, validation = (
        batches("train", int(hp["batch_size"]), generator),
        batches("validation", EVAL_BATCH_SIZE),
    )

    metrics = {}
    for epoch in range(int(hp["epochs"])):
        train_loss = EpochLoss()
        for ids, lengths, y in train:
            with autocast(dev):
                loss = nn.functional.cross_entropy(model(ids.to(dev, non_blocking=True), lengths), y.to(dev))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), float(hp["clip"]))
            scaler.step(opt)
            scaler.update()
            train_loss.add(loss, len(y))
        metrics = evaluate(model, validation, dev)
        report(trial, metrics["accuracy"], epoch, train_loss=train_loss.mean(), **metrics)

    if holdout:
        test = evaluate(model, batches("test", EVAL_BATCH_SIZE), dev, trial)
        metrics.update({f"test_{k}": v for k, v in test.items()})
    return metrics
