"""Compression-aware evaluation: a trained classifier compressed (int8 dynamic quantization or global magnitude
pruning, optionally fine-tuned with the zeroed weights held), then measured as it would be deployed: its
metrics, its size in bytes and its CPU latency per batch.

The worker sets the plan's transform for its process (`use`); a script's last evaluation
(`training.final_metrics(..., trial)`) then reports the compressed model's metrics under the usual names, so the
study's objective is the compressed model's metric with no change to the script, and the uncompressed metrics,
sizes and latencies under their own names beside them.
"""

from __future__ import annotations

import copy
import io
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from experiments.records import CORES, LOAD, MODEL_SIZE, SPREAD, Compression

LATENCY_BATCH = 64
LATENCY_REPEATS = 11
FINETUNE_LR = 1e-3
FINETUNE_BATCH = 64
QUANTIZED = {nn.Linear, nn.LSTM}
PRUNED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

FOOTPRINT = (MODEL_SIZE.name, "latency_ms", SPREAD)  # what `footprint` measures, in this order

_active: Compression | None = None


def use(compression: Compression | None) -> None:
    """Compress every final evaluation in this process with `compression` (None: evaluate as trained)."""
    global _active
    _active = compression


def active() -> Compression | None:
    return _active


def compress(
    model: nn.Module, how: Compression, train: tuple[torch.Tensor, torch.Tensor] | None = None
) -> nn.Module:
    """A compressed copy of `model` on the CPU (where int8 kernels run), in eval mode; `model` is untouched.
    `train` (inputs, labels) is the split that pruning's fine-tuning epochs, if any, train on."""
    copied = copy.deepcopy(model).eval()
    if how.kind == "int8_dynamic":
        if not any(isinstance(m, tuple(QUANTIZED)) for m in copied.modules()):
            raise ValueError("int8 dynamic quantization needs Linear or LSTM layers; the model has none")
        return torch.ao.quantization.quantize_dynamic(copied.cpu(), QUANTIZED, dtype=torch.qint8)
    weights = [(m, "weight") for m in copied.modules() if isinstance(m, PRUNED)]
    if not weights:
        raise ValueError("magnitude pruning needs Linear or Conv layers; the model has none")
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=how.sparsity or 0.5)
    if how.finetune_epochs:
        if train is None:
            raise ValueError("fine-tuning after pruning needs the training split")
        finetune(copied, *train, how.finetune_epochs)
    for module, name in weights:
        prune.remove(module, name)  # the zeros become the weights themselves
    return copied.cpu().eval()


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """Train a pruned classifier in place, on its own device, while its pruning masks hold the zeroed weights
    at zero (prune's hooks multiply each weight by its mask): the kept weights learn to make up for the rest.
    The batch order comes from torch's global generator, which the script seeded: a seed gives one result."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=FINETUNE_LR)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(x)).split(FINETUNE_BATCH):
            loss = nn.functional.cross_entropy(model(x[rows].to(device)), y[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


def size_bytes(model: nn.Module) -> int:
    """The bytes of the model's state dict as torch.save writes it: what a checkpoint of it takes."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def nonzero_fraction(model: nn.Module) -> float:
    """The share of the float parameters that are not zero (1.0 for a dense model)."""
    values = [p.detach() for p in model.parameters() if p.is_floating_point()]
    total = sum(v.numel() for v in values)
    return sum(int(v.count_nonzero()) for v in values) / total if total else 1.0


def latency_ms(model: nn.Module, batch: torch.Tensor) -> tuple[float, float]:
    """Median wall time of a forward pass over one batch on the CPU, in milliseconds, over LATENCY_REPEATS
    timings after one warm-up, and their interquartile range (how much the timings varied)."""
    model = model.cpu().eval()
    batch = batch[:LATENCY_BATCH].cpu()
    times = []
    with torch.no_grad():
        model(batch)
        for _ in range(LATENCY_REPEATS):
            started = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - started) * 1000)
    low, _, high = statistics.quantiles(times, n=4)
    return statistics.median(times), high - low


def footprint(model: nn.Module, batch: torch.Tensor) -> dict[str, float]:
    """The model as deployed: its bytes, and its CPU latency per batch of LATENCY_BATCH with its spread."""
    median, spread = latency_ms(model, batch)
    return dict(zip(FOOTPRINT, (float(size_bytes(model)), median, spread), strict=True))


def compressed_metrics(
    trained: nn.Module,
    small: nn.Module,
    evaluate: Callable[[nn.Module], dict[str, float]],
    batch: torch.Tensor,
) -> dict[str, float]:
    """`evaluate` on the compressed model under the usual names, the same on the trained model prefixed
    `uncompressed_`, and both models' size, latency per batch of LATENCY_BATCH (with its spread over the
    repeats) and share of nonzero weights; and the machine's 1-minute load average and CPU count beside them."""
    out = {f"uncompressed_{k}": v for k, v in evaluate(trained).items()}
    out |= evaluate(small)
    for prefix, m in (("", small), ("uncompressed_", copy.deepcopy(trained).cpu().eval())):
        out |= {f"{prefix}{k}": v for k, v in footprint(m, batch).items()}
        out[f"{prefix}nonzero_fraction"] = nonzero_fraction(m)
    out[LOAD], out[CORES] = os.getloadavg()[0], float(os.cpu_count() or 1)
    return out
