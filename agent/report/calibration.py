"""The measured false-positive rate a report quotes beside its comparisons, read from the calibration
benchmark's results (bench/calibration.py) when it has been run on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, ValidationError

from experiments.records import Model


class Calibration(Model):
    """How often this task's pipeline called an A/A comparison better or worse (bench/calibration.py)."""

    runs: int
    false_positives: int
    rate: float
    ci_low: float
    ci_high: float
    measured: str = Field(description="when and where, as the benchmark recorded it")


CALIBRATION_FILE = Path(__file__).resolve().parents[2] / "bench" / "results" / "calibration.json"


def calibration(task: str, path: Path = CALIBRATION_FILE) -> Calibration | None:
    """The measured false-positive rate for `task`, when the calibration benchmark has been run here."""
    try:
        stored = json.loads(path.read_text())
        return Calibration(**stored["tasks"][task], measured=stored["measured"])
    except (OSError, KeyError, TypeError, ValueError, ValidationError):
        return None
