"""Controlled comparisons: arms tuned with equal budgets, compared on held-out seeds with Holm's correction."""

import json
from pathlib import Path

import pytest
from report_lint import lint

from agent.analyse.comparisons import compare_arms
from agent.config import Settings
from agent.loop import drive as loop
from agent.loop.arms import compared_finals
from agent.loop.budget import apply_overrides
from agent.plan.planner import make_plan, render_markdown
from agent.plan.rules import PlanInvalid, check_plan
from agent.report import render as reporting
from agent.results import ArmResult
from agent.schemas import Arm, Budget, ExperimentPlan, HeadToHead, Margin, SecondaryObjective
from experiments import registry
from experiments.records import Metric, SearchParam, TrialRecord
from experiments.stats import holm

ACCURACY = Metric(name="accuracy", direction="maximize")


def plan_for(idea: str):
    return make_plan(idea, Settings())


def arms_of(plan) -> dict[str, Arm]:
    return {a.name: a for a in plan.arms}


def test_label_smoothing_or_dropout_gives_control_and_one_arm_each_on_300_images():
    plan = plan_for(
        "Does label smoothing or dropout give more robustness for a small convolutional net on 8x8 digits "
        "when only 300 training images are available?"
    )
    arms = arms_of(plan)
    assert plan.task == "digits-cnn"
    assert [a.role for a in plan.arms] == ["control", "treatment", "treatment"]
    assert arms["control"].fixed == {"label_smoothing": 0.0, "dropout": 0.0}
    assert [p.name for p in arms["label-smoothing"].search] == ["label_smoothing"]
    assert arms["label-smoothing"].fixed == {"dropout": 0.0}
    assert [p.name for p in arms["dropout"].search] == ["dropout"]
    assert all(p.low > 0 for a in plan.arms for p in a.search)  # "with X" never includes "without X"
    assert plan.conditions == {"max_train_examples": 300}
    assert [c.kind for c in plan.code_changes] == ["add_label_smoothing"]
    assert "label_smoothing" not in {p.name for p in plan.search_space}
    assert [n.condition for n in plan.not_done] == ["robustness"]


def test_cosine_versus_constant_runs_on_the_wine_data_it_names():
    plan = plan_for("Cosine learning-rate decay versus a constant rate for an MLP on the wine data")
    assert plan.task == "tabular-mlp"
    assert plan.conditions == {"dataset": "wine"}
    assert plan.datasets == ["wine"]
    control, treatment = plan.arms
    assert (control.role, control.fixed) == ("control", {"lr_schedule": "constant"})
    assert (treatment.role, treatment.fixed) == ("treatment", {"lr_schedule": "cosine"})
    assert [(c.kind, c.target) for c in plan.code_changes] == [("change_schedule", "lr_schedule")]
    assert plan.not_done == []


def test_adam_or_sgd_keeps_the_scripts_own_optimizer_as_control():
    plan = plan_for("Compare Adam and SGD with momentum for the LSTM sentiment model")
    assert plan.task == "lstm-sentiment"
    control, treatment = plan.arms
    assert control.fixed == {"optimizer": "adam"}  # lstm_sentiment.py builds torch.optim.Adam
    assert treatment.fixed == {"optimizer": "sgd"}
    assert [c.kind for c in plan.code_changes] == ["change_optimizer"]
    assert "optimizer" not in {p.name for p in plan.search_space}
    assert plan.samplers == ["default"]


def test_does_dropout_help_gives_equal_budgets_per_arm_and_states_the_total_after_overrides():
    plan = plan_for("Does dropout help a small CNN on handwritten digits under a 12-trial budget?")
    control, treatment = plan.arms
    assert control.fixed == {"dropout": 0.0} and not control.search
    assert treatment.search[0].name == "dropout" and not treatment.fixed
    assert [p.name for p in plan.search_space] == ["learning_rate"]
    assert plan.budget.trials == 12
    assert "- Trials: 12 per arm (24 tuning trials in all)" in render_markdown(plan)
    # `--trials 5` on the command line: the plan as run, and its report, say 5 (a note written at planning
    # time would still say 12)
    overridden = apply_overrides(plan, loop.LoopOptions(idea=plan.idea, trials=5), Settings())
    text = render_markdown(overridden)
    assert "- Trials: 5 per arm (10 tuning trials in all)" in text and "12" not in text.split("## Budget")[1]


def test_an_idea_without_a_comparison_keeps_one_tuned_arm():
    plan = plan_for("Low-resource Bayesian hyperparameter optimization for image classification")
    assert plan.arms == []
    assert [a.name for a in plan.arm_list()] == ["tuned"]


