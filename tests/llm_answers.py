"""Answers a model would send, for the tests and the planning bench's smoke test to script fake servers with."""

from __future__ import annotations

from typing import Any


def plan_answer(**over: Any) -> dict[str, Any]:
    """A plan answer as a model would send it; valid unless changed."""
    draft: dict[str, Any] = {
        "title": "Dropout on the digits CNN",
        "objective": "Find whether dropout raises validation accuracy",
        "hypothesis": "Dropout between 0.1 and 0.5 beats no dropout",
        "task": "digits-cnn",
        "search_space": [
            {"name": "dropout", "kind": "float", "low": 0.0, "high": 0.5},
            {"name": "learning_rate", "kind": "float", "low": 1e-4, "high": 1e-2, "log": True},
        ],
        "samplers": ["tpe", "random"],
        "pruner": "median",
        "budget": {"trials": 30, "seeds": 3},
        "phases": [
            {"name": "explore", "description": "subset", "data_fraction": 0.25, "trials": 10},
            {"name": "optimise", "description": "full data", "trials": 20},
            {"name": "validate", "description": "held-out", "trials": 0},
        ],
    }
    return {**draft, **over}
