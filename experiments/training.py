"""Small helpers every training script shares, so each script stays a readable page of its own.

Kept free of any research-loop state: a task script (or a user's `--script`) can import this and nothing else
of ours.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
import torch

from experiments import compression
from experiments.script import TrialPruned


def seed_everything(seed: int) -> torch.Generator:
    """Fix every source of randomness the scripts use; the same seed must give the same metric."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but torch sees no CUDA GPU")
    return torch.device(device)


def autocast(device: torch.device) -> Any:
    """bf16 autocast on GPUs that support it, fp16 on older ones, nothing on the CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast, whose small gradients would underflow; a no-op for bf16 and the CPU."""
    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=fp16)


def classification_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Loss, accuracy and macro-averaged F1 of one split's logits; F1 is what a majority-class guess cannot
    inflate on an unbalanced set."""
    from sklearn.metrics import f1_score

    logits, labels = logits.float().cpu(), labels.cpu()
    predicted = logits.argmax(dim=1)
    return {
        "loss": torch.nn.functional.cross_entropy(logits, labels).item(),
        "accuracy": (predicted == labels).float().mean().item(),
        "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }


def batches(
    n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True
) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """A classifier's logits on `x`, batch by batch (with each batch's rows), in eval mode and without grad."""
    model.eval()
    first = next(model.parameters(), None)  # a fully int8-quantized model has no float parameters: CPU
    device = first.device if first is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                rows = slice(start, start + batch_size)
                with autocast(device):
                    logits = model(x[rows].to(device)).float()
                yield rows, logits
    finally:
        model.train()


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> dict[str, float]:
    """Loss, accuracy and top-5 accuracy of a classifier on one split."""
    loss_sum, correct, top5 = 0.0, 0, 0
    for rows, logits in _logits(model, x, batch_size):
        yb = y[rows].to(logits.device)
        loss_sum += torch.nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(dim=1) == yb).sum().item()
        k = min(5, logits.shape[1])
        top5 += (logits.topk(k, dim=1).indices == yb[:, None]).any(dim=1).sum().item()
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x), "top5_accuracy": top5 / len(x)}


def logits_of(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """A classifier's logits on one split, on the CPU."""
    return torch.cat([logits.cpu() for _, logits in _logits(model, x, batch_size)])


# What a script noted for its trial's record (learning curve, confusion matrix), by trial: the worker stores it
# with the trial's metrics in the same background write, so noting costs no storage round trip.
_NOTES: dict[int, dict[str, Any]] = {}


def take_notes(trial: Any) -> dict[str, Any]:
    """What the script noted for `trial` (keys `curve`, `confusion`, `measured`), forgotten here once taken."""
    return _NOTES.pop(id(trial), {})


def report(trial: Any, value: float, step: int, **curve: float) -> None:
    """Report an intermediate validation value; raise TrialPruned when the pruner says stop.

    `curve` is the epoch's point of the learning curve (`train_loss`, and the validation `loss`, `accuracy`,
    ...), kept in the trial's record for the report's learning curves. A study without a pruner is not asked:
    asking reads the trial back from the storage, a query per epoch on PostgreSQL (bench/results/overhead.md).
    A multi-objective study is neither told nor asked: Optuna supports neither there."""
    if trial is None:
        return
    if curve:
        point = {"epoch": float(step), **{k: float(v) for k, v in curve.items()}}
        _NOTES.setdefault(id(trial), {}).setdefault("curve", []).append(point)
    if len(trial.study.directions) > 1:
        return  # Optuna takes intermediate values and pruning decisions on one objective only
    trial.report(value, step)
    if not isinstance(trial.study.pruner, optuna.pruners.NopPruner) and trial.should_prune():
        raise TrialPruned(f"pruned at step {step} with value {value:.4f}")


def record_confusion(trial: Any, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Note the held-out confusion matrix (rows: true class, columns: predicted) for the trial's record."""
    if trial is None:
        return
    classes = logits.shape[1]
    pairs = labels.cpu().long() * classes + logits.argmax(dim=1).cpu()
    counts = torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
    _NOTES.setdefault(id(trial), {})["confusion"] = counts.tolist()


class EpochLoss:
    """The mean training loss over an epoch's batches, summed on the loss's device so a batch costs no sync."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, loss: torch.Tensor, examples: int) -> None:
        self.total = self.total + loss.detach().float() * examples
        self.count += examples

    def mean(self) -> float:
        return float(self.total) / max(1, self.count)


def final_metrics(
    model: torch.nn.Module,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    holdout: bool,
    trial: Any = None,
) -> dict[str, float]:
    """Validation metrics, and test metrics (prefixed `test_`) only when the held-out split is asked for.

    Called with `trial`, this is the run's final evaluation: the held-out confusion matrix is noted for the
    trial's record with the judged model's size and CPU latency (TrialRecord.measured), and under the plan's
    compression (experiments.compression) the metrics are the compressed model's, with the trained model's
    prefixed `uncompressed_`, sizes and CPU latencies beside them."""

    def measure(m: torch.nn.Module) -> dict[str, float]:
        metrics = evaluate(m, *splits["validation"])
        if holdout:
            metrics.update({f"test_{k}": v for k, v in evaluate(m, *splits["test"]).items()})
        return metrics

    how = compression.active() if trial is not None else None
    batch = splits["validation"][0]
    if how is None:
        metrics = measure(model)
    else:
        small = compression.compress(model, how, splits.get("train"))
        metrics = compression.compressed_metrics(model, small, measure, batch)
        model = small
    if holdout and trial is not None:
        record_confusion(trial, logits_of(model, splits["test"][0]), splits["test"][1])
        # the judged model's size and latency, measured once: the compressed model's are in its metrics
        measured = (
            compression.footprint(model, batch)
            if how is None
            else {k: metrics[k] for k in compression.FOOTPRINT}
        )
        _NOTES.setdefault(id(trial), {})["measured"] = measured
    return metrics


def torch_threads(workers: int) -> None:
    """Share the machine's cores between worker processes instead of oversubscribing them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // max(1, workers)))


def describe_device(device: str = "auto") -> tuple[str, str]:
    """The device trials will run on and its human name, for reports."""
    import platform

    dev = resolve_device(device)
    if dev.type == "cuda":
        return str(dev), torch.cuda.get_device_name(dev)
    return "cpu", platform.processor() or platform.machine()
