"""Answers a model would send, for the tests and the planning bench's smoke test to script fake servers with."""

from __future__ import annotations

from typing import Any


def plan_answer(**over: Any) -> dict[str, Any]:
    """A PlanDraft answer as a model would send it; valid unless changed."""
    draft: dict[str, Any] = {
        "task": "digits-cnn",
        "search_space": [
            {"name": "dropout", "low": 0.0, "high": 0.5},
            {"name": "learning_rate", "low": 1e-4, "high": 1e-2, "log": True},
        ],
        "samplers": ["tpe", "random"],
        "pruner": "median",
        "trials": 30,
        "seeds": 3,
    }
    return {**draft, **over}
