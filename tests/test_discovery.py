"""A plain script's hyperparameters found on its syntax tree, one test per source, and values written back
where each lives; nothing here runs a script."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import registry
from experiments.discovery import DiscoveryError, discover, write_values
from experiments.flags import trainer_fields
from experiments.script import ScriptContractError

ARGPARSE = """import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("-b", "--batch-size", type=int, default=32)
parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
parser.add_argument("--depth", dest="layers", type=int, default=2)
parser.add_argument("--amp", action="store_true")
parser.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--data", required=True)
parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2])
parser.add_argument("--name")
parser.add_argument("output")
args = parser.parse_args()
"""

CLICK = """import click


@click.command()
@click.option("--lr", default=0.01, type=float)
@click.option("--batch-size", "batch", default=16)
@click.option("--shuffle/--no-shuffle", default=True)
@click.option("--amp", is_flag=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="sgd")
@click.option("--seed", default=1)
def main(lr, batch, shuffle, amp, optimizer, seed):
    print(lr)
"""

TYPER = """from typing import Annotated

import typer


def main(
    data: str,
    lr: float = 1e-3,
    epochs: Annotated[int, typer.Option("--num-epochs")] = 5,
    dropout: float = typer.Option(0.1, "--dropout"),
    shuffle: bool = True,
    name: Annotated[str, typer.Argument()] = "run",
    seed: int = 0,
):
    print(lr)


if __name__ == "__main__":
    typer.run(main)
"""

HF_PARSER = """from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments


@dataclass
class ModelArguments:
    model_name: str = "bert-base-uncased"
    dropout: float = field(default=0.1, metadata={"help": "classifier dropout"})
    labels: list = field(default_factory=list)
    seed: int = 7


@dataclass
class Unparsed:
    width: int = 3


model_args, training_args = HfArgumentParser((ModelArguments, TrainingArguments)).parse_args_into_dataclasses()
"""

KEYWORDS = """import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader
from transformers import TrainingArguments

torch.manual_seed(0)
args = TrainingArguments(output_dir="out", learning_rate=5e-5, num_train_epochs=3, seed=42, report_to="none")
model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 8), nn.Dropout(p=0.1), nn.Dropout(0.3))
optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=args.weight_decay)
loader = DataLoader([], batch_size=64, shuffle=True)
split = train_test_split([1, 2, 3], test_size=0.5, random_state=0)
forest = RandomForestClassifier(n_estimators=100, max_depth=None, random_state=0, n_jobs=-1)
other = nn.Linear(3, 4, bias=False)
"""

CONSTANTS = """LEARNING_RATE = 3e-4
EPOCHS = 10
OFFSET = -1
USE_AMP = True
NAME = "run"
SEED = 0
COUNTER = 0
STEPS = 5
STEPS = 6
__version__ = 1


def bump():
    global COUNTER
    COUNTER += 1
