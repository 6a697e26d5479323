"""Every part of the idea answered: the coverage check, level arms, second objectives, margins, head-to-head
pairs and paraphrases, planned offline and through a model, as `research-loop plan` makes them."""

from __future__ import annotations

from typing import Any

import pytest
from fake_openai import FakeOpenAI, tool
from llm_answers import plan_answer

from agent.config import Settings
from agent.plan import coverage, planner
from agent.schemas import ExperimentPlan
from experiments import registry

pytestmark = pytest.mark.usefixtures("no_provider_env")


def offline(idea: str) -> ExperimentPlan:
    return planner.make_plan(idea, Settings())


def arms(plan: ExperimentPlan) -> list[tuple[str, str, dict[str, Any]]]:
    return [(a.name, a.role, a.fixed) for a in plan.arms]


def what(plan: ExperimentPlan) -> tuple[object, ...]:
    """What a plan does: its task, arms, shared search, conditions, code changes and compression."""
    return (
        plan.task,
        [(a.role, a.fixed, [(p.name, p.low, p.high) for p in a.search]) for a in plan.arms],
        [p.name for p in plan.search_space],
        plan.conditions,
        [(c.kind, c.target) for c in plan.code_changes],
        plan.compression,
    )


def test_32_versus_128_gives_one_arm_per_level_with_the_current_value_as_control():
    plan = offline("Is a hidden size of 32 versus 128 better for the tabular MLP?")
    assert arms(plan) == [
        ("hidden-size-32", "control", {"hidden_size": 32}),
        ("hidden-size-128", "treatment", {"hidden_size": 128}),
    ]
    assert [p.name for p in plan.search_space] == ["learning_rate"]  # tuned alike in both arms
    numbers = {c.text: c.honoured_by for c in plan.coverage if c.kind == "number"}
    assert numbers == {"32": "arms[hidden-size-32]", "128": "arms[hidden-size-128]"}


@pytest.mark.parametrize(
    ("idea", "expected"),
    [
        (
            "2 vs 4 layers for the LSTM sentiment model",
            [("layers-2", {"layers": 2}), ("layers-4", {"layers": 4})],
        ),
        (
            "Learning rate 1e-3 vs 1e-2 for the digits CNN",
            [
                ("learning-rate-0-001", {"learning_rate": 0.001}),
                ("learning-rate-0-01", {"learning_rate": 0.01}),
            ],
        ),
    ],
)
def test_levels_named_with_their_setting_become_fixed_arms(idea, expected):
    plan = offline(idea)
    assert [(a.name, a.fixed) for a in plan.arms] == expected
    assert plan.arms[0].role == "control" and plan.not_done == []


def test_a_single_value_the_idea_names_is_a_condition_every_arm_shares():
    plan = offline("Train the tabular MLP with 2 layers for 5 epochs: does dropout help?")
    assert plan.conditions == {"layers": 2, "epochs": 5}
    assert [a.role for a in plan.arms] == ["control", "treatment"]


def test_a_planted_unknown_clause_becomes_not_understood_on_the_first_screen():
    plan = offline("Does dropout help the digits CNN? Also check that it survives rotated inputs.")
    [entry] = plan.not_done
    assert entry.condition == "not understood: 'Also check that it survives rotated inputs'"
    assert arms(plan)[0] == ("no-dropout", "control", {"dropout": 0.0})
    text = planner.render_markdown(plan)
    assert text.index("not understood") < text.index("## Objective")
    assert "| Also check that it survives rotated inputs | clause | Not done: no rule reads" in text


def test_every_number_is_accounted_for_and_an_unread_one_is_listed():
    plan = offline("Does dropout help the digits CNN at 37 degrees with 5 seeds and 12 trials?")
    numbers = {c.text: c.honoured_by or c.not_done for c in plan.coverage if c.kind == "number"}
    assert numbers["5 seeds"] == "budget.seeds" and numbers["12 trials"] == "budget.trials"
    assert numbers["37 degrees"].startswith("no rule reads")
    assert [n.condition for n in plan.not_done] == ["not understood: '37 degrees'"]
    assert coverage.dropped(plan) == 0


@pytest.mark.parametrize(
    ("paraphrase", "keyword"),
    [
        ("Does smoothing the labels help the digits CNN?", "Does label smoothing help the digits CNN?"),
        ("¿Ayuda el suavizado de etiquetas al CNN de dígitos?", "Does label smoothing help the digits CNN?"),
        (
            "Would a smaller learning rate help the tabular MLP?",
            "Does a lower learning rate help the tabular MLP?",
        ),
        (
            "Un taux d'apprentissage plus faible aide-t-il le MLP tabulaire ?",
            "Does a lower learning rate help the tabular MLP?",
        ),
        (
            "Hilft eine niedrigere Lernrate dem tabellarischen MLP?",
            "Does a lower learning rate help the tabular MLP?",
        ),
        (
            "Prune a third of the weights of the digits CNN",
            "Magnitude pruning of the digits CNN at 33% sparsity",
        ),
        ("Sparsify the digits CNN to 50%", "Magnitude pruning of the digits CNN at 50% sparsity"),
        ("Does stopping early help the tabular MLP?", "Does early stopping help the tabular MLP?"),
    ],
)
def test_a_paraphrase_reaches_the_same_plan_as_the_keyword(paraphrase, keyword):
    assert what(offline(paraphrase)) == what(offline(keyword))


