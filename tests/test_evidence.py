"""The final patch carries a change only when the run's evidence supports it (agent.analyse.evidence)."""

from agent.analyse.comparisons import compare_arms
from agent.analyse.evidence import carried, patch_changes, rationale, released, tuned_under
from agent.results import Ablation, AblationRow, ArmResult, RunResult
from agent.schemas import Arm, Budget, CodeChangeIntent, ExperimentPlan
from experiments import stats
from experiments.records import Compression, Metric, SearchParam, TrialRecord

ACCURACY = Metric(name="accuracy", direction="maximize")
REFERENCE = {"learning_rate": 1e-3, "dropout": 0.0, "epochs": 10}
ARMS = [
    Arm(name="no-dropout", role="control", label="no dropout", fixed={"dropout": 0.0}),
    Arm(
        name="dropout",
        role="treatment",
        technique="dropout",
        search=[SearchParam(name="dropout", kind="float", low=0.05, high=0.5)],
    ),
]


def _plan(**update) -> ExperimentPlan:
    return ExperimentPlan(
        title="t",
        idea="Does dropout help?",
        objective="o",
        hypothesis="h",
        task="tabular-mlp",
        search_space=[SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-2, log=True)],
        metric=ACCURACY,
        budget=Budget(trials=3, seeds=5, rounds=1),
        arms=ARMS,
    ).model_copy(update=update)


def _runs(values: list[float], params: dict) -> list[TrialRecord]:
    return [
        TrialRecord(
            number=s,
            state="COMPLETE",
            seed=s,
            value=v,
            params=params,
            metrics={"accuracy": v, "test_accuracy": v},
        )
        for s, v in enumerate(values)
    ]


CANDIDATE = {"learning_rate": 0.016, "dropout": 0.46}
TREATED = [0.95, 0.96, 0.94, 0.955, 0.945]


def _result(control: list[float], without_lr: list[float], plan: ExperimentPlan | None = None) -> RunResult:
    """The dropout arm as candidate: its held-out runs, the control's at the same learning rate, and the
    ablation's variants (dropout reverted: the control's runs; the learning rate reverted: `without_lr`)."""
    plan = plan or _plan()
    final = _runs(TREATED, CANDIDATE)
    arms = [
        ArmResult(name="no-dropout", role="control", final=_runs(control, {**CANDIDATE, "dropout": 0.0})),
        ArmResult(name="dropout", role="treatment", final=final),
    ]
    rows = [
        AblationRow(param="dropout", reference=0.0, candidate=0.46, runs=arms[0].final),
        AblationRow(
            param="learning_rate",
            reference=1e-3,
            candidate=0.016,
            runs=_runs(without_lr, {**CANDIDATE, "learning_rate": 1e-3}),
        ),
    ]
    return RunResult(
        run_id="r",
        plan=plan,
        rounds=[],
        best=TrialRecord(number=3, state="COMPLETE", value=0.96, params=CANDIDATE),
        best_arm="dropout",
        final=final,
        comparison=stats.compare(final, rows[1].runs, ACCURACY),
        comparisons=compare_arms(plan.arms, arms, ACCURACY),
        ablation=Ablation(against="the patched script's defaults", rows=rows),
    )


def test_no_detectable_effect_of_dropout_leaves_dropout_out_and_keeps_a_credited_learning_rate():
    changes = {c.param: c for c in patch_changes(_result(TREATED, [0.80, 0.82, 0.79, 0.81, 0.80]), REFERENCE)}
    assert not changes["dropout"].carried
    assert "whose verdict against the control is no detectable difference" in changes["dropout"].reason
    assert changes["learning_rate"].carried and "the ablation credits it" in changes["learning_rate"].reason
    assert carried(list(changes.values())) == {"learning_rate": 0.016}


def test_a_treatment_judged_better_carries_its_defining_change():
    changes = patch_changes(
        _result([0.90, 0.905, 0.89, 0.9, 0.895], [0.80, 0.82, 0.79, 0.81, 0.80]), REFERENCE
    )
    assert carried(changes) == CANDIDATE


def test_a_learning_rate_the_ablation_does_not_credit_keeps_the_scripts_value():
    changes = {
        c.param: c for c in patch_changes(_result(TREATED, [0.951, 0.958, 0.942, 0.957, 0.944]), REFERENCE)
    }
    assert not changes["learning_rate"].carried
    assert "does not credit it" in changes["learning_rate"].reason
    assert carried(list(changes.values())) == {}
    lines = rationale(list(changes.values()), _plan())
    assert any(line.startswith("learning_rate = 0.016 left out, the script keeps 0.001") for line in lines)


def test_values_tuned_under_conditions_say_so_and_a_cap_the_patch_adds_is_released():
    plan = _plan(
        conditions={"max_train_examples": 300, "dataset": "wine"},
        compression=Compression(kind="int8_dynamic"),
        code_changes=[CodeChangeIntent(kind="limit_train_examples", target="train_cap", value=200)],
    )
    assert tuned_under(plan) == [
        "tuned on 300 training examples",
        "tuned on the wine data set",
        "tuned on 200 training examples",
        "tuned for the int8_dynamic-compressed model",
    ]
    assert released(plan) == {"train_cap": 0}
    assert "tuned on 300 training examples" in rationale([], plan)


def test_a_control_candidate_still_says_the_treatments_change_is_left_out():
    result = _result(TREATED, [0.80, 0.82, 0.79, 0.81, 0.80])
    control = {**CANDIDATE, "dropout": 0.0}
    arms = [
        ArmResult(
            name="no-dropout", role="control", best=TrialRecord(number=0, state="COMPLETE", params=control)
        ),
        ArmResult(name="dropout", role="treatment", best=result.best),
    ]
    as_control = result.model_copy(
        update={
            "best": arms[0].best,
            "best_arm": "no-dropout",
            "arms": arms,
            "ablation": None,
            "compared_at": {"learning_rate": 0.016},
        }
    )
    changes = {c.param: c for c in patch_changes(as_control, REFERENCE)}
    assert changes["learning_rate"].carried and "the only change" in changes["learning_rate"].reason
    dropout = changes["dropout"]
    assert not dropout.carried and dropout.candidate == 0.46 and dropout.reference == 0.0
    assert (
        dropout.reason == "defines arm dropout, whose verdict against the control is no detectable difference"
    )
