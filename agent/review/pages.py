"""What the pages of `research-loop serve` show, read from a run folder; the web app only renders these.

Each value comes through the function the CLI uses for the same thing (`runs.load`, `reporting.load_data` and
`to_html_body`, `review.shown_patch`, `review.decisions`, the run's Optuna storage as `loop.storage_url` finds
it), so the page never says something `list`, `show` or the report does not. Nothing here writes a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import optuna
from pydantic import Field

from agent import runs
from agent.config import Settings
from agent.loop import drive as loop
from agent.report import render as reporting
from agent.report.data import ReportData
from agent.review import review
from agent.schemas import CheckResult, Decision, RunInfo, utcnow
from experiments import results
from experiments import storage as storages
from experiments.records import Model

_COUNTS = {"complete", "pruned", "failed", "running", "waiting", "best"}


class DiffLine(Model):
    """One line of a unified diff, with what it is, so the template can colour it."""

    kind: Literal["meta", "hunk", "add", "remove", "context"]
    text: str


def diff_lines(diff: str) -> list[DiffLine]:
    def kind(line: str) -> str:
        if line.startswith(("+++", "---", "\\")):
            return "meta"
        return {"@": "hunk", "+": "add", "-": "remove"}.get(line[:1], "context")

    return [DiffLine(kind=kind(line), text=line) for line in diff.splitlines()]


class PatchView(Model):
    """The patch `research-loop show` prints: the final one once measured, else the proposed one."""

    final: bool
    target: str
    rationale: str
    checks: list[CheckResult]
    lines: list[DiffLine]


class StudyProgress(Model):
    label: str
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best: float | None = None


class RunProgress(Model):
    """Where a run is, read from run.json and its Optuna storage while its own process writes them."""

    status: str
    stage: str
    elapsed_s: float
    studies: list[StudyProgress] = Field(default_factory=list)
    note: str = ""

    @property
    def live(self) -> bool:
        return self.status in runs.LIVE


class RunPage(Model):
    info: RunInfo
    report: ReportData | None = None
    report_html: str = ""
    report_note: str = ""
    patch: PatchView | None = None
    patch_note: str = ""
    decision: Decision | None = None
    ledger_note: str = ""
    progress: RunProgress | None = None
    storage: str | None = Field(default=None, description="the run's storage, when it exists to be opened")


def storage_of(folder: Path, info: RunInfo, settings: Settings) -> str | None:
    """The run's storage URL, or None where there is none yet: a journal file is never created by a reader."""
    try:
        url = loop.storage_url(folder, info, settings)
    except loop.LoopError:
        return None
    return url if storages.is_rdb(url) or Path(url).is_file() else None


def progress(folder: Path, settings: Settings) -> RunProgress:
    info = runs.load(folder)
    out = RunProgress(
        status=runs.shown_status(info), stage=info.stage, elapsed_s=(utcnow() - info.created).total_seconds()
    )
    url = storage_of(folder, info, settings)
    if url is None:
        out.note = "no trial stored yet"
        return out
    try:
        storage = storages.open_storage(url)
        names = [n for n in storages.study_names(storage) if n.startswith(f"{info.run_id}-")]
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.get_trials(deepcopy=False)
            p = results.progress(study, len(trials), time.monotonic(), trials)
            out.studies.append(
                StudyProgress(label=name.removeprefix(f"{info.run_id}-"), **p.model_dump(include=_COUNTS))
            )
    except storages.StorageUnavailable as exc:
        out.note = str(exc)
    return out


def run_page(folder: Path, settings: Settings, img: Callable[[str], str]) -> RunPage:
    """Everything the run page shows; `img` turns a plot's file name into the URL that serves it."""
    info = runs.load(folder)
    page = RunPage(info=info, storage=storage_of(folder, info, settings))
    if (folder / reporting.DATA).is_file():
        try:
            page.report = reporting.load_data(folder / reporting.DATA)
            page.report_html = reporting.to_html_body(page.report, img)
        except reporting.ReportError as exc:
            page.report_note = str(exc)
    elif runs.shown_status(info) in runs.LIVE:
        page.report_note = "the report is written when the run finishes"
    else:
        page.report_note = f"no report yet: `research-loop report {info.run_id}` renders it"
    try:
        record, patch = review.shown_patch(folder)
        page.patch = PatchView(
            final=record.final is not None,
            target=str(record.target),
            rationale=patch.rationale,
            checks=patch.checks,
            lines=diff_lines(patch.diff),
        )
    except review.Refused as exc:
        page.patch_note = str(exc)
    try:
        page.decision = decision_of(folder, info.run_id)
    except review.Refused as exc:
        page.ledger_note = str(exc)
    if runs.shown_status(info) in runs.LIVE:
        page.progress = progress(folder, settings)
    return page


def decision_of(folder: Path, run_id: str) -> Decision | None:
    """The run's decision in the ledger; raises review.Refused when the ledger cannot be read."""
    return next((d for d in review.decisions(review.ledger_path(folder)) if d.run_id == run_id), None)