def test_a_data_set_the_task_cannot_load_is_listed_as_not_done():
    plan = plan_for("Does dropout help an MLP on the MNIST data?")
    assert any(n.condition == "data set MNIST" for n in plan.not_done)
    assert "MNIST" not in " ".join(plan.datasets)


def _plan(**update) -> ExperimentPlan:
    base = ExperimentPlan(
        title="t",
        idea="i",
        objective="o",
        hypothesis="h",
        task="tabular-mlp",
        search_space=[SearchParam(name="learning_rate", kind="float", low=3e-4, high=6e-4, log=True)],
        metric=ACCURACY,
        samplers=["random"],
        pruner="none",
        budget=Budget(trials=3, seeds=5, rounds=1, workers=3),
    )
    return base.model_copy(update=update)


def test_arms_must_set_the_scripts_hyperparameters():
    plan = _plan(
        arms=[
            Arm(name="a", role="control", fixed={"epochs": 10}),
            Arm(name="b", role="treatment", fixed={"no_such_knob": 1}),
        ]
    )
    with pytest.raises(PlanInvalid, match="no_such_knob"):
        check_plan(plan, Settings())


def test_a_comparison_needs_exactly_one_control():
    with pytest.raises(ValueError, match="exactly one control"):
        ExperimentPlan.model_validate(
            {
                **_plan().model_dump(),
                "arms": [{"name": "a", "role": "treatment"}, {"name": "b", "role": "treatment"}],
            }
        )


def _runs(values: list[float]) -> list[TrialRecord]:
    return [
        TrialRecord(number=s, state="COMPLETE", seed=s, value=v, metrics={"accuracy": v, "test_accuracy": v})
        for s, v in enumerate(values)
    ]


def test_holm_turns_two_borderline_wins_into_no_detectable_difference():
    # Differences (treatment - control) per seed: a = [+.01, +.03, +.02, +.04] has mean .025, sd .0129,
    # t = .025 / (.0129 / 2) = 3.873 on 3 df: p = 0.0305. b = [+.02, +.01, +.04, +.01]: mean .02,
    # sd .01414, t = 2.828: p = 0.0663... so b alone is not significant; c = [+.01, +.03, +.02, +.035]:
    # mean .02375, sd .01109, t = 4.28, p = 0.0235. Holm over (a, c): sorted .0235 * 2 = .047, then
    # max(.047, .0305 * 1) = .047: both stay below .05. Over (a, b): .0305 * 2 = .061 > .05: a flips.
    control = _runs([0.80, 0.80, 0.80, 0.80])
    a = _runs([0.81, 0.83, 0.82, 0.84])
    b = _runs([0.82, 0.81, 0.84, 0.81])
    arms = [Arm(name="c", role="control"), Arm(name="a", role="treatment"), Arm(name="b", role="treatment")]
    results = [
        ArmResult(name=n, role=r, final=f)
        for n, r, f in (("c", "control", control), ("a", "treatment", a), ("b", "treatment", b))
    ]

    alone = compare_arms(arms[:2], results[:2], ACCURACY)
    assert alone[0].comparison.p_value == pytest.approx(0.0305, abs=5e-4)
    assert alone[0].verdict == "better"

    both = compare_arms(arms, results, ACCURACY)
    assert both[0].p_adjusted == pytest.approx(2 * 0.0305, abs=1e-3)
    assert [c.verdict for c in both] == ["no detectable difference", "no detectable difference"]
    assert holm([0.0305, 0.0663]) == pytest.approx([0.061, 0.0663], abs=1e-3)


def test_arms_whose_seeds_all_repeat_one_run_are_not_measurable_never_better():
    # six agreeing seeds pass the sign test (p = 2 ** -5) over a noise floor of 0: the same run six times
    arms = [Arm(name="c", role="control"), Arm(name="t", role="treatment")]
    results = [
        ArmResult(name="c", role="control", final=_runs([0.8] * 6)),
        ArmResult(name="t", role="treatment", final=_runs([0.9] * 6)),
    ]
    (judged,) = compare_arms(arms, results, ACCURACY)
    assert judged.comparison.p_value < 0.05 and judged.verdict == "not measurable"
    assert "the seed does not reach the script" in judged.statement


def test_holm_keeps_order_and_skips_missing_tests():
    assert holm([0.01, None, 0.04, 0.03]) == [0.03, None, 0.06, 0.06]


