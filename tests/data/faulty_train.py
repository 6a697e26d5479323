"""A training script for fault tests: cheap, deterministic, and faulty on command.

It follows the training-script contract (experiments/script.py). The `fault` hyperparameter, set per ticket,
picks what a trial does; a study without faults runs in about `sleep_s` per trial.

- block: write this process's pid to $FAULT_DIR/block-<seed>.pid and wait, so a test can kill the worker
  mid-trial; the retry (which finds the file) runs normally
- python_hang: spin in Python forever (the worker's alarm stops it)
- native_hang: deadlock on a pthread mutex inside libc, where no Python signal handler can run
- memory: allocate 64 MB blocks (up to 2 GB) until the worker's memory limit refuses
- abort / segfault: kill the interpreter outright
"""

import ctypes
import os
import time
from pathlib import Path

# --- hyperparameters ---
x = 0.5
fault = "none"
sleep_s = 0.05
# --- end hyperparameters ---


def _block(seed: int) -> None:
    marker = Path(os.environ["FAULT_DIR"]) / f"block-{seed}.pid"
    if marker.exists():
        return
    marker.write_text(str(os.getpid()))
    time.sleep(120)


def _python_hang(seed: int) -> None:
    while True:
        pass


def _native_hang(seed: int) -> None:
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)
    libc.pthread_mutex_init(mutex, None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)


def _memory(seed: int) -> None:
    blocks = [bytearray(64 << 20) for _ in range(32)]
    raise AssertionError(f"allocated {len(blocks) * 64} MB: the memory limit did not hold")


def _abort(seed: int) -> None:
    os.abort()


def _segfault(seed: int) -> None:
    ctypes.string_at(0)


FAULTS = {
    "none": lambda seed: None,
    "block": _block,
    "python_hang": _python_hang,
    "native_hang": _native_hang,
    "memory": _memory,
    "abort": _abort,
    "segfault": _segfault,
}


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"x": x, "fault": fault, "sleep_s": sleep_s, **(hparams or {})}
    FAULTS[hp["fault"]](seed)
    time.sleep(hp["sleep_s"])
    accuracy = 1.0 - (hp["x"] - 0.3) ** 2
    return {"accuracy": accuracy, **({"test_accuracy": accuracy - 0.01 * (seed % 3)} if holdout else {})}
