"""What every benchmark shares: where results go, the machine they ran on, and markdown tables."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every benchmark takes: where to write, and a tiny setting for the smoke test."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="folder for the results (default: %(default)s)"
    )
    p.add_argument("--smoke", action="store_true", help="a tiny setting that only checks the script runs")
    return p


def cpu_model() -> str:
    """lscpu's model name, or what the platform module knows when lscpu is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> str:
    """One line naming the machine and the software a figure was measured with."""
    import optuna
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()}, {cores()} cores, {gpu}; Python {platform.python_version()}, "
        f"Optuna {optuna.__version__}, torch {torch.__version__}"
    )


def header(title: str, command: Sequence[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {title}\n\nMeasured {stamp} on {machine()}; 1-minute load average at the start "
        f"{os.getloadavg()[0]:.1f} (timings are only comparable on an otherwise idle machine).\n\n"
        f"Command: `python {' '.join(command)}`\n"
    )


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(out: Path, name: str, text: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text)
    return path


def command_line() -> list[str]:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return [str(shown), *sys.argv[1:]]