def test_a_lower_learning_rate_compares_the_current_rate_with_the_range_below_it():
    plan = offline("Does a lower learning rate help the tabular MLP?")
    control, lower = plan.arms
    assert control.fixed == {"learning_rate": 0.001}
    [param] = lower.search
    assert param.name == "learning_rate" and param.high < 0.001 and param.log


def test_two_treatments_against_each_other_are_compared_head_to_head():
    plan = offline("Is weight decay better than dropout for the tabular MLP?")
    assert [a.name for a in plan.arms] == ["control", "weight-decay", "dropout"]
    assert [(h.first, h.second) for h in plan.head_to_head] == [("weight-decay", "dropout")]
    part = next(c for c in plan.coverage if c.text == "weight decay better than dropout")
    assert part.honoured_by == "head_to_head"


@pytest.mark.parametrize(
    ("idea", "test", "value"),
    [
        ("Quantize the digits CNN and stay within half a point of its accuracy", "non_inferiority", 0.005),
        (
            "Prune a third of the weights of the tabular MLP; accuracy must stay within 1 point",
            "non_inferiority",
            0.01,
        ),
        ("Does int8 quantization of the digits CNN keep accuracy?", "non_inferiority", None),
        ("Is AdamW the same as Adam for the LSTM sentiment model?", "equivalence", None),
    ],
)
def test_a_margin_the_idea_states_is_the_plans_margin(idea, test, value):
    plan = offline(idea)
    assert plan.margin is not None and (plan.margin.test, plan.margin.value) == (test, value)
    assert any(c.honoured_by == "margin" for c in plan.coverage)


def test_early_stopping_that_cuts_training_time_measures_time_and_epochs_and_tests_accuracy():
    plan = offline("Does early stopping cut training time without hurting accuracy on the digits CNN?")
    assert [s.name for s in plan.secondary] == ["train_time_s", "epochs_run"]
    assert plan.margin is not None and plan.margin.value is None
    assert [a.name for a in plan.arms] == ["no-early-stopping", "early-stopping"]
    assert not any(p.name == "epochs" for p in plan.search_space)  # "training time" is the objective


def test_a_model_that_drops_a_part_has_it_listed_and_carries_the_new_fields():
    idea = "Is weight decay better than dropout for the digits CNN, within 1 point and faster?"
    answer = plan_answer(
        search_space=[{"name": "learning_rate", "low": 1e-4, "high": 1e-2, "log": True}],
        arms=[
            {"name": "control", "role": "control", "fixed": {"weight_decay": 0.0, "dropout": 0.0}},
            {
                "name": "wd",
                "role": "treatment",
                "fixed": {"dropout": 0.0},
                "search": [{"name": "weight_decay"}],
            },
            {
                "name": "dropout",
                "role": "treatment",
                "fixed": {"weight_decay": 0.0},
                "search": [{"name": "dropout"}],
            },
        ],
        secondary=["train_time_s", "cpu_watts"],
        head_to_head=[["wd", "dropout"]],
    )
    with FakeOpenAI([tool(answer), tool(answer)]) as server:  # sent back once, the same answer again
        plan = planner.make_plan(idea, Settings(llm="openai-compatible:fake", base_url=server.base_url))
    assert "coverage: the idea asks for 'within 1 point'" in server.requests[1]["messages"][-1]["content"]
    assert [s.name for s in plan.secondary] == ["train_time_s"]
    assert [(h.first, h.second) for h in plan.head_to_head] == [("wd", "dropout")]
    assert plan.margin is None  # the model dropped the margin: the check lists it
    assert "not honoured: 'within 1 point'" in [n.condition for n in plan.not_done]
    assert coverage.tally(plan).caught >= 1 and coverage.dropped(plan) == 0


def test_a_hyperparameter_named_as_the_script_spells_it_is_searched_not_dropped(tmp_path, monkeypatch):
    script = tmp_path / "gamma_script.py"
    script.write_text(
        "# --- hyperparameters ---\nlearning_rate = 0.01\nweight_decay = 0.0\ndropout = 0.1\nbatch_size = 32\n"
        "epochs = 3\nhidden_size = 64\ngamma = 0.9\n# --- end hyperparameters ---\n\n\n"
        "def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device='auto'):\n"
        "    return {'accuracy': 0.5}\n"
    )
    task = registry.from_script(script)
    monkeypatch.setitem(registry.TASKS, task.name, task)
    plan = planner.make_plan("Tune gamma for my model", Settings(), task=task.name)
    assert "gamma" in [p.name for p in plan.search_space]
    assert [(c.text, c.honoured_by) for c in plan.coverage] == [("gamma", "search_space[gamma]")]
