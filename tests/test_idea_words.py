"""The ideas' words that become code changes: label smoothing, a training-set size, GELU, early stopping, weight
decay; planned offline, valid under the plan rules, applicable to the task's script, and listed to an LLM."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from agent.code import coder
from agent.config import Settings
from agent.plan import planner
from agent.schemas import CodeChangeKind, ExperimentPlan
from experiments import registry

pytestmark = pytest.mark.usefixtures("no_provider_env")

USER_SCRIPT = """
import torch

# --- hyperparameters ---
learning_rate = 0.01
epochs = 3
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"learning_rate": learning_rate, "epochs": epochs, **(hparams or {})}
    x_train, y_train = torch.zeros(10, 2), torch.zeros(10)
    return {"accuracy": 0.5}
"""


def plan(idea: str, task: str | None = None) -> ExperimentPlan:
    return planner.make_plan(idea, Settings(), task=task)


def changes(p: ExperimentPlan) -> list[tuple[str, str, object]]:
    return [(c.kind, c.target, c.value) for c in p.code_changes]


def applies(p: ExperimentPlan) -> str:
    """The plan's structured changes applied to its task's script: what the coder will check and run."""
    spec = registry.get(p.task)
    return coder.apply_intents(
        spec.script.read_text(), p.code_changes, spec.script.name, spec.metric.direction
    )


def test_the_label_smoothing_idea_plans_the_change_and_a_cap_of_300_examples():
    p = plan("Tune label smoothing for a small CNN on handwritten digits with only 300 training images")
    assert changes(p) == [("add_label_smoothing", "label_smoothing", None)]
    assert p.conditions == {"max_train_examples": 300}
    assert [s.name for s in p.search_space] == ["label_smoothing", "learning_rate"]
    assert "label_smoothing = 0.0" in applies(p)


def test_gelu_instead_of_relu_compares_the_scripts_relu_with_gelu():
    p = plan("Does GELU instead of ReLU help the digits CNN?")
    assert changes(p) == [("change_activation", "activation", None)]
    assert [(a.name, a.role, a.fixed) for a in p.arms] == [
        ("relu", "control", {"activation": "relu"}),
        ("gelu", "treatment", {"activation": "gelu"}),
    ]
    assert p.not_done == []
    assert 'activation = "relu"' in applies(p)


def test_tuning_the_activation_searches_the_three_choices():
    p = plan("Tune the activation function of the tabular MLP")
    assert changes(p) == [("change_activation", "activation", None)]
    assert next(s for s in p.search_space if s.name == "activation").choices == ["relu", "gelu", "silu"]


def test_early_stopping_instead_of_pruning_searches_the_patience_without_a_pruner():
    p = plan("Early stopping instead of pruning slow learners on the digits CNN")
    assert changes(p) == [("early_stopping", "patience", None)]
    assert p.pruner == "none"
    patience = next(s for s in p.search_space if s.name == "patience")
    assert (patience.kind, patience.low, patience.high) == ("int", 1, 5)
    assert 'if hp["patience"] and stale_epochs >= hp["patience"]:' in applies(p)


def test_weight_decay_on_a_script_without_it_is_added_and_compared_from_off():
    p = plan("Does weight decay help the LSTM sentiment model?")
    assert changes(p) == [("add_weight_decay", "weight_decay", None)]
    assert [(a.name, a.fixed) for a in p.arms] == [
        ("no-weight-decay", {"weight_decay": 0.0}),
        ("weight-decay", {}),
    ]
    assert 'weight_decay=hp["weight_decay"]' in applies(p)


def test_a_training_size_on_a_script_without_a_cap_plans_the_cap_and_says_the_reference_is_uncapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "model.py"
    script.write_text(USER_SCRIPT)
    task = registry.from_script(script)
    monkeypatch.setitem(registry.TASKS, task.name, task)
    p = plan("Tune the learning rate of my model with only 300 training examples", task=task.name)
    assert changes(p) == [("limit_train_examples", "max_train_examples", 300)]
    assert p.conditions == {}
    assert [n.condition for n in p.not_done] == ["300 training examples for the defaults reference"]
    assert (
        "the defaults reference runs the unmodified script on its whole training split"
        in p.not_done[0].reason
    )


def test_the_llm_prompt_lists_every_code_change_kind():
    system = planner.plan_prompt("Does dropout help the digits CNN?", Settings(), None)[0].content
    rules = system[system.index("- code_changes") :]
    assert [kind for kind in get_args(CodeChangeKind) if kind not in rules] == []
    assert "early_stopping (patience" in rules and "limit_train_examples" in rules
