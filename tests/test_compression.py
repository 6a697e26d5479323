"""Compression-aware evaluation: int8 dynamic quantization and global magnitude pruning of a trained model, the
compressed metric as the objective through the real worker path, the planner's words, and the report's table."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from pydantic import ValidationError

from agent.config import Settings
from agent.plan import planner
from agent.report.compression import compression_view
from experiments import compression, registry
from experiments.records import Compression
from experiments.tasks import digits_cnn, tabular_mlp
from experiments.tuning import TuningConfig, evaluate, prepare_workspaces

pytestmark = pytest.mark.usefixtures("no_provider_env", "one_torch_thread")

INT8 = Compression(kind="int8_dynamic")


@pytest.fixture
def compressing():
    """Set a transform for this process as a worker does, and clear it after the test."""
    yield compression.use
    compression.use(None)


def final_run(module, **hparams) -> dict[str, float]:
    study = optuna.create_study(direction="maximize")
    return module.run({"epochs": 2, **hparams}, trial=study.ask(), seed=0, holdout=True, device="cpu")


def test_int8_reports_the_quantized_metrics_beside_the_trained_ones(compressing):
    plain = final_run(tabular_mlp)
    compressing(INT8)
    metrics = final_run(tabular_mlp)
    assert {k: metrics[f"uncompressed_{k}"] for k in plain} == plain  # the same training, measured as trained
    assert metrics["accuracy"] == pytest.approx(plain["accuracy"], abs=0.05)
    assert metrics["size_bytes"] < metrics["uncompressed_size_bytes"]
    assert metrics["latency_ms"] > 0 and metrics["uncompressed_latency_ms"] > 0


def test_the_per_epoch_evaluation_and_a_run_without_a_trial_are_not_compressed(compressing):
    compressing(INT8)
    direct = tabular_mlp.run({"epochs": 2}, seed=0, holdout=True, device="cpu")
    assert "size_bytes" not in direct
    compressing(None)
    assert tabular_mlp.run({"epochs": 2}, seed=0, holdout=True, device="cpu") == direct


def test_magnitude_pruning_zeroes_the_share_asked_for_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = digits_cnn.DigitsCNN(8, 0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = compression.compress(model, Compression(kind="magnitude_pruning", sparsity=0.7))
    weights = [m.weight for m in pruned.modules() if isinstance(m, compression.PRUNED)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.7, abs=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert compression.nonzero_fraction(pruned) < 0.35 and compression.nonzero_fraction(model) == 1.0


def test_a_model_without_the_layers_a_transform_needs_is_refused():
    with pytest.raises(ValueError, match="needs Linear or LSTM layers"):
        compression.compress(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), INT8)
    with pytest.raises(ValidationError, match="only magnitude_pruning takes one"):
        Compression(kind="int8_dynamic", sparsity=0.5)
    assert Compression(kind="magnitude_pruning").sparsity == 0.5


def test_the_worker_path_makes_the_compressed_metric_the_objective(tmp_path: Path):
    task = registry.get("tabular-mlp")
    folder = tmp_path / "run"
    folder.mkdir()
    _, workspace = prepare_workspaces(folder, task)
    cfg = TuningConfig(seeds=1, device="cpu", compression=INT8)
    (run,) = evaluate(str(folder / "study.journal"), "t-final", task, workspace, {"epochs": 2}, cfg)
    assert run.state == "COMPLETE", run.error
    assert run.value == run.metrics["accuracy"] and "uncompressed_accuracy" in run.metrics
    assert run.metrics["size_bytes"] < run.metrics["uncompressed_size_bytes"]
    assert len(run.confusion) == 2 and sum(map(sum, run.confusion)) > 0  # the quantized model's matrix
    view = compression_view(INT8, "accuracy", [("untuned defaults", [run])])
    (row,) = view.rows
    assert (row.compressed, row.uncompressed) == (
        run.metrics["test_accuracy"],
        run.metrics["uncompressed_test_accuracy"],
    )
    assert row.measures["size_bytes"] == run.metrics["size_bytes"]
    assert compression_view(None, "accuracy", [("x", [run])]) is None


@pytest.mark.parametrize(
    ("idea", "expected"),
    [
        ("Quantization-aware search: keep accuracy of the digits CNN after int8 dynamic quantization", INT8),
        (
            "Tune the tabular MLP so that it stays accurate when pruned to 70% sparsity",
            Compression(kind="magnitude_pruning", sparsity=0.7),
        ),
        (
            "Which learning rate keeps the compressed digits CNN accurate after magnitude pruning?",
            Compression(kind="magnitude_pruning", sparsity=0.5),
        ),
        ("Random search on the digits CNN with pruning", None),
    ],
)
def test_the_planner_reads_the_transform_from_the_idea(idea, expected):
    plan = planner.make_plan(idea, Settings())
    assert plan.compression == expected and plan.not_done == []
    if expected is not None:
        assert any("before its final evaluation" in note for note in plan.notes)


def test_a_script_with_its_own_evaluation_lists_compression_as_not_done():
    plan = planner.make_plan("Keep the LSTM sentiment model accurate after int8 quantization", Settings())
    assert plan.compression is None
    assert [n.condition for n in plan.not_done] == [INT8.describe()]


def test_a_fine_tuning_epoch_after_pruning_keeps_the_zeros_and_trains_the_kept_weights(compressing):
    pruned = Compression(kind="magnitude_pruning", sparsity=0.9)
    compressing(pruned)
    plain = final_run(digits_cnn)
    compressing(pruned.model_copy(update={"finetune_epochs": 1}))
    tuned = final_run(digits_cnn)
    assert tuned["uncompressed_accuracy"] == plain["uncompressed_accuracy"]  # the same trained model
    assert tuned["nonzero_fraction"] == pytest.approx(plain["nonzero_fraction"], abs=1e-3)  # zeros held
    assert tuned["accuracy"] > plain["accuracy"]  # the kept weights made up for the 90% removed
    with pytest.raises(ValidationError, match="only magnitude_pruning fine-tunes"):
        Compression(kind="int8_dynamic", finetune_epochs=1)
    plan = planner.make_plan("Tune the digits CNN pruned to 90% sparsity, then fine-tune it", Settings())
    assert plan.compression == Compression(kind="magnitude_pruning", sparsity=0.9, finetune_epochs=1)
    assert "one epoch of fine-tuning" in plan.compression.describe()
