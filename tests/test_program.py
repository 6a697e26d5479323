"""A plain script run as a trial (experiments.program): each metric channel, the per-epoch values that feed
the pruner, the message when no metric comes back, flags and literals, seeds, the held-out fallback, time
limits. The scripts are a few lines of plain Python, so each run costs a Python start-up."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from agent.code.checks import Preflight, preflight
from experiments import channels, registry
from experiments.program import (
    METRIC_REGEX_FILE,
    SAME_SPLIT,
    ProgramError,
    ProgramScript,
    write_metric_regex,
)
from experiments.records import Metric
from experiments.training import TrialPruned
from experiments.worker import TrialTimeout, time_limit


def plain(tmp_path: Path, source: str, metric: str = "accuracy") -> ProgramScript:
    """The script as a run's workspace copy: trials run in the run folder's trials/."""
    path = tmp_path / "run" / "workspace" / "train.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    return ProgramScript(path, metric)


HELPER = """from experiments import report_metrics

LEARNING_RATE = 0.1
for epoch in range(1, 4):
    report_metrics(step=epoch, accuracy=LEARNING_RATE * epoch, loss=1.0 / epoch)
print("accuracy=0.01")  # the file comes first
"""

TRAINER_FILES = """import json
import pathlib

EPOCHS = 2
out = pathlib.Path("out")
out.mkdir()
(out / "all_results.json").write_text(json.dumps({"epoch": 2.0, "eval_accuracy": 0.75, "eval_runtime": 1.5}))
print("{'eval_loss': '0.6', 'eval_accuracy': '0.5', 'epoch': '1'}")
"""

STDOUT = """import sys

EPOCHS = 3
for epoch in range(1, EPOCHS + 1):
    print(f"Epoch {epoch}: loss: {1 / epoch:.3f} val_accuracy: {0.2 * epoch:.2f}")
print("done", file=sys.stderr)
"""


def test_report_metrics_is_the_first_channel_and_its_steps_are_the_curve(tmp_path):
    script = plain(tmp_path, HELPER)
    metrics = script.run({"learning_rate": 0.2})
    assert metrics == {"accuracy": pytest.approx(0.6), "loss": pytest.approx(1 / 3)}
    assert not (tmp_path / "run" / "workspace" / "train.py").read_text().count("0.2")  # the copy was patched
    assert list((tmp_path / "run" / "trials").iterdir()) == []  # each run's folder is removed


def test_the_trainers_saved_results_are_the_second_channel(tmp_path):
    assert plain(tmp_path, TRAINER_FILES).run() == {"accuracy": 0.75}


def test_the_last_named_value_on_stdout_is_the_third_channel(tmp_path):
    assert plain(tmp_path, STDOUT).run() == {"accuracy": 0.6, "loss": 0.333}


def test_stdout_reads_printed_dicts_and_epoch_lines(tmp_path):
    text = (
        "100%|#####| 8/8 [00:01]\r{'eval_loss': '0.69', 'eval_accuracy': '0.5', 'epoch': '1.0'}\n"
        "{'eval_loss': '0.5', 'eval_accuracy': '0.7', 'eval_runtime': '0.2', 'epoch': '2.0'}\n"
        "{'train_runtime': '3.1', 'train_loss': '0.6', 'epoch': '2.0'}\n"
    )
    reading = channels.read(tmp_path, text, "accuracy")
    assert reading is not None and reading.channel == "stdout"
    assert reading.metrics == {"loss": 0.5, "accuracy": 0.7}
    assert [(p.step, p.metrics["accuracy"]) for p in reading.points] == [(1, 0.5), (2, 0.7)]


def test_a_missing_metric_fails_with_the_last_lines_and_the_three_ways(tmp_path):
    script = plain(tmp_path, "EPOCHS = 2\nfor e in range(12):\n    print(f'line {e}')\nprint('f1=0.5')\n")
    with pytest.raises(ProgramError) as caught:
        script.run()
    message = str(caught.value)
    assert message.startswith("train.py finished but reported no 'accuracy'. It reported f1, not accuracy.")
    assert "  | line 11\n  | f1=0.5" in message and "line 3" not in message  # the last 8 lines only
    assert "experiments.report_metrics(accuracy=value)" in message
    assert "all_results.json" in message and "`accuracy=0.93`" in message


def test_a_metric_printed_as_nan_is_read_as_nan_and_the_preflight_says_so(tmp_path):
    script = plain(tmp_path, "LEARNING_RATE = 10.0\nprint('loss=inf')\nprint('accuracy=nan')\n")
    assert math.isnan(script.run()["accuracy"])
    check = preflight(script.path, Preflight(metric="accuracy", timeout_s=60))
    assert not check.passed and check.detail == "run() returned accuracy=nan"


WORD_LM = """import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=20)
args = parser.parse_args()
for epoch in range(1, 3):
    print(f"| epoch {epoch:3d} |   200/ 2983 batches | lr {args.lr:02.2f} | ms/batch 45.21 | loss  7.63 | ppl  2059.27")
    print(f"| end of epoch {epoch:3d} | time: 12.34s | valid loss {6.6 / epoch:5.2f} | valid ppl {804.2 / epoch:8.2f}")
