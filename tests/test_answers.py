"""Every part of the idea answered: head-to-head pairs, margins (non-inferiority, equivalence), secondary
objectives and the difference a run could have detected, judged from trial values read back from a real Optuna
storage (the records a run's report reads)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from scipy import stats as scipy_stats

from agent.analyse.comparisons import answer, answer_patch
from agent.results import ArmResult
from agent.schemas import Arm, Budget, ExperimentPlan, HeadToHead, Margin, SecondaryObjective
from experiments import storage as storages
from experiments.records import Compression, Metric, SearchParam, TrialRecord
from experiments.results import records

ACCURACY = Metric(name="accuracy", direction="maximize")
LOSS = Metric(name="loss", direction="minimize")
CONTROL = [0.900, 0.912, 0.895, 0.921, 0.905, 0.915]
JITTER = [
    0.002,
    -0.001,
    0.003,
    0.000,
    -0.002,
    0.001,
]  # the treatment's seed-to-seed wobble around the control


def _store(
    url: str, name: str, metric: Metric, values: list[float], **measured: list[float]
) -> list[TrialRecord]:
    """Final runs as the worker stores them (one trial per seed, held-out metrics and measurements in user
    attributes), read back through the same reader every report uses."""
    study = optuna.create_study(
        study_name=name, storage=storages.open_storage(url), direction=metric.direction
    )
    for seed, value in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                user_attrs={
                    "ticket": {"seed": seed, "hparams": {}, "holdout": True},
                    "metrics": {metric.name: value, f"test_{metric.name}": value},
                    "measured": {k: v[seed] for k, v in measured.items()},
                },
            )
        )
    return records(url, name)


def _plan(arms: list[Arm], metric: Metric = ACCURACY, **update) -> ExperimentPlan:
    return ExperimentPlan(
        title="t",
        idea="i",
        objective="o",
        hypothesis="h",
        task="tabular-mlp",
        search_space=[SearchParam(name="learning_rate", kind="float", low=1e-4, high=1e-2, log=True)],
        metric=metric,
        budget=Budget(trials=3, seeds=6, rounds=1),
        arms=arms,
        **update,
    )


TWO = [Arm(name="dense", role="control", label="dense"), Arm(name="pruned", role="treatment", label="pruned")]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return str(tmp_path / "study.journal")


def _judge(url: str, plan: ExperimentPlan, treated: list[float], tag: str):
    control = _store(url, f"{tag}-control", plan.metric, CONTROL)
    treatment = _store(url, f"{tag}-treatment", plan.metric, treated)
    results = [
        ArmResult(name="dense", role="control", final=control),
        ArmResult(name="pruned", role="treatment", final=treatment),
    ]
    (row,) = answer(plan, results, plan.metric)
    return row


def test_non_inferiority_within_half_a_point_flips_to_inferior_when_a_real_loss_is_planted(url: str):
    plan = _plan(TWO, margin=Margin(value=0.005, asked_by="within half a point"))
    kept = _judge(url, plan, [c + j for c, j in zip(CONTROL, JITTER, strict=True)], "kept")
    assert kept.margin.verdict == "non-inferior"
    assert kept.margin.low > -0.005 and kept.margin.stated
    assert "within a margin of 0.0050 (as the idea states): non-inferior" in kept.margin.statement
    # the same runs with a real loss of two points planted in every stored value
    lost = _judge(url, plan, [c + j - 0.02 for c, j in zip(CONTROL, JITTER, strict=True)], "lost")
    assert lost.margin.verdict == "inferior"
    assert lost.margin.high < -0.005
    assert lost.verdict == "worse"


def test_a_loss_metric_is_inferior_when_it_rises_beyond_the_margin(url: str):
    plan = _plan(TWO, LOSS, margin=Margin(value=0.005))
    lower = _judge(url, plan, [c + j - 0.02 for c, j in zip(CONTROL, JITTER, strict=True)], "lower")
    higher = _judge(url, plan, [c + j + 0.02 for c, j in zip(CONTROL, JITTER, strict=True)], "higher")
    assert (lower.margin.verdict, higher.margin.verdict) == ("non-inferior", "inferior")


def test_equivalence_needs_both_one_sided_tests(url: str):
    plan = _plan(TWO, margin=Margin(test="equivalence", value=0.005))
    same = _judge(url, plan, [c + j for c, j in zip(CONTROL, JITTER, strict=True)], "same")
    better = _judge(url, plan, [c + j + 0.02 for c, j in zip(CONTROL, JITTER, strict=True)], "better")
    assert same.margin.verdict == "equivalent"
    assert -0.005 < same.margin.low < same.margin.high < 0.005
    assert better.margin.verdict == "not equivalent"  # better by far more than the margin is not the same


def test_without_a_stated_number_the_noise_floor_is_the_margin_and_the_report_says_so(url: str):
    plan = _plan(TWO, margin=Margin(asked_by="without losing accuracy"))
    row = _judge(url, plan, [c + j for c, j in zip(CONTROL, JITTER, strict=True)], "floor")
    assert row.margin.margin == pytest.approx(row.comparison.noise_floor) and not row.margin.stated
    assert "the noise floor, the reference's std across seeds, as the default" in row.margin.statement


def test_two_treatments_are_compared_head_to_head_in_the_same_holm_family(url: str):
    arms = [
        Arm(name="plain", role="control", label="no regularization"),
        Arm(name="decay", role="treatment", label="weight decay"),
        Arm(name="dropout", role="treatment", label="dropout"),
    ]
    plan = _plan(arms, head_to_head=[HeadToHead(first="decay", second="dropout", asked_by="better than")])
    runs = {
        "plain": _store(url, "plain", ACCURACY, CONTROL),
        "decay": _store(url, "decay", ACCURACY, [c + 0.03 + j for c, j in zip(CONTROL, JITTER, strict=True)]),
        "dropout": _store(
            url, "dropout", ACCURACY, [c + 0.01 - j for c, j in zip(CONTROL, JITTER, strict=True)]
        ),
    }
    results = [ArmResult(name=a.name, role=a.role, final=runs[a.name]) for a in arms]
    rows = answer(plan, results, ACCURACY)
    assert [(r.treatment, r.control, r.kind) for r in rows] == [
        ("decay", "plain", "vs control"),
        ("dropout", "plain", "vs control"),
        ("decay", "dropout", "head-to-head"),
    ]
    head = rows[2]
    assert head.verdict == "better" and head.statement.startswith("weight decay is better than dropout")
    assert head.comparison.difference == pytest.approx(0.02 + 2 * sum(JITTER) / len(JITTER))
    raw = sorted(r.comparison.p_value for r in rows)
    assert min(r.p_adjusted for r in rows) == pytest.approx(3 * raw[0])  # Holm over all three pairs


def test_training_time_is_compared_with_an_interval_and_a_loaded_machine_says_so(url: str):
    plan = _plan(
        TWO, secondary=[SecondaryObjective(name="train_time_s"), SecondaryObjective(name="epochs_run")]
    )
    control = _store(
        url,
        "slow",
        ACCURACY,
        CONTROL,
        train_time_s=[10.2, 9.8, 10.5, 10.1, 9.9, 10.4],
        epochs_run=[10.0] * 6,
        load_1m=[0.5] * 6,
        cores=[2.0] * 6,
    )
    treatment = _store(
        url,
        "fast",
        ACCURACY,
        CONTROL,
        train_time_s=[4.1, 4.6, 3.9, 4.4, 4.0, 4.3],
        epochs_run=[4.0, 5.0, 3.0, 4.0, 4.0, 5.0],
        load_1m=[0.5] * 5 + [3.5],
        cores=[2.0] * 6,
    )
    results = [
        ArmResult(name="dense", role="control", final=control),
        ArmResult(name="pruned", role="treatment", final=treatment),
    ]
    (row,) = answer(plan, results, ACCURACY)
    time, epochs = row.secondary
    diffs = [
        t - c for t, c in zip([4.1, 4.6, 3.9, 4.4, 4.0, 4.3], [10.2, 9.8, 10.5, 10.1, 9.9, 10.4], strict=True)
    ]
    mean, sd = sum(diffs) / 6, scipy_stats.tstd(diffs)
    half = scipy_stats.t.ppf(0.975, 5) * sd / math.sqrt(6)
    assert (time.name, time.verdict) == ("train_time_s", "better")
    assert time.comparison.difference == pytest.approx(mean)
    assert (time.comparison.ci_low, time.comparison.ci_high) == pytest.approx((mean - half, mean + half))
    assert time.statement.startswith(f"pruned has less training time than dense: {mean:+.4f} s")
    assert "loaded machine (1-minute load average up to 3.5 on 2 cores)" in time.statement
    assert epochs.verdict == "better" and epochs.comparison.ci_low is not None and not epochs.loaded
    # the measurements are what the report reads: without them, nothing is claimed
    bare = [
        ArmResult(name=a.name, role=a.role, final=_store(url, f"bare-{a.name}", ACCURACY, CONTROL))
        for a in TWO
    ]
    (unmeasured,) = answer(plan, bare, ACCURACY)
    assert {s.verdict for s in unmeasured.secondary} == {"not measurable"}


def test_no_detectable_difference_states_the_smallest_difference_the_seeds_could_detect(url: str):
    plan = _plan(TWO)
    row = _judge(url, plan, [c + j for c, j in zip(CONTROL, JITTER, strict=True)], "mde")
    assert row.verdict == "no detectable difference"
    sd = scipy_stats.tstd(JITTER)
    power = (scipy_stats.t.ppf(0.975, 5) + scipy_stats.t.ppf(0.8, 5)) * sd / math.sqrt(6)
    smallest = max(power, row.comparison.noise_floor)
    assert (
        f"With 6 seeds this comparison could detect a difference of {smallest:.4f} held-out accuracy"
        in row.detectable
    )
    assert f"{power:.4f} at 80% power" in row.detectable
    worse = _judge(url, plan, [c + j - 0.05 for c, j in zip(CONTROL, JITTER, strict=True)], "mde-worse")
    assert worse.verdict == "worse" and worse.detectable == ""


def test_a_compressed_candidate_is_tested_against_its_own_uncompressed_model(url: str):
    plan = _plan(
        [],
        margin=Margin(value=0.005),
        secondary=[SecondaryObjective(name="size_bytes"), SecondaryObjective(name="train_time_s")],
        compression=Compression(kind="int8_dynamic"),
    )
    study = optuna.create_study(
        study_name="pruned-final", storage=storages.open_storage(url), direction="maximize"
    )
    for seed, (dense, loss) in enumerate(zip(CONTROL, (0.001, 0.002, 0.0, 0.001, 0.003, 0.002), strict=True)):
        study.add_trial(
            optuna.trial.create_trial(
                value=dense - loss,
                user_attrs={
                    "ticket": {"seed": seed, "hparams": {}},
                    "metrics": {
                        "test_accuracy": dense - loss,
                        "uncompressed_test_accuracy": dense,
                        "size_bytes": 6000.0,
                        "uncompressed_size_bytes": 18000.0,
                    },
                    "measured": {"size_bytes": 6000.0, "train_time_s": 2.0 + seed / 10},
                },
            )
        )
    final = records(url, "pruned-final")
    test, (size, time) = answer_patch(plan, final, final, ACCURACY)
    assert test.pair == "the compressed candidate vs the same model uncompressed"
    assert test.verdict == "non-inferior" and test.difference == pytest.approx(-0.0015)
    # the compression's saving is against the same model before it, exactly: the same bytes on every seed
    assert (size.pair, size.verdict, size.comparison.difference) == (
        "the compressed candidate vs the same model uncompressed",
        "better",
        -12000.0,
    )
    assert time.pair == "the candidate vs the defaults"  # the run's time has no uncompressed twin


def test_head_to_head_must_name_two_treatment_arms():
    with pytest.raises(
        ValueError, match="head_to_head: pruned vs dense must name two different treatment arms"
    ):
        _plan(TWO, head_to_head=[HeadToHead(first="pruned", second="dense")])