"""


def found(source: str) -> dict[str, tuple]:
    return {h.name: (h.kind, h.default, h.flag) for h in discover(source).hyperparameters}


def test_argparse_flags_with_defaults_are_hyperparameters_and_seed_is_the_seed_flag():
    d = discover(ARGPARSE)
    assert found(ARGPARSE) == {
        "lr": ("argparse", 1e-3, "--lr"),
        "batch_size": ("argparse", 32, "--batch-size"),
        "optimizer": ("argparse", "adam", "--optimizer"),
        "layers": ("argparse", 2, "--depth"),
        "amp": ("argparse", False, "--amp"),
        "shuffle": ("argparse", True, "--shuffle"),
    }
    params = {h.name: h for h in d.hyperparameters}
    assert params["optimizer"].choices == ["adam", "sgd"]
    assert params["amp"].toggle and params["shuffle"].negative == "--no-shuffle"
    assert params["lr"].where == "--lr (argparse, line 4)"
    assert d.seed_flag == "--seed"


def test_click_options_with_their_names_flags_and_choices():
    d = discover(CLICK)
    assert found(CLICK) == {
        "lr": ("click", 0.01, "--lr"),
        "batch": ("click", 16, "--batch-size"),
        "shuffle": ("click", True, "--shuffle"),
        "amp": ("click", False, "--amp"),
        "optimizer": ("click", "sgd", "--optimizer"),
    }
    params = {h.name: h for h in d.hyperparameters}
    assert params["shuffle"].negative == "--no-shuffle" and params["amp"].toggle
    assert params["optimizer"].choices == ["adam", "sgd"]
    assert d.seed_flag == "--seed"


def test_typer_parameters_with_defaults_become_their_options():
    d = discover(TYPER)
    assert found(TYPER) == {
        "lr": ("typer", 1e-3, "--lr"),
        "epochs": ("typer", 5, "--num-epochs"),
        "dropout": ("typer", 0.1, "--dropout"),
        "shuffle": ("typer", True, "--shuffle"),
    }
    assert {h.name: h for h in d.hyperparameters}["shuffle"].negative == "--no-shuffle"
    assert d.seed_flag == "--seed"


def test_typer_options_are_only_read_where_typer_is_imported():
    assert "lr" not in found(TYPER.replace("import typer\n", "").replace("typer.run(main)", "main()"))


def test_hf_argument_parser_dataclass_fields_are_flags():
    d = discover(HF_PARSER)
    assert found(HF_PARSER) == {
        "model_name": ("dataclass", "bert-base-uncased", "--model_name"),
        "dropout": ("dataclass", 0.1, "--dropout"),
        # the TrainingArguments fields that tune training, at Transformers' own defaults
        **{k: ("dataclass", v, f"--{k}") for k, (v, _) in trainer_fields().items() if k != "seed"},
    }
    assert d.hyperparameters[1].where == "--dropout (HfArgumentParser field ModelArguments.dropout, line 9)"
    assert d.seed_flag == "--seed"
    with pytest.raises(DiscoveryError, match="the HfArgumentParser has no name"):
        write_values(HF_PARSER, {"learning_rate": 1e-4})


def test_a_training_arguments_default_is_written_as_the_parser_s_own_and_read_back():
    source = HF_PARSER.replace(
        "model_args, training_args = HfArgumentParser((ModelArguments, TrainingArguments))",
        "parser = HfArgumentParser((ModelArguments, TrainingArguments))\nmodel_args, training_args = parser",
    )
    written = write_values(source, {"learning_rate": 1e-4, "num_train_epochs": 2.0})
    assert (
        "parser = HfArgumentParser((ModelArguments, TrainingArguments))\n"
        "parser.set_defaults(learning_rate=0.0001, num_train_epochs=2.0)\n"
    ) in written
    assert discover(written).defaults["learning_rate"] == 1e-4
    assert write_values(written, {"learning_rate": 3e-4}) == written.replace("0.0001", "0.0003")


def test_literal_keyword_arguments_of_known_calls_and_their_seeds():
    d = discover(KEYWORDS)
    assert found(KEYWORDS) == {
        "learning_rate": ("keyword", 5e-5, None),
        "num_train_epochs": ("keyword", 3, None),
        "dropout": ("keyword", 0.1, None),  # the two Dropout(0.1): one hyperparameter
        "dropout_2": ("keyword", 0.3, None),
        "lr": ("keyword", 0.1, None),
        "momentum": ("keyword", 0.9, None),
        "batch_size": ("keyword", 64, None),
        "n_estimators": ("keyword", 100, None),
    }
    assert d.hyperparameters[0].where == "TrainingArguments(learning_rate=...) (line 9)"
    # torch.manual_seed(0), TrainingArguments(seed=42), the forest's random_state; never the data split's
    assert d.seed_sites == 3
    assert d.family == "transformer"


def test_module_level_numeric_constants_assigned_once():
    assert found(CONSTANTS) == {
        "learning_rate": ("constant", 3e-4, None),
        "epochs": ("constant", 10, None),
        "offset": ("constant", -1, None),
    }
    assert discover(CONSTANTS).hyperparameters[0].where == "constant LEARNING_RATE (line 1)"


def test_values_are_written_where_each_lives_and_nothing_else_changes():
    text = write_values(ARGPARSE, {"lr": 0.003, "optimizer": "sgd", "amp": True, "shuffle": False})
    assert 'parser.add_argument("--lr", type=float, default=0.003)' in text
    assert 'choices=["adam", "sgd"], default="sgd")' in text
    assert 'parser.add_argument("--amp", action="store_true", default=True)' in text
    assert "BooleanOptionalAction, default=False)" in text
    assert len(text.splitlines()) == len(ARGPARSE.splitlines())
    changed = [a for a, b in zip(ARGPARSE.splitlines(), text.splitlines(), strict=True) if a != b]
    assert len(changed) == 4

    text = write_values(KEYWORDS, {"learning_rate": 1e-4, "dropout": 0.25, "lr": 0.05}, seed=7)
    assert 'TrainingArguments(output_dir="out", learning_rate=0.0001, num_train_epochs=3, seed=7,' in text
    assert "nn.Dropout(0.25), nn.Linear(8, 8), nn.Dropout(p=0.25), nn.Dropout(0.3)" in text
    assert "SGD(model.parameters(), 0.05, momentum=0.9" in text
    assert "torch.manual_seed(7)" in text and "random_state=7, n_jobs=-1" in text
    assert "test_size=0.5, random_state=0)" in text

    text = write_values(CONSTANTS, {"learning_rate": 0.001, "offset": -2})
    assert text.startswith("LEARNING_RATE = 0.001\nEPOCHS = 10\nOFFSET = -2\n")
    assert write_values(TYPER, {"epochs": 8}).count("= 8,") == 1
    assert "default=0.2, metadata=" in write_values(HF_PARSER, {"dropout": 0.2})
    assert '@click.option("--lr", default=0.5, type=float)' in write_values(CLICK, {"lr": 0.5})


def test_a_name_the_script_lacks_is_refused():
    with pytest.raises(DiscoveryError, match="has no hyperparameter 'hidden'"):
        write_values(CONSTANTS, {"hidden": 3})


def test_the_metric_is_the_first_known_one_the_script_reports():
    prints = """