print("| End of training | test loss  3.25 | test ppl   390.10")
"""
NANO_GPT = """LEARNING_RATE = 6e-4
for step in range(0, 121, 60):
    print(f"step {step}: train loss {4.6 - step / 1000:.4f}, val loss {4.7 - step / 1000:.4f}")
    print(f"iter {step}: loss 4.4000, time 12.50ms, mfu 1.00%")
"""


def test_table_rows_and_words_before_a_value_are_read_with_the_split_in_the_name(tmp_path):
    loss = registry.metric_named("val_loss")
    assert (loss.name, loss.direction) == ("loss", "minimize")
    lm = plain(tmp_path / "lm", WORD_LM, loss.name)
    assert lm.run(holdout=True) == {
        "loss": 3.3,
        "perplexity": 402.1,
        "test_loss": 3.25,
        "test_perplexity": 390.1,
    }
    printed = subprocess.run([sys.executable, lm.path], capture_output=True, text=True, check=True).stdout
    # the per-epoch curve is the validation loss, not the training loss of the progress rows
    assert [(p.step, p.metrics["loss"]) for p in channels.read(tmp_path, printed, "loss").points] == [
        (1, 6.6), (2, 3.3),
    ]  # fmt: skip
    # the bare `loss` of nanoGPT's iter lines is the training loss: the validation loss is the one read
    assert plain(tmp_path / "gpt", NANO_GPT, loss.name).run() == {"train_loss": 4.48, "loss": 4.58}


def test_a_metric_s_direction_comes_from_its_name_after_a_split_prefix(tmp_path):
    assert registry.metric_named("valid_ppl") == Metric(name="perplexity", direction="minimize")
    assert registry.metric_named("eval_accuracy") == Metric(name="accuracy", direction="maximize")
    assert registry.metric_named("test_f1") == Metric(name="test_f1", direction="maximize")
    with pytest.raises(ValueError, match="'val_bleu': direction unknown; known metrics: accuracy"):
        registry.metric_named("val_bleu")


def test_a_missing_metric_lists_only_the_candidates_that_look_like_metrics(tmp_path):
    source = "EPOCHS = 2\nprint('samples: 1000, batch_size=64')\nprint('epoch 2 | valid loss 0.25')\n"
    with pytest.raises(ProgramError, match=r"reported no 'accuracy'\. It reported loss, not accuracy\."):
        plain(tmp_path, source).run()


TOP1 = """EPOCHS = 2
for epoch in range(1, EPOCHS + 1):
    print(f"epoch {epoch} | top-1: {89.0 + 2 * epoch:.1f}%")
