"""What made the difference: leave-one-out of the candidate's changes, run for real and read back from storage."""

from pathlib import Path

from agent.analyse.ablation import MAX_VARIANTS, variants
from agent.config import Settings
from agent.loop import drive as loop
from agent.plan.rules import check_plan
from agent.report import render as reporting
from agent.schemas import Budget, ExperimentPlan
from experiments import registry
from experiments.records import SearchParam

# Only the learning rate moves the metric; `width` is searched but does nothing.
ONE_MATTERS = """
# --- hyperparameters ---
learning_rate = 0.01
width = 3
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    score = 0.5 + 2 * hparams["learning_rate"] + 0.001 * (seed % 3)
    metrics = {"accuracy": score}
    if holdout:
        metrics["test_accuracy"] = score - 0.01
    return metrics
"""


def test_variants_revert_one_difference_each_and_list_what_the_cap_leaves_out():
    candidate = {f"p{i}": i + 1 for i in range(MAX_VARIANTS + 2)} | {"same": 0}
    reference = dict.fromkeys(candidate, 0)
    chosen, skipped = variants(candidate, reference, first=["p7"])
    assert [k for k, _ in chosen][0] == "p7"  # what the arms compare is ablated first
    assert len(chosen) == MAX_VARIANTS and len(skipped) == 2
    assert all(
        params[k] == 0 and sum(v != 0 for v in params.values()) == len(candidate) - 2 for k, params in chosen
    )
    assert variants({"a": 1, "b": 0}, {"a": 0, "b": 0}, []) == ([], [])  # one change: nothing to attribute


def test_ablation_attributes_the_gain_to_the_one_change_that_matters(tmp_path: Path, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(ONE_MATTERS)
    settings = Settings(reports_dir=tmp_path / "reports")
    task = registry.from_script(script)
    monkeypatch.setitem(registry.TASKS, task.name, task)  # the loop registers it too; gone after the test
    plan = check_plan(
        ExperimentPlan(
            title="t",
            idea="does the learning rate or the width matter",
            objective="o",
            hypothesis="h",
            task=task.name,
            search_space=[
                SearchParam(name="learning_rate", kind="float", low=0.02, high=0.1),
                SearchParam(name="width", kind="int", low=5, high=9),
            ],
            metric=task.metric,
            samplers=["random"],
            pruner="none",
            budget=Budget(trials=3, seeds=3, rounds=1),
        ),
        settings,
        task.name,
    )
    folder = loop.start(loop.LoopOptions(idea=plan.idea, script=script), settings, ["test"])
    (folder / "plan.json").write_text(plan.model_dump_json())
    loop.drive(folder, settings, report=reporting.render)

    data = reporting.load_data(folder / reporting.DATA)
    assert data.repro.verified
    rows = {a.param: a for a in data.ablation}
    assert set(rows) == {"learning_rate", "width"}
    gain = 2 * (data.candidate.params["learning_rate"] - 0.01)
    assert abs(rows["learning_rate"].contribution.difference - gain) < 1e-9
    assert rows["width"].contribution.difference == 0.0
    assert (rows["learning_rate"].reference, rows["width"].reference) == (0.01, 3)
    text = (folder / reporting.MARKDOWN).read_text()
    assert "### What made the difference" in text
    assert f"| `learning_rate`: 0.01 → {data.candidate.params['learning_rate']:.4g}" in text
