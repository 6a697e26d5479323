"""What the worker measures of every run beside the script's metrics (experiments.records.MEASURED), so that
a question about time or epochs ("does early stopping save time?") has stored numbers to answer from.

The script's side measures its model (experiments.training notes its size and CPU latency at a held-out
evaluation); this side times the run from outside the script and reads the machine's load, so that a timing
taken while other processes shared the cores says so.
"""

from __future__ import annotations

import os
from typing import Any

from experiments.records import CORES, LOAD


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def of_run(notes: dict[str, Any], seconds: float) -> dict[str, float]:
    """The run's measurements: what the script's side noted (numbers only: it is untrusted), the script's
    wall time, the epochs it reported (its learning curve's points) and the load when it ended."""
    given = notes.get("measured")
    given = (
        {k: float(v) for k, v in given.items() if isinstance(v, int | float)}
        if isinstance(given, dict)
        else {}
    )
    curve = notes.get("curve") or []
    epochs = {"epochs_run": float(len(curve))} if curve else {}
    return {**given, "train_time_s": seconds, **epochs, LOAD: os.getloadavg()[0], CORES: float(cores())}