print("accuracy=0.5 (of the warm-up model)")
"""
SEEDED_TOP1 = """import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
args = parser.parse_args()
seed = int(os.environ["RESEARCH_LOOP_SEED"])
print(f"top-1: {80 + 1000 * args.lr + seed % 3:.2f}%")
"""


def test_a_metric_regex_alone_gives_the_metric_from_a_line_of_any_form(tmp_path):
    script = plain(tmp_path, TOP1)
    write_metric_regex(script.path.parent, r"top-1: ([0-9.]+)%")
    reading = ProgramScript(script.path, "accuracy")
    assert reading.run()["accuracy"] == 93.0  # the pattern's, not the later accuracy=0.5
    with pytest.raises(ValueError, match="put the value in a group"):
        channels.metric_pattern("top-1: [0-9.]+")


def test_run_reads_the_metric_through_its_regex_in_every_trial(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from agent.cli import app

    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    (tmp_path / "train.py").write_text(SEEDED_TOP1)
    regex = ["--metric-regex", r"top-1: ([0-9.]+)%"]
    options = ["--rounds", "1", "--trials", "2", "--seeds", "2", "--device", "cpu"]
    out = CliRunner().invoke(app, ["run", "Random search of the learning rate", "--script",
                                   str(tmp_path / "train.py"), *regex, *options])  # fmt: skip
    assert out.exit_code == 0, out.output
    folder = next((tmp_path / "reports").iterdir())
    result = json.loads((folder / "results.json").read_text())
    values = [r["metrics"]["accuracy"] for r in result["baseline"]]
    assert sorted(values) == [90.0, 91.0]  # 80 + 1000 * 0.01 + seed
    assert (folder / "workspace" / METRIC_REGEX_FILE).read_text() == regex[1]
    out = CliRunner().invoke(app, ["run", "Tune it", "--script", str(tmp_path / "train.py"),
                                   "--metric-regex", "top-1"])  # fmt: skip
    assert out.exit_code == 2 and "put the value in a group" in out.output


def test_a_script_that_fails_says_how_with_its_last_lines(tmp_path):
    script = plain(tmp_path, "EPOCHS = 2\nraise SystemExit('no data at /missing')\n")
    with pytest.raises(
        ProgramError, match=r"exited with status 1; its last lines:\n  \| no data at /missing"
    ):
        script.run()


ECHO = """import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--amp", action="store_true")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
DROPOUT = 0.1
env = {k: v for k, v in os.environ.items() if k.startswith("RESEARCH_LOOP_")}
with open(SEEN, "w") as out:
    json.dump({"lr": args.lr, "amp": args.amp, "seed": args.seed, "dropout": DROPOUT, **env}, out)
print(f"accuracy={args.lr}")
"""


def test_flags_literals_seed_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RESEARCH_LOOP_STORAGE", "postgresql://user:secret@db/x")
    seen = tmp_path / "run" / "workspace" / "seen.json"  # the workspace: all a boxed run may write
    script = plain(tmp_path, ECHO.replace("SEEN", repr(str(seen))))
    assert script.run({"lr": 0.5, "amp": True, "dropout": 0.3}, seed=4, holdout=True)["accuracy"] == 0.5
    values = json.loads(seen.read_text())
    assert (values["lr"], values["amp"], values["dropout"], values["seed"]) == (0.5, True, 0.3, 4)
    assert values[channels.SEED_ENV] == "4" and values[channels.SPLIT_ENV] == "test"
    assert "RESEARCH_LOOP_STORAGE" not in values  # research-loop's own settings stay out of the user's script


def test_a_script_without_a_held_out_split_compares_on_its_own_evaluation(tmp_path):
    script = plain(tmp_path, STDOUT)
    held_out = script.run(holdout=True)
    assert held_out["test_accuracy"] == held_out["accuracy"] and held_out[SAME_SPLIT] == 1.0


def test_a_script_that_switches_to_a_test_split_gives_its_own_held_out_values(tmp_path):
    switches = """import os

from experiments import report_metrics

EPOCHS = 1
report_metrics(accuracy=0.8)
if os.environ.get("RESEARCH_LOOP_SPLIT") == "test":
    report_metrics(test_accuracy=0.7)
else:
    report_metrics(test_accuracy=0.1)  # never kept where tuning could see it
