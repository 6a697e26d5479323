"""The analyst's rules on hand-made trial records: each finding, and the revision that follows from it."""

from agent.analyse import analyst
from experiments.records import Metric, SearchParam, StudyResult, TrialRecord

LR = SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-2, log=True)
LAYERS = SearchParam(name="layers", kind="int", low=1, high=3)
OPT = SearchParam(name="optimizer", kind="categorical", choices=["adam", "sgd"])


def study(trials, space=(LR,), importances=None) -> StudyResult:
    return StudyResult(
        study_name="s", storage="mem", task="t", sampler="tpe", pruner="median",
        metric=Metric(name="accuracy", direction="maximize"), search_space=list(space), trials=trials,
        importances=importances or {},
    )  # fmt: skip


def done(number, value, **params) -> TrialRecord:
    return TrialRecord(number=number, state="COMPLETE", value=value, params=params)


def test_best_on_the_high_edge_widens_the_range_upwards_only():
    trials = [
        done(0, 0.8, learning_rate=1e-3),
        done(1, 0.7, learning_rate=2e-4),
        done(2, 0.9, learning_rate=0.0099),
    ]
    findings = analyst.edge_findings(study(trials))
    assert [(f.kind, f.param, f.evidence["side"]) for f in findings] == [("edge", "learning_rate", "high")]
    revision = analyst.revise([LR], findings, "median", trials[2])
    widened = revision.search_space[0]
    assert widened.low == LR.low and widened.high == LR.high * analyst.WIDEN_LOG_FACTOR
    assert revision.warm_start[0] == {"learning_rate": 0.0099}


def test_best_inside_the_range_gives_no_edge_finding():
    trials = [
        done(i, v, learning_rate=lr) for i, (v, lr) in enumerate([(0.8, 1e-3), (0.7, 2e-4), (0.6, 5e-3)])
    ]
    assert analyst.edge_findings(study(trials)) == []


def test_dropout_never_widens_past_its_limit():
    dropout = SearchParam(name="dropout", kind="float", low=0.0, high=0.8)
    widened = analyst._widen(dropout, "high")
    assert widened.high == 0.9


def test_levels_barely_tried_are_found_and_enqueued_next_round():
    trials = [done(i, 0.5 + i / 100, layers=1, optimizer="adam") for i in range(7)] + [
        done(7, 0.4, layers=2, optimizer="adam")
    ]
    findings = analyst.under_explored_findings(study(trials, space=(LAYERS, OPT)))
    found = {(f.param, f.evidence["value"]) for f in findings}
    assert found == {("layers", 3), ("optimizer", "sgd")}
    revision = analyst.revise([LAYERS, OPT], findings, "median", trials[6])
    assert {"layers": 3, "optimizer": "adam"} in revision.warm_start


def test_pruned_trials_level_with_the_best_switch_pruning_off():
    best = TrialRecord(number=0, state="COMPLETE", value=0.9, intermediate={0: 0.5, 1: 0.7, 2: 0.9})
    slow = TrialRecord(number=1, state="PRUNED", intermediate={0: 0.4, 1: 0.72})
    weak = TrialRecord(number=2, state="PRUNED", intermediate={0: 0.2})
    findings = analyst.pruning_findings(study([best, slow, weak]))
    assert len(findings) == 1 and findings[0].evidence["trials"] == [1]
    assert analyst.revise([LR], findings, "median", best).pruner == "none"


def test_no_gain_within_the_noise_floor_and_a_real_gain_is_not_flagged():
    trials = [done(0, 0.81, learning_rate=1e-3)]
    assert analyst.gain_findings(study(trials), baseline_value=0.80, noise_floor=0.02)[0].kind == "no_gain"
    assert analyst.gain_findings(study(trials), baseline_value=0.70, noise_floor=0.02) == []


def test_identical_metrics_for_different_configurations_are_flagged():
    trials = [done(i, 0.5, learning_rate=lr) for i, lr in enumerate([1e-4, 1e-3, 5e-3])]
    assert [f.kind for f in analyst.identical_findings(study(trials))] == ["identical_metrics"]


def test_important_parameters_are_named_with_their_share():
    findings = analyst.importance_findings(study([], importances={"learning_rate": 0.7, "layers": 0.1}))
    assert [(f.param, f.evidence["importance"]) for f in findings] == [("learning_rate", 0.7)]


def test_tied_accuracy_with_different_losses_is_not_flagged_as_identical():
    trials = [
        TrialRecord(number=i, state="COMPLETE", value=0.75, params={"learning_rate": lr},
                    metrics={"accuracy": 0.75, "loss": loss})
        for i, (lr, loss) in enumerate([(1e-4, 0.61), (1e-3, 0.52), (5e-3, 0.48)])
    ]  # fmt: skip
    assert analyst.identical_findings(study(trials)) == []