@pytest.fixture(scope="module")
def three_arm_run(tmp_path_factory) -> Path:
    """A real small run on tabular-mlp: the control, an arm identical to it, and an arm cut to one epoch, the
    two treatments also head-to-head, with training time and epochs run as secondary objectives and the noise
    floor as the non-inferiority margin."""
    tmp = tmp_path_factory.mktemp("arms")
    settings = Settings(reports_dir=tmp / "reports")
    task = registry.get("tabular-mlp")
    plan = check_plan(
        _plan(
            arms=[
                Arm(name="ten-epochs", role="control", label="10 epochs", fixed={"epochs": 10}),
                Arm(name="same", role="treatment", label="10 epochs again", fixed={"epochs": 10}),
                Arm(
                    name="one-epoch",
                    role="treatment",
                    label="1 epoch",
                    technique="1 epoch",
                    fixed={"epochs": 1},
                ),
            ],
            secondary=[SecondaryObjective(name="train_time_s"), SecondaryObjective(name="epochs_run")],
            margin=Margin(asked_by="without losing accuracy"),
            head_to_head=[HeadToHead(first="same", second="one-epoch")],
        ),
        settings,
        task.name,
    )
    folder = loop.start(loop.LoopOptions(idea="epochs", task=task.name), settings, ["test"])
    (folder / "plan.json").write_text(plan.model_dump_json())
    loop.drive(folder, settings, report=reporting.render)
    return folder


def test_arms_get_equal_trials_and_the_same_seeds(three_arm_run: Path):
    result = json.loads((three_arm_run / "results.json").read_text())
    assert {a["name"]: a["trials"] for a in result["arms"]} == {"ten-epochs": 3, "same": 3, "one-epoch": 3}
    for arm in result["arms"]:
        assert sorted(r["seed"] for r in arm["final"]) == [0, 1, 2, 3, 4]
        assert arm["best"]["params"]["epochs"] == {"ten-epochs": 10, "same": 10, "one-epoch": 1}[arm["name"]]


def test_an_arm_identical_to_its_control_shows_no_detectable_difference(three_arm_run: Path):
    data = reporting.load_data(three_arm_run / reporting.DATA)
    same = next(c for c in data.comparisons if c.treatment == "same")
    assert same.verdict == "no detectable difference"
    assert same.comparison.difference == 0.0


def test_cutting_epochs_to_one_is_judged_worse_and_the_report_says_so_first(three_arm_run: Path):
    data = reporting.load_data(three_arm_run / reporting.DATA)
    cut = next(c for c in data.comparisons if c.treatment == "one-epoch")
    assert cut.verdict == "worse"
    assert cut.p_adjusted is not None and cut.p_adjusted < 0.05
    assert cut.comparison.difference < 0
    lines = (three_arm_run / reporting.MARKDOWN).read_text().splitlines()
    assert lines[2].startswith("**Answer.** ")
    assert "1 epoch hurts" in lines[2]
    assert "No detectable difference between 10 epochs again and 10 epochs" in lines[2]
    assert "![Held-out accuracy per arm and seed](arms.png)" in "\n".join(lines)
    assert (three_arm_run / "arms.png").stat().st_size > 0
    stored = json.loads((three_arm_run / reporting.DATA).read_text())
    assert {a["name"] for a in stored["arms"]} == {"ten-epochs", "same", "one-epoch"}
    assert {c["treatment"] for c in stored["comparisons"]} == {"same", "one-epoch"}