"""
    script = plain(tmp_path, switches)
    assert script.run(holdout=True) == {"accuracy": 0.8, "test_accuracy": 0.7}
    assert script.run() == {"accuracy": 0.8}


def test_per_epoch_values_feed_the_pruner_and_a_pruned_run_is_stopped(tmp_path):
    slow = """import time

EPOCHS = 50
for epoch in range(1, EPOCHS + 1):
    print(f"epoch={epoch} accuracy={0.01 * epoch}")
    time.sleep(0.2)
"""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    started = time.monotonic()
    with pytest.raises(TrialPruned):
        plain(tmp_path, slow).run(trial=trial)
    assert time.monotonic() - started < 5  # not the 10 s the script would take
    assert trial.storage.get_trial(trial._trial_id).intermediate_values[1] == pytest.approx(0.01)


def test_the_workers_time_limit_stops_the_script(tmp_path):
    beat = tmp_path / "run" / "workspace" / "beat"  # a pid would be the box's own, so the run beats instead
    hangs = f"""import pathlib
import time

EPOCHS = 1
while True:
    pathlib.Path({str(beat)!r}).write_text(str(time.time()))
    time.sleep(0.05)
"""
    with pytest.raises(TrialTimeout), time_limit(2):
        plain(tmp_path, hangs).run()
    last = beat.read_text()
    time.sleep(0.5)
    assert beat.read_text() == last, "the script was killed with its run"


ARGUMENTS = """import argparse
import pathlib

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
rows = pathlib.Path(args.data).read_text().split()
print(f"accuracy={len(rows) * args.lr}")
"""


def test_a_command_s_own_arguments_reach_every_run_and_a_flag_it_sets_is_held_fixed(tmp_path):
    from experiments.command import parse
    from experiments.program import write_args
    from experiments.registry import from_script

    (tmp_path / "data.txt").write_text("a b c d")
    (tmp_path / "train.py").write_text(ARGUMENTS)
    (tmp_path / "elsewhere").mkdir()
    script, args = parse("python3 train.py --data data.txt", tmp_path)
    assert (script, args) == (tmp_path / "train.py", ["--data", "data.txt"])  # inside the project: as typed
    _, args = parse("python3 ../train.py --data=../data.txt", tmp_path / "elsewhere")
    assert args == ["--data=data.txt"]  # relative to the script's folder, where its trials run
    assert from_script(script, args=tuple(args)).script_args == tuple(args)
    copy = plain(tmp_path, ARGUMENTS)
    write_args(copy.path.parent, (f"--data={tmp_path / 'data.txt'}",))
    run = ProgramScript(copy.path, "accuracy")
    assert run.run() == {"accuracy": pytest.approx(4 * 0.1)}
    assert run.run({"lr": 0.25}) == {"accuracy": pytest.approx(4 * 0.25)}
    # a hyperparameter the command sets is a condition: held fixed, out of the search, either flag style
    for given in (("--lr", "0.5"), ("--lr=0.5",)):
        task = from_script(script, args=("--data", "data.txt", *given))
        assert task.fixed == {"lr": 0.5}  # --data is required: an argument, not a hyperparameter
        assert "lr" not in [p.name for p in task.search_space]


def test_a_command_must_run_a_python_script(tmp_path):
    from experiments.command import parse as parse_command

    for text in ("bash train.sh", "python -c 'print(1)'", "torchrun --nproc 2 x"):
        with pytest.raises(ValueError, match="expected a Python script"):
            parse_command(text, tmp_path)


def test_run_refuses_a_metric_of_unknown_direction_and_a_command_with_a_script(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from agent.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("a b")
    (tmp_path / "train.py").write_text(ARGUMENTS)
    runner = CliRunner()
    out = runner.invoke(
        app, ["run", "Tune the learning rate", "--command", "python train.py --data x", "--metric", "bleu"]
    )
    assert out.exit_code == 2 and "direction unknown" in out.output
    out = runner.invoke(app, ["run", "Tune it", "--script", "train.py", "--command", "python train.py"])
    assert out.exit_code == 2 and "not both" in out.output
    assert not (tmp_path / "reports").exists()
