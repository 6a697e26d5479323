"""Helpers for the code-change tests: train a script version as a worker imports it, and propose a checked
patch to a user's script, so each kind's test is about its edit and not about the plumbing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.code import coder
from agent.config import Settings
from agent.schemas import CodeChangeIntent, CodePatch, ExperimentPlan
from experiments import registry
from experiments.records import Metric, SearchParam
from experiments.script import load_module

SMALL = {"seed": 0, "data_fraction": 0.3, "device": "cpu"}
ACCURACY = Metric(name="accuracy", direction="maximize")


def train(tmp_path: Path, text: str, label: str, **hparams: Any) -> dict[str, float]:
    """Import a script version from its own file, as a worker does, and train it on small settings."""
    path = tmp_path / label / "script.py"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return load_module(path).run(hparams, **SMALL)


def propose(tmp_path: Path, text: str, change: CodeChangeIntent, param: SearchParam) -> CodePatch:
    """The coder's checked patch (edits, compile, contract, preflight) of `text` as a user's `--script`."""
    script = tmp_path / "project" / "train.py"
    script.parent.mkdir(parents=True)
    script.write_text(text)
    task = registry.from_script(script, ACCURACY)
    plan = ExperimentPlan(
        title="t",
        idea="i",
        objective="o",
        hypothesis="h",
        task=task.name,
        search_space=[param],
        metric=ACCURACY,
        code_changes=[change],
    )
    return coder.propose_patch(plan, task, tmp_path / "run", Settings(device="cpu"))
