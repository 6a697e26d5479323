"""`--seeds auto`: seeds added two at a time until the answer is clear, with the looks paid for in alpha."""

import pytest
from test_loop import FLAT, RISING, start_and_drive, write_script

from agent.analyse.verdict import verdict
from agent.loop import drive as loop
from agent.loop.sequential import look_sizes
from agent.report import render as reporting
from experiments import stats
from experiments.records import Metric, TrialRecord


def test_looks_start_at_the_plans_seeds_and_end_at_the_cap():
    assert look_sizes(3, 10) == [3, 5, 7, 9, 10]
    assert look_sizes(4, 10) == [4, 6, 8, 10]
    assert look_sizes(5, 5) == [5]


def test_a_clear_gain_stops_at_the_first_look(tmp_path):
    # the gain varies a little with the seed: a gain exactly the same on every seed gives no interval
    gain = RISING.format(sleep=0).replace("0.001 * (seed % 3)", "0.001 * (seed % 3) + 1e-5 * seed * lr")
    script = write_script(tmp_path, gain)
    options = loop.LoopOptions(
        idea="Random search of the learning rate for my training script", script=script,
        trials=4, rounds=1, seeds=2, workers=1, seeds_auto=True, max_seeds=6,
    )  # fmt: skip
    folder, result = start_and_drive(tmp_path, options)
    assert (result.seeds_used, result.looks) == (2, 3)
    assert result.stopping.startswith("stopped at 2 seeds (look 1 of 3)")
    assert len(result.baseline) == 2 and result.comparison.looks == 3
    data = reporting.load_data(folder / reporting.DATA)
    assert data.seeds_used == 2 and "look 1 of 3" in data.stopping


# the learning rate does nothing, the seed does: every seed differs, and paired by seed the arms agree
SEEDED_FLAT = FLAT.replace("0.5", "(0.5 + 0.001 * seed)")


def test_no_difference_runs_to_the_cap_and_says_so(tmp_path):
    script = write_script(tmp_path, SEEDED_FLAT)
    options = loop.LoopOptions(
        idea="Random search of the learning rate for my training script", script=script,
        trials=3, rounds=1, seeds=2, workers=1, seeds_auto=True, max_seeds=4,
    )  # fmt: skip
    folder, result = start_and_drive(tmp_path, options)
    assert (result.seeds_used, result.looks) == (4, 2)
    assert sorted(r.seed for r in result.baseline) == [0, 1, 2, 3]
    assert sorted(r.seed for r in result.final) == [0, 1, 2, 3]
    assert "cap of 4 seeds was reached" in result.stopping
    text = (folder / reporting.MARKDOWN).read_text()
    assert "tested at 0.05 / 2" in text and "97.5% level" in text


def test_seeds_that_all_give_the_same_result_stop_at_the_first_look_as_not_measurable(tmp_path):
    script = write_script(tmp_path, RISING.format(sleep=0).replace(" + 0.001 * (seed % 3)", ""))
    options = loop.LoopOptions(
        idea="Random search of the learning rate for my training script", script=script,
        trials=4, rounds=1, seeds=2, workers=1, seeds_auto=True, max_seeds=6,
    )  # fmt: skip
    folder, result = start_and_drive(tmp_path, options)
    assert result.seeds_used == 2 and "the seed does not reach the script" in result.stopping
    data = reporting.load_data(folder / reporting.DATA)
    assert data.verdict.outcome == "not measurable"


def test_an_interval_of_zero_width_excludes_nothing():
    metric = Metric(name="accuracy", direction="maximize")
    base, cand = _runs([0.8, 0.8]), _runs([0.9, 0.9])
    c = stats.compare(cand, base, metric, "test")
    assert c.ci_low == c.ci_high and not c.excludes_zero and c.seeds_identical
    outcome = verdict("run", [cand[0]], cand[0], base, cand, c, True)
    assert outcome.outcome == "not measurable" and "RESEARCH_LOOP_SEED" in outcome.next_steps[0]
    # the same difference on every seed, with seeds that vary: the interval is a point, the sign test decides
    shifted = stats.compare(_runs([0.9, 0.91]), _runs([0.8, 0.81]), metric, "test")
    assert shifted.ci_low == shifted.ci_high and not shifted.excludes_zero and not shifted.seeds_identical
    assert verdict("run", [cand[0]], cand[0], base, cand, shifted, True).outcome == "no significant change"


def _runs(values):
    return [
        TrialRecord(number=s, state="COMPLETE", seed=s, value=v, metrics={"accuracy": v, "test_accuracy": v})
        for s, v in enumerate(values)
    ]


def test_the_looks_raise_the_bar_a_single_look_would_clear():
    # differences +.01 +.03 +.02 +.04: paired t-test p = 0.0305; at 2 looks the test is at 0.025
    metric = Metric(name="accuracy", direction="maximize")
    base, cand = _runs([0.8] * 4), _runs([0.81, 0.83, 0.82, 0.84])
    once = stats.compare(cand, base, metric, "test")
    twice = stats.compare(cand, base, metric, "test", looks=2)
    assert once.p_value == pytest.approx(twice.p_value)
    assert twice.ci_high - twice.ci_low > once.ci_high - once.ci_low
    args = ("run", [cand[0]], cand[0], base, cand)
    assert verdict(*args, once, True).outcome == "improved"
    assert verdict(*args, twice, True).outcome == "no significant change"
