"""Studies run through research-loop's real runner (coordinator, worker processes, storage) for the overhead and
scaling benchmarks, timed from the timestamps the storage itself recorded.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from experiments import storage as storages
from experiments.records import Metric, SearchParam
from experiments.runner import StudySpec, Ticket, ensure_study, execute

METRIC = Metric(name="accuracy", direction="maximize")

# A contract script whose trial costs a fixed amount of time or of CPU work; its cost is a hyperparameter.
CONTRACT_SCRIPT = '''"""A benchmark trial of fixed cost: `seconds` of sleep, or `work` rounds of pure-Python arithmetic."""

import time

# --- hyperparameters ---
seconds = 1.0
work = 0
x = 0.5
# --- end hyperparameters ---


def run(hparams=None, *, trial=None, seed=0, data_fraction=1.0, holdout=False, device="auto"):
    hp = {"seconds": seconds, "work": work, "x": x, **(hparams or {})}
    time.sleep(hp["seconds"])
    total = 0
    for i in range(int(hp["work"])):
        total += (i * i + seed) % 7
    return {"accuracy": hp["x"], "checksum": float(total)}
'''
CONTRACT_SPACE = [SearchParam(name="x", kind="float", low=0.0, high=1.0)]


@dataclass(frozen=True)
class Timeline:
    """When a study's coordinator started and stopped, and when each finished trial ran (monotonic seconds)."""

    started: float
    ended: float
    trials: list[tuple[float, float]]
    params: list[dict[str, Any]]
    seeds: list[int]
    states: list[str]

    @property
    def startup_s(self) -> float:
        """From the coordinator's start to the first trial's start: worker spawn, imports, study load."""
        return self.trials[0][0] - self.started

    @property
    def shutdown_s(self) -> float:
        """From the last trial's end to the coordinator's return: noticing the study is done, stopping workers."""
        return self.ended - self.trials[-1][1]

    def steady_per_trial_s(self, skip: int = 1) -> float:
        """Wall seconds per trial after the first `skip` trials, start of trial skip+1 to end of the last."""
        kept = self.trials[skip:]
        return (kept[-1][1] - kept[0][0]) / len(kept)

    def steady_cycles_s(self, skip: int = 1) -> list[float]:
        """Start-to-start seconds of consecutive trials after the first `skip` (one worker): each trial's
        run plus everything the runner does before the next one starts."""
        starts = sorted(s for s, _ in self.trials[skip:])
        return [b - a for a, b in itertools.pairwise(starts)]

    def steady_throughput(self, skip: int = 1) -> float:
        """Finished trials per second between the (skip+1)-th start and the last end, over all workers."""
        kept = self.trials[skip:]
        return len(kept) / (max(e for _, e in kept) - min(s for s, _ in kept))


def workspace(root: Path, script_name: str, source: str) -> Path:
    folder = root / uuid.uuid4().hex[:8] / "workspace"
    folder.mkdir(parents=True)
    (folder / script_name).write_text(source)
    return folder


def run_study(
    url: str,
    folder: Path,
    script_name: str,
    space: list[SearchParam],
    hparams: dict[str, Any],
    trials: int,
    workers: int,
) -> Timeline:
    """`trials` tickets with fixed `hparams` (seed = trial index), random sampling over `space`, `workers`
    worker processes; timed from the storage's own trial timestamps. The study is deleted afterwards."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    spec = StudySpec(
        name=name,
        script=script_name,
        metric=METRIC,
        search_space=space,
        sampler="random",
        pruner="none",
        budget=trials,
        device="cpu",
        trial_timeout_s=600,
    )
    ensure_study(url, spec, [Ticket(hparams=hparams, seed=i) for i in range(trials)])
    wall_offset = time.time() - time.monotonic()
    started = time.monotonic()
    execute(url, name, folder, workers, on_progress=lambda progress: None)
    ended = time.monotonic()
    storage = storages.open_storage(url)
    frozen = sorted(
        optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False),
        key=lambda t: t.datetime_start,
    )
    optuna.delete_study(study_name=name, storage=storage)
    done = [t for t in frozen if t.state == TrialState.COMPLETE]
    if len(done) != trials:
        raise RuntimeError(f"{len(done)} of {trials} trials completed; see {folder.parent / 'workers.log'}")
    return Timeline(
        started=started,
        ended=ended,
        trials=[
            (t.datetime_start.timestamp() - wall_offset, t.datetime_complete.timestamp() - wall_offset)
            for t in done
        ],
        params=[t.params for t in done],
        seeds=[t.user_attrs["ticket"]["seed"] for t in done],
        states=[t.state.name for t in frozen],
    )


def postgres_url(candidates: tuple[str, ...]) -> tuple[str | None, str]:
    """The first PostgreSQL URL that answers, or None and why none did."""
    reasons = []
    for url in candidates:
        try:
            storages.check(url)
            return url, ""
        except storages.StorageUnavailable as exc:
            reasons.append(str(exc))
    return None, "; ".join(reasons)
