"""The report lint (tests/report_lint.py) on a real run with overrides and two rounds, and on planted stale
sentences; the other shapes (arms, one round, a plain script, a compression study) are linted where their runs
are made: test_arms, test_front_door, test_plain_scripts, test_pareto."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from report_lint import lint
from test_web import SCRIPT, _init_repo

from agent import runs
from agent.config import Settings
from agent.loop import drive as loop
from agent.report import caveats
from agent.report import render as reporting
from experiments.records import Metric, TrialRecord

ACCURACY = Metric(name="accuracy", direction="maximize")

IDEA = "Tune the learning rate of my training script"


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`run --trials 4 --rounds 2 --seeds 2` on a script whose metric is a smooth function: seconds."""
    tmp = tmp_path_factory.mktemp("lint")
    _init_repo(tmp / "repo", {"train.py": SCRIPT})
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RESEARCH_LOOP_STORAGE", raising=False)
        mp.setenv("RESEARCH_LOOP_CONFIG", str(tmp / "absent.toml"))
        settings = Settings(reports_dir=tmp / "reports", device="cpu")
        options = loop.LoopOptions(
            idea=IDEA, script=tmp / "repo" / "train.py", trials=4, rounds=2, seeds=2, workers=2, device="cpu"
        )
        folder = loop.start(options, settings, ["research-loop", "run", IDEA, "--trials", "4"])
        loop.drive(folder, settings, report=reporting.render)
    return folder


def test_a_two_round_run_with_overrides_states_only_what_it_ran(two_rounds: Path):
    assert lint(two_rounds) == []
    report = (two_rounds / reporting.MARKDOWN).read_text()
    assert "- Trials: 4 per search strategy (8 tuning trials in all), in 2 rounds." in report
    assert "- Round 2 (optimise" in report
    assert json.loads((two_rounds / reporting.DATA).read_text())["status"] == "awaiting_approval"
    assert runs.load(two_rounds).status == "awaiting_approval"


@pytest.mark.parametrize(
    ("file", "old", "new", "caught"),
    [
        (reporting.MARKDOWN, "- Trials: 4 per", "- Trials: 30 per", "says 30 trials per"),
        ("plan.md", "over 2 seeds", "over 3 seeds", "plan.md says 3 seeds"),
        (reporting.MARKDOWN, "- Round 2 (optimise", "- Round 3 (optimise", "names round 3"),
        (reporting.DATA, '"status": "awaiting_approval"', '"status": "running"', "says status 'running'"),
        (
            reporting.MARKDOWN,
            "| Storage | `study.journal`",
            "| Storage | `{folder}/study.journal`",
            "absolute",
        ),
        (reporting.MARKDOWN, "| yes |", "| no |", "not searched"),
    ],
)
def test_a_planted_stale_sentence_fails_the_lint(two_rounds: Path, tmp_path: Path, file, old, new, caught):
    copy = tmp_path / two_rounds.name
    shutil.copytree(two_rounds, copy)
    text = (copy / file).read_text()
    assert old in text, f"{old!r} is not in {file}"
    (copy / file).write_text(text.replace(old, new.format(folder=copy.resolve()), 1))
    assert any(caught in problem for problem in lint(copy)), lint(copy)


def _runs(values: list[float], key: str = "test_accuracy") -> list[TrialRecord]:
    return [
        TrialRecord(number=i, state="COMPLETE", value=v, seed=i, metrics={key: v})
        for i, v in enumerate(values)
    ]


def test_a_reference_at_the_metrics_ceiling_on_every_seed_is_said_to_allow_no_gain():
    said = caveats.at_bound(
        ACCURACY, "test", [("the control arm c", _runs([1.0, 1.0])), ("x", _runs([1.0, 0.9]))]
    )
    assert said == [
        "every seed of the control arm c scored 1.0000 test accuracy, the metric's ceiling: a comparison with it "
        "cannot show a gain, only a loss"
    ]
    loss = Metric(name="val_loss", direction="minimize")
    assert caveats.at_bound(loss, "test", [("d", _runs([0.0, 0.0], "test_val_loss"))])
    assert caveats.at_bound(Metric(name="bleu", direction="maximize"), "test", [("d", _runs([1.0]))]) == []


def test_trials_tied_at_the_best_validation_value_say_how_many_and_the_tie_break():
    (said,) = caveats.ties(
        ACCURACY, [("arm a", _runs([0.9, 0.95, 0.95, 0.95])), ("arm b", _runs([0.9, 0.8]))]
    )
    assert said.startswith("3 of arm a's 4 completed trials tied at the best validation accuracy 0.9500")
    assert caveats.TIE_BREAK in said
