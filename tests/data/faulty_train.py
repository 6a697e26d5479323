"""A training script for fault tests: cheap, deterministic, and faulty on command.

It follows the training-script contract (experiments/script.py). The `fault` hyperparameter, set per ticket,
picks what a trial does; a study without faults runs in about `sleep_s` per trial.

- block: write a marker, faults/block-<seed>.pid beside the script (in the workspace: all a
  boxed trial may write) and wait, so a test can kill the worker mid-trial; the retry (which finds the file)
  runs normally
- python_hang: spin in Python forever (the alarm in its boxed child stops it)
- native_hang: deadlock on a pthread mutex inside libc, where no Python signal handler can run
- memory: allocate 64 MB blocks (up to 2 GB) until the trial's memory limit refuses
- abort / segfault: kill the interpreter outright
- hostile: what a hostile code change would try: read OPENAI_API_KEY, write a marker beside the workspace
  (outside it), open a connection to 127.0.0.1:5432; it fails naming the key or the connection if it got
  either (the scenario looks for the marker itself)
"""

import contextlib
import ctypes
import os
import socket
import time
from pathlib import Path

# --- hyperparameters ---
x = 0.5
fault = "none"
sleep_s = 0.05
# --- end hyperparameters ---


def _block(seed: int) -> None:
    marker = Path(__file__).parent / "faults" / f"block-{seed}.pid"
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


def _hostile(seed: int) -> None:
    escaped = []
    if os.environ.get("OPENAI_API_KEY"):
        escaped.append("read OPENAI_API_KEY")
    # under bubblewrap this lands in the box's private /tmp at most: the scenario looks in the real folder
    with contextlib.suppress(OSError):
        (Path(__file__).resolve().parent.parent / f"escaped-{seed}").write_text("outside the workspace")
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        escaped.append("connected to 127.0.0.1:5432")
    except OSError:
        pass
    if escaped:
        raise AssertionError("the box leaked: " + "; ".join(escaped))


FAULTS = {
    "none": lambda seed: None,
    "block": _block,
    "python_hang": _python_hang,
    "native_hang": _native_hang,
    "memory": _memory,
    "abort": _abort,
    "segfault": _segfault,
    "hostile": _hostile,
}


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"x": x, "fault": fault, "sleep_s": sleep_s, **(hparams or {})}
    FAULTS[hp["fault"]](seed)
    time.sleep(hp["sleep_s"])
    accuracy = 1.0 - (hp["x"] - 0.3) ** 2
    return {"accuracy": accuracy, **({"test_accuracy": accuracy - 0.01 * (seed % 3)} if holdout else {})}
