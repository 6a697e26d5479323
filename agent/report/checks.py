"""Honesty guards a report must pass before it is rendered.

A report is only as good as the link between its numbers and the trials that produced them, so before anything
is drawn: the results file is read back against the Optuna storage it names (a multi-objective study's Pareto
front too), the selected candidate is shown to come from the tuning trials on the validation split (never from
a run that saw the held-out split), and the metric's direction is the task registry's. Any break is a
`ReportError` naming what broke; nothing is rendered.
Trials whose metrics are identical although their hyperparameters differ are not an error but a flag.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from agent.config import Settings
from agent.results import ArmResult
from experiments import registry
from experiments import storage as storages
from experiments.records import Metric, StudyResult, TrialRecord
from experiments.results import to_record
from experiments.runner import SPEC_ATTR, workspace_sha256
from experiments.tuning import pareto_front

IDENTICAL_DIGITS = 12
TEST_PREFIX = "test_"


class ReportError(ValueError):
    """The run cannot be reported honestly; the message says why and what to do."""


def fingerprint(record: TrialRecord) -> str:
    """What must agree between a trial in results.json and the same trial in storage (floats exactly)."""
    fields = (record.number, record.state, record.value, record.params, record.metrics, record.seed)
    fields += (record.curve, record.confusion)  # what the learning curves and confusion matrix draw
    fields += (record.measured,)  # what the secondary objectives compare
    return json.dumps(fields, sort_keys=True, default=repr)


def storage_url(folder: Path, recorded: str, settings: Settings) -> tuple[str | None, str]:
    """The URL to read the run's trials back from, or None and why it cannot be read.

    A journal file inside the run folder wins (the run folder may have moved since). A database URL is stored
    without its password, so the configured storage is used when it is the same database.
    """
    journal = folder / storages.JOURNAL_FILE
    if journal.is_file():
        return str(journal), f"the run's journal file {storages.JOURNAL_FILE}"
    if not storages.is_rdb(recorded):
        return None, f"the journal file {recorded} is not in the run folder"
    if settings.storage and storages.redact(settings.storage) == recorded:
        return settings.storage, storages.redact(settings.storage)
    if "***" not in recorded:
        return recorded, recorded
    return None, f"{recorded} needs its password: pass it with --storage or RESEARCH_LOOP_STORAGE"


def _stored_studies(url: str, run_id: str) -> dict[str, optuna.Study]:
    try:
        storage = storages.open_storage(url)
        names = [n for n in storages.study_names(storage) if n.startswith(run_id)]
    except storages.StorageUnavailable as exc:
        raise ReportError(f"cannot read the run's storage: {exc}") from None
    return {n: optuna.load_study(study_name=n, storage=storage) for n in names}


def _matches(stored: list[FrozenTrial], records: list[TrialRecord]) -> bool:
    return [fingerprint(to_record(t)) for t in stored] == [fingerprint(r) for r in records]


def verify_storage(
    url: str,
    run_id: str,
    folder: Path,
    studies: list[StudyResult],
    evaluations: dict[str, list[TrialRecord]],
) -> list[str]:
    """Check every trial in results.json against storage; return the names of the studies read.

    `evaluations` are the fixed-hyperparameter runs (baseline, final) by role; they may sit in studies named
    by whoever ran them, so each must equal, trial for trial, some stored study of this run.
    """
    stored = _stored_studies(url, run_id)
    trials = {name: s.get_trials(deepcopy=False) for name, s in stored.items()}
    for result in studies:
        if result.study_name not in stored:
            raise ReportError(f"study {result.study_name!r} of results.json is not in the run's storage")
        study = stored[result.study_name]
        stored_direction = study.directions[0].name.lower()  # the metric is the first of several objectives
        if stored_direction != result.metric.direction:
            raise ReportError(
                f"study {result.study_name!r} was stored to {stored_direction} but results.json "
                f"says {result.metric.direction}"
            )
        if not _matches(trials[result.study_name], result.trials):
            raise ReportError(
                f"the trials of {result.study_name!r} in results.json differ from the stored ones; "
                "results.json was edited or belongs to another run"
            )
        if result.pareto != pareto_front(study):
            raise ReportError(
                f"the Pareto front of {result.study_name!r} in results.json (trials {result.pareto}) is not "
                f"the front of its stored trials ({pareto_front(study)}); results.json was edited or is stale"
            )
        seen = [t.number for t in trials[result.study_name] if t.user_attrs.get("ticket", {}).get("holdout")]
        if seen:
            raise ReportError(
                f"leakage: tuning trials {seen} of {result.study_name!r} ran on the held-out split; "
                "a candidate selected among them cannot be reported"
            )
    for role, records in evaluations.items():
        if not records:
            continue
        name = next((n for n, t in trials.items() if _matches(t, records)), None)
        if name is None:
            raise ReportError(f"the {role} runs in results.json are not in the run's storage")
        if role == "baseline":
            _check_unchanged(stored[name], folder / "baseline")
    return sorted(stored)


def _check_unchanged(study: optuna.Study, code: Path) -> None:
    """The baseline copy shown as 'Original' must be the code the baseline ran."""
    recorded = study.user_attrs.get(SPEC_ATTR, {}).get("patch_sha256", "")
    if recorded and code.is_dir() and workspace_sha256(code) != recorded:
        raise ReportError(f"{code} changed after the baseline ran; its code is no longer what was measured")


def check_direction(task: str, metrics: Iterable[tuple[str, Metric | None]]) -> None:
    """Each named metric must be the task registry's metric, in the registry's direction."""
    if task not in registry.TASKS:
        return
    truth = registry.get(task).metric
    for where, metric in metrics:
        if metric is not None and (metric.name, metric.direction) != (truth.name, truth.direction):
            raise ReportError(
                f"{where} says {metric.name} should be {metric.direction}d, but task {task!r} defines "
                f"{truth.name} ({truth.direction}); the report refuses a flipped metric"
            )


def check_selection(
    best: TrialRecord | None, tuning: list[TrialRecord], final: list[TrialRecord], baseline: list[TrialRecord]
) -> None:
    """The candidate is a tuning trial chosen on validation, and the final runs are of that candidate."""
    leaked = [t.number for t in tuning if any(k.startswith(TEST_PREFIX) for k in t.metrics)]
    if leaked:
        raise ReportError(
            f"leakage: tuning trials {leaked} recorded held-out test metrics; selection must see validation only"
        )
    if best is None:
        if final:
            raise ReportError("results.json has final runs but no selected candidate")
        return
    if any(k.startswith(TEST_PREFIX) for k in best.metrics):
        raise ReportError(
            f"leakage: the selected candidate (trial {best.number}) was evaluated on the held-out split; "
            "it must be selected among tuning trials on validation"
        )
    if fingerprint(best) not in {fingerprint(t) for t in tuning}:
        raise ReportError(
            f"the selected candidate (trial {best.number}, value {best.value}) is not one of the tuning trials"
        )
    strays = [r.seed for r in final if r.params != best.params]
    if strays:
        raise ReportError(
            f"the final runs for seeds {strays} are not of the selected candidate's hyperparameters"
        )
    if final and {r.seed for r in final} != {r.seed for r in baseline}:
        raise ReportError("the candidate and the baseline did not run over the same seeds")


def check_compared_at(arms: list[ArmResult], compared_at: dict[str, Any]) -> None:
    """Arms said to be compared at the same shared values were all re-run at exactly those values."""
    for arm in arms:
        off = sorted({k for r in arm.final for k, v in compared_at.items() if r.params.get(k) != v})
        if off:
            raise ReportError(
                f"results.json says the arms were compared at the same {', '.join(off)}, but arm "
                f"{arm.name!r} was re-run at other values"
            )


def metric_key(metrics: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """Metrics rounded to IDENTICAL_DIGITS significant digits: equal keys mean equal to many digits."""
    return tuple(sorted((k, float(f"{v:.{IDENTICAL_DIGITS}g}")) for k, v in metrics.items()))


def identical_groups(
    trials: Iterable[tuple[str, TrialRecord]],
) -> list[list[tuple[str, TrialRecord]]]:
    """Groups of completed trials whose metrics all agree to many digits although their parameters differ."""
    groups: dict[tuple[Any, ...], list[tuple[str, TrialRecord]]] = {}
    for label, trial in trials:
        if trial.state == "COMPLETE" and trial.metrics:
            groups.setdefault(metric_key(trial.metrics), []).append((label, trial))
    return [
        members
        for members in groups.values()
        if len({repr(sorted(t.params.items())) for _, t in members}) > 1
    ]