def test_the_report_answers_head_to_head_the_margin_and_the_measured_time_and_epochs(three_arm_run: Path):
    data = reporting.load_data(three_arm_run / reporting.DATA)
    rows = {(c.treatment, c.control): c for c in data.comparisons}
    head = rows["same", "one-epoch"]
    assert head.kind == "head-to-head" and head.verdict == "better"
    assert head.statement.startswith("10 epochs again is better than 1 epoch")
    cut = rows["one-epoch", "ten-epochs"]
    assert cut.margin.verdict == "inferior" and not cut.margin.stated
    assert head.margin is None  # a margin is against the control
    epochs = next(s for s in cut.secondary if s.name == "epochs_run")
    assert (epochs.comparison.difference, epochs.verdict) == (
        -9.0,
        "better",
    )  # 1 epoch run against 10, exactly
    time = next(s for s in cut.secondary if s.name == "train_time_s")
    # wall time is compared with an interval; its sign is not asserted: on a loaded machine 1 epoch has timed
    # slower than 10 (seen in the suite at load 5), which is what the loaded-machine note is for
    assert time.comparison.ci_low is not None and time.comparison.ci_high is not None
    result = json.loads((three_arm_run / "results.json").read_text())
    stored = {
        r["seed"]: r["measured"] for a in result["arms"] if a["name"] == "one-epoch" for r in a["final"]
    }
    assert time.comparison.candidate_mean == pytest.approx(
        sum(m["train_time_s"] for m in stored.values()) / 5
    )
    assert all(
        m["epochs_run"] == 1.0 and m["size_bytes"] > 0 and m["latency_ms"] > 0 for m in stored.values()
    )
    same = rows["same", "ten-epochs"]
    assert same.verdict == "no detectable difference" and same.detectable.startswith("With 5 seeds")
    text = (three_arm_run / reporting.MARKDOWN).read_text()
    assert "| same | one-epoch (head-to-head) |" in text
    assert f"*same vs ten-epochs, no detectable difference:* {same.detectable}" in text
    assert "### Within the margin" in text and "### Secondary objectives" in text
    assert "| `epochs_run` | 1 epoch vs 10 epochs |" in text
    answer = text.splitlines()[2]
    assert (
        "training time between 1 epoch and 10 epochs" in answer or "1 epoch has less training time" in answer
    )
    assert "1 epoch has fewer epochs run than 10 epochs: -9.0000" in answer


@pytest.mark.parametrize(("field", "key"), [("metrics", "test_accuracy"), ("measured", "train_time_s")])
def test_a_report_refuses_arm_runs_that_are_not_in_storage(
    three_arm_run: Path, tmp_path: Path, field: str, key: str
):
    import shutil

    from agent.report.checks import ReportError
    from agent.report.data import collect

    copy = tmp_path / three_arm_run.name
    shutil.copytree(three_arm_run, copy)
    result = json.loads((copy / "results.json").read_text())
    arm = next(a for a in result["arms"] if a["name"] == "one-epoch")
    arm["final"][0][field][key] = 0.999
    (copy / "results.json").write_text(json.dumps(result))
    with pytest.raises(ReportError, match="arm one-epoch final"):
        collect(copy, Settings(reports_dir=tmp_path))


def test_arms_with_a_worker_each_tune_at_the_same_time(three_arm_run: Path):
    import optuna

    from experiments import storage as storages

    storage = storages.open_storage(str(three_arm_run / storages.JOURNAL_FILE))
    windows = []
    for name in storages.study_names(storage):
        if "-r1-" in name:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
            windows.append((min(t.datetime_start for t in trials), max(t.datetime_complete for t in trials)))
    assert len(windows) == 3
    assert max(start for start, _ in windows) < min(end for _, end in windows), (
        "the arms ran one after another"
    )


def test_a_comparison_warns_when_the_arms_searches_settled_on_different_shared_values():
    arms = [
        Arm(name="c", role="control", fixed={"dropout": 0.0}),
        Arm(name="t", role="treatment", technique="x"),
    ]

    def result(name, role, lr, dropout):
        best = TrialRecord(
            number=0, state="COMPLETE", value=0.9, params={"learning_rate": lr, "dropout": dropout}
        )
        return ArmResult(name=name, role=role, best=best, final=_runs([0.8, 0.81, 0.8]))

    close = compare_arms(
        arms, [result("c", "control", 1.7e-3, 0.0), result("t", "treatment", 1.65e-3, 0.3)], ACCURACY
    )
    far = compare_arms(
        arms, [result("c", "control", 1.7e-3, 0.0), result("t", "treatment", 1.2e-3, 0.3)], ACCURACY
    )
    assert "caution" not in close[0].statement  # dropout sets the arms apart; it is not a shared value
    assert "different shared values (learning_rate 0.0017 vs 0.0012)" in far[0].statement


def test_every_arm_is_re_run_at_the_same_shared_values_from_its_matched_trials(three_arm_run: Path):
    result = json.loads((three_arm_run / "results.json").read_text())
    lr = result["compared_at"]["learning_rate"]
    assert {r["params"]["learning_rate"] for a in result["arms"] for r in a["final"]} == {lr}
    searched = [r for r in result["rounds"] if r["phase"] != "matched"]
    matched = [r for r in result["rounds"] if r["phase"] == "matched"]
    assert len(matched) == 1 and matched[0]["round"] == len(searched) + 1
    bests = {
        s["arm"]: max((t for t in s["trials"] if t["value"] is not None), key=lambda t: t["value"])
        for r in searched
        for s in r["studies"]
    }
    assert lr in {b["params"]["learning_rate"] for b in bests.values()}, "compared at some arm's best"
    for study in matched[0]["studies"]:
        others = {b["params"]["learning_rate"] for arm, b in bests.items() if arm != study["arm"]}
        assert {t["params"]["learning_rate"] for t in study["trials"]} <= others
    report = (three_arm_run / reporting.MARKDOWN).read_text()
    assert "Every arm re-run at the same shared values (learning_rate = " in report


