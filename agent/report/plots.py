"""The report's figures, drawn from ReportData alone and saved as PNG files in the run folder.

matplotlib's Agg backend draws without a display, so reports render the same on a server as on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from agent.report.curves import ConfusionView  # noqa: E402
from agent.report.data import Plot, ReportData  # noqa: E402
from agent.report.pareto import ParetoFront  # noqa: E402
from experiments.records import Metric  # noqa: E402

BEST_SO_FAR = "best_so_far.png"
IMPORTANCES = "importances.png"
ARMS = "arms.png"
CURVES = "learning_curves.png"
CONFUSION = "confusion.png"
PARETO = "pareto.png"
CURVE_TITLES = {"train_loss": "training loss", "loss": "validation loss"}
DPI = 110


def draw(data: ReportData, folder: Path) -> list[Plot]:
    """Every plot the data supports; a plot with nothing to show is left out (the report says why)."""
    plots = []
    if any(a.test for a in data.arms):
        arms(data, folder / ARMS)
        plots.append(Plot(file=ARMS, title=f"Held-out {data.metric.name} per arm and seed"))
    if any(v is not None for row in data.strategies for v in row.best_so_far):
        best_so_far(data, folder / BEST_SO_FAR)
        plots.append(Plot(file=BEST_SO_FAR, title=f"Best validation {data.metric.name} so far per strategy"))
    if any(informative(row.importances) for row in data.strategies):
        importances(data, folder / IMPORTANCES)
        plots.append(Plot(file=IMPORTANCES, title="Hyperparameter importances per strategy"))
    if data.pareto:
        pareto(data.pareto, data.metric, folder / PARETO)
        plots.append(
            Plot(file=PARETO, title=f"Validation {data.metric.name} against model size", section="pareto")
        )
    if data.curves:
        learning_curves(data, folder / CURVES)
        plots.append(
            Plot(file=CURVES, title="Learning curves of the finalists and the defaults", section="training")
        )
    if data.confusion is not None:
        confusion(data.confusion, folder / CONFUSION)
        plots.append(
            Plot(
                file=CONFUSION,
                title=f"Held-out confusion matrix of {data.confusion.label}",
                section="training",
            )
        )
    return plots


def learning_curves(data: ReportData, path: Path) -> None:
    """Per epoch, one panel per series (training loss, validation loss, validation metric), one line per group
    of runs (mean over its seeds); the untuned defaults dashed grey, as the reference."""
    keys = list(dict.fromkeys(k for c in data.curves for k in c.series))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for curve in data.curves:
            if key not in curve.series:
                continue
            style = (
                {"color": "grey", "linestyle": "--"}
                if curve.role == "reference"
                else {"marker": "o", "markersize": 3}
            )
            ax.plot(curve.epochs, curve.series[key], label=f"{curve.label} ({curve.seeds} seeds)", **style)
        ax.set_title(CURVE_TITLES.get(key, f"validation {key}"))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Learning curves: mean over each group's seeds", fontsize=10)
    _save(fig, path)


def confusion(view: ConfusionView, path: Path) -> None:
    """Rows true class, columns predicted; colour the share of the row, text the count (summed over seeds)."""
    size = len(view.matrix)
    shares = [[n / max(1, sum(row)) for n in row] for row in view.matrix]
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * size, 1.2 + 0.45 * size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if size <= 20:
        for i, row in enumerate(view.matrix):
            for j, n in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(n),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[i][j] > 0.6 else "black",
                )
    ax.set_xticks(range(size))
    ax.set_yticks(range(size))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{view.label}, held-out, {view.seeds} seeds summed", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    _save(fig, path)


def pareto(fronts: list[ParetoFront], metric: Metric, path: Path) -> None:
    """Each trial's validation metric against its compressed model's size: every study's front in its own
    colour, joined as the staircase it bounds, labelled with trial numbers; the trials it dominates grey."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    dominated = [p for f in fronts for p in f.dominated]
    if dominated:
        sizes, values = [p.size_bytes for p in dominated], [p.value for p in dominated]
        ax.scatter(sizes, values, s=18, color="grey", alpha=0.5, label="dominated trials")
    for front in fronts:
        sizes, values = [p.size_bytes for p in front.front], [p.value for p in front.front]
        (line,) = ax.step(sizes, values, where="post", linewidth=1.2, alpha=0.8)
        ax.scatter(sizes, values, s=36, zorder=3, color=line.get_color(), label=f"front: {front.label}")
        named: dict[tuple[float, float], list[str]] = {}  # trials at one point share one label
        for p in front.front:
            named.setdefault((p.size_bytes, p.value), []).append(f"#{p.trial}")
        for point, names in named.items():
            ax.annotate(", ".join(names), point, xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlabel("compressed model size (bytes, the state dict as torch.save writes it; smaller is better)")
    ax.set_ylabel(f"validation {metric.name} ({metric.direction})")
    ax.set_title(f"Pareto front: {metric.name} against model size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def best_so_far(data: ReportData, path: Path) -> None:
    """Best value so far against trial number, one line per strategy, each trial's own value as a dot."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for row in data.strategies:
        best = [(i, v) for i, v in enumerate(row.best_so_far, 1) if v is not None]
        if not best:
            continue
        (line,) = ax.step(*zip(*best, strict=True), where="post", label=row.label)
        own = [(i, v) for i, v in enumerate(row.values, 1) if v is not None]
        ax.scatter(*zip(*own, strict=True), s=14, alpha=0.5, color=line.get_color())
    baseline = [s.baseline_validation for s in data.seeds if s.baseline_validation is not None]
    if baseline:
        mean = sum(baseline) / len(baseline)
        ax.axhline(mean, color="grey", linestyle="--", label="baseline (validation mean over seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number (in the order trials ran)")
    ax.set_ylabel(f"validation {data.metric.name} ({data.metric.direction})")
    ax.set_title(f"Best {data.metric.name} so far (line) and each trial (dots)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def arms(data: ReportData, path: Path) -> None:
    """Each arm's held-out value per seed (dots, the same seed joined across arms) and its mean: the
    comparison the answer rests on, with the defaults' mean as a reference line."""
    fig, ax = plt.subplots(figsize=(7, 1.8 + 0.9 * len(data.arms)))
    seeds = sorted({s for a in data.arms for s in a.test})
    for seed in seeds:
        points = [(a.test[seed], i) for i, a in enumerate(data.arms) if seed in a.test]
        ax.plot(*zip(*points, strict=True), color="grey", alpha=0.35, linewidth=0.8)
    for i, arm in enumerate(data.arms):
        ax.scatter(list(arm.test.values()), [i] * len(arm.test), s=28, zorder=3)
        if arm.test_mean is not None:
            ax.plot([arm.test_mean] * 2, [i - 0.3, i + 0.3], color="black", linewidth=2, zorder=4)
    if data.comparison is not None:
        ax.axvline(
            data.comparison.baseline_mean, color="grey", linestyle="--", label="untuned defaults (mean)"
        )
        ax.legend(fontsize=8)
    ax.set_yticks(range(len(data.arms)), [f"{a.label} ({a.role})" for a in data.arms])
    ax.set_xlabel(f"held-out {data.metric.name} ({data.metric.direction}); bar: mean; lines join a seed")
    ax.set_title("Each arm re-run over the same seeds")
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)


def informative(importances: dict[str, float]) -> bool:
    """Importances say something only between two or more hyperparameters that the evaluator could tell
    apart; with too few trials Optuna returns them all equal."""
    return len(importances) > 1 and max(importances.values()) - min(importances.values()) > 1e-9


def importances(data: ReportData, path: Path) -> None:
    rows = [row for row in data.strategies if informative(row.importances)]
    names = sorted({n for row in rows for n in row.importances})
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.35 * len(names) * len(rows)))
    height = 0.8 / len(rows)
    for k, row in enumerate(rows):
        ys = [i + k * height for i in range(len(names))]
        ax.barh(ys, [row.importances.get(n, 0.0) for n in names], height=height, label=row.label)
    ax.set_yticks([i + height * (len(rows) - 1) / 2 for i in range(len(names))], names)
    ax.set_xlabel("importance (share of the objective's variance explained)")
    ax.set_title("Hyperparameter importances")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
