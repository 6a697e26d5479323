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


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> dict[str, float]:
    """Loss, accuracy and top-5 accuracy of a classifier on one split."""
    model.eval()
    loss_sum, correct, top5, device = 0.0, 0, 0, next(model.parameters()).device
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        with autocast(device):
            logits = model(xb).float()
        loss_sum += torch.nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(dim=1) == yb).sum().item()
        k = min(5, logits.shape[1])
        top5 += (logits.topk(k, dim=1).indices == yb[:, None]).any(dim=1).sum().item()
    model.train()
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x), "top5_accuracy": top5 / len(x)}


def report(trial: Any, value: float, step: int) -> None:
    """Report an intermediate validation value; raise TrialPruned when the pruner says stop.

    A study without a pruner is not asked: asking reads the trial back from the storage, a query per epoch on
    PostgreSQL (bench/results/overhead.md)."""
    if trial is None:
        return
    trial.report(value, step)
    if not isinstance(trial.study.pruner, optuna.pruners.NopPruner) and trial.should_prune():
        raise TrialPruned(f"pruned at step {step} with value {value:.4f}")


def final_metrics(
    model: torch.nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], holdout: bool
) -> dict[str, float]:
    """Validation metrics, and test metrics (prefixed `test_`) only when the held-out split is asked for."""
    metrics = evaluate(model, *splits["validation"])
    if holdout:
        metrics.update({f"test_{k}": v for k, v in evaluate(model, *splits["test"]).items()})
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