def test_a_report_refuses_arms_said_to_be_compared_at_values_they_did_not_run(
    three_arm_run: Path, tmp_path: Path
):
    import shutil

    from agent.report.checks import ReportError
    from agent.report.data import collect

    copy = tmp_path / three_arm_run.name
    shutil.copytree(three_arm_run, copy)
    result = json.loads((copy / "results.json").read_text())
    result["compared_at"]["learning_rate"] *= 1.5
    (copy / "results.json").write_text(json.dumps(result))
    with pytest.raises(ReportError, match="compared at the same learning_rate"):
        collect(copy, Settings(reports_dir=tmp_path))


def _finalist(lr: float, values: list[float]) -> list[TrialRecord]:
    return [
        TrialRecord(number=0, state="COMPLETE", value=v, params={"learning_rate": lr}, seed=s)
        for s, v in enumerate(values)
    ]


def test_arms_are_compared_at_the_shared_values_best_on_validation_over_both():
    plan = _plan(
        arms=[
            Arm(name="a", role="control", fixed={"epochs": 10}),
            Arm(name="b", role="treatment", fixed={"epochs": 5}),
        ]
    )
    task = registry.get("tabular-mlp")
    # a is best at its own 0.1 (0.90 vs 0.89) but b loses much more there (0.70 vs 0.88): 0.2 wins on average
    finals = {
        "a": [_finalist(0.1, [0.90, 0.90]), _finalist(0.2, [0.89, 0.89])],
        "b": [_finalist(0.2, [0.88, 0.88]), _finalist(0.1, [0.70, 0.70])],
    }
    chosen, at = compared_finals(plan, task, finals)
    assert at == {"learning_rate": 0.2}
    assert [r.params["learning_rate"] for f in chosen.values() for r in f] == [0.2] * 4
    # no shared values that every arm ran (a matched trial failed): each arm at its own best, and nothing claimed
    chosen, at = compared_finals(plan, task, {"a": finals["a"][:1], "b": finals["b"][:1]})
    assert at == {}
    assert {n: f[0].params["learning_rate"] for n, f in chosen.items()} == {"a": 0.1, "b": 0.2}


def test_a_run_whose_treatments_are_not_better_patches_the_control_and_approve_checks_it(three_arm_run: Path):
    from agent.code import coder
    from agent.review.measured import measured_patch
    from experiments import seal as seals
    from experiments import storage as storages

    result = json.loads((three_arm_run / "results.json").read_text())
    assert result["best_arm"] == "ten-epochs", (
        "no treatment was better, so the patch's candidate is the control"
    )
    record = coder.load_record(three_arm_run)
    assert set(record.final_params) <= {"learning_rate"}
    url = str(three_arm_run / storages.JOURNAL_FILE)
    assert seals.read(url, three_arm_run.name).params == record.final_params
    assert bool(measured_patch(three_arm_run, record, url).diff) == bool(record.final_params)
    report = (three_arm_run / reporting.MARKDOWN).read_text()
    assert report.count("**The patch carries** ") == 2, "in the first screen and in the Conclusion"


def test_the_report_offers_each_other_arms_variant_and_approve_checks_it(three_arm_run: Path):
    from agent.code import coder
    from agent.review.measured import measured_patch
    from experiments import storage as storages

    result = json.loads((three_arm_run / "results.json").read_text())
    assert result["arm_variants"] == {"one-epoch": {"epochs": 1}}, "the others run at the script's own epochs"
    record = coder.load_record(three_arm_run)
    variant = measured_patch(
        three_arm_run, record, str(three_arm_run / storages.JOURNAL_FILE), arm="one-epoch"
    )
    assert variant.checks_passed and "+epochs = 1" in variant.diff
    report = (three_arm_run / reporting.MARKDOWN).read_text()
    assert f"`research-loop approve {three_arm_run.name} --arm one-epoch`" in report


def test_the_three_arm_report_states_only_what_the_run_stored(three_arm_run: Path):
    assert lint(three_arm_run) == []