print(f"epoch {e}: loss={l:.3f} val_acc={a:.4f}")
print("f1: %.3f" % f1)
"""
    assert discover(prints).reported == ["loss", "accuracy", "f1"]
    assert registry.reported_metric(discover(prints).reported).name == "accuracy"
    loss_only = registry.reported_metric(discover('print("val_loss={}".format(x))').reported)
    assert (loss_only.name, loss_only.direction) == ("loss", "minimize")
    helper = discover("from experiments import report_metrics\nreport_metrics(step=1, rmse=0.3)\n")
    assert registry.reported_metric(helper.reported).direction == "minimize"
    trainer = discover("def compute_metrics(p):\n    return {'f1': 0.5}\n\ntrainer = Trainer(model=m)\n")
    assert trainer.reported == ["f1", "loss"]
    assert registry.reported_metric([]).name == "accuracy"


def test_a_plain_script_becomes_a_task_searched_by_what_was_found(tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_text(ARGPARSE + 'print(f"accuracy={0.5}")\n')
    task = registry.from_script(script)
    space = {p.name: p for p in task.search_space}
    assert space["optimizer"].choices == ["adam", "sgd"]
    # centred on the default 1e-3, a factor of 30 either side
    assert space["lr"].log and (space["lr"].low, space["lr"].high) == (
        pytest.approx(1e-3 / 30),
        pytest.approx(0.03),
    )
    assert task.defaults["batch_size"] == 32
    assert not task.fractional and not task.curated


def test_a_plain_script_with_nothing_to_tune_says_what_was_looked_for(tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_text("print('accuracy=1.0')\n")
    with pytest.raises(ScriptContractError, match="no hyperparameters found.*exactly one"):
        registry.from_script(script)
