"""Sentence classification with the Hugging Face Trainer, in the shape of its run_glue.py example: the
settings are dataclasses parsed by HfArgumentParser (the model's, the data's, and TrainingArguments), the
seed is TrainingArguments' own, the data a CSV read by relative path. The model is a tiny BERT built from a
config and a word-level vocabulary made from the CSV, so it runs offline on a CPU in seconds.

    python run_classifier.py --output_dir out --num_train_epochs 2
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)


@dataclass
class ModelArguments:
    hidden_size: int = field(default=32, metadata={"help": "width of the encoder"})
    num_hidden_layers: int = field(default=1, metadata={"help": "encoder layers"})
    hidden_dropout_prob: float = field(default=0.1, metadata={"help": "dropout in the encoder"})


@dataclass
class DataArguments:
    train_file: str = field(default="data/reviews.csv", metadata={"help": "CSV with text and label columns"})
    validation_split_percentage: int = field(default=25, metadata={"help": "share of rows held out"})
    max_seq_length: int = field(default=16, metadata={"help": "tokens per sentence"})


class Examples(torch.utils.data.Dataset):
    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        ids = torch.tensor(self.ids[i])
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": int(self.labels[i])}


def encode(texts, vocab, length):
    rows = []
    for text in texts:
        ids = [vocab.get(w, 1) for w in text.lower().split()][:length]
        rows.append(ids + [0] * (length - len(ids)))
    return rows


def compute_metrics(prediction):
    logits, labels = prediction
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def main():
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)

    frame = pd.read_csv(data_args.train_file).sample(frac=1.0, random_state=0)
    held = len(frame) * data_args.validation_split_percentage // 100
    train, valid = frame.iloc[held:], frame.iloc[:held]
    words = sorted({w for text in train["text"] for w in text.lower().split()})
    vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 pads, 1 is an unknown word
    length = data_args.max_seq_length

    config = BertConfig(
        vocab_size=len(vocab) + 2,
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=2 * model_args.hidden_size,
        max_position_embeddings=length,
        hidden_dropout_prob=model_args.hidden_dropout_prob,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=Examples(encode(train["text"], vocab, length), train["label"].tolist()),
        eval_dataset=Examples(encode(valid["text"], vocab, length), valid["label"].tolist()),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    print(metrics)


if __name__ == "__main__":
    main()
