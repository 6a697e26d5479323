"""`research-loop list`: every run under the reports folder with its gain, its report's conclusion and its
decision from the ledger.

It belongs to the review stage because it reads the decisions ledger (`review.decisions`), which the report
stage, coming before review, cannot import.
"""

from __future__ import annotations

from pathlib import Path

from agent import runs
from agent.analyse.verdict import fmt_p, signed
from agent.report.checks import ReportError
from agent.report.render import DATA, load_data
from agent.report.studies import load_results
from agent.results import RunResult
from agent.review import review
from agent.schemas import Decision, RunInfo
from experiments.records import Comparison, Model


class RunRow(Model):
    """One line of `research-loop list`."""

    run_id: str
    idea: str
    status: str
    metric: str
    gain: str
    conclusion: str
    decision: str


def _comparison(folder: Path, info: RunInfo) -> tuple[str, Comparison | None]:
    try:
        results = load_results(folder, info)
    except ReportError:
        return "unreadable results", None
    if results is None:
        return "", None
    metric = results.plan.metric if isinstance(results, RunResult) else results.metric
    return f"{metric.name} ({metric.direction})", results.comparison


def _conclusion(folder: Path) -> str:
    if not (folder / DATA).is_file():
        return "not reported"
    try:
        data = load_data(folder / DATA)
    except ReportError:
        return "unreadable report"
    # a run with arms answers its question with their verdicts; the patch's gain on the defaults is not it
    if data.comparisons:
        return "; ".join(
            f"{c.treatment}{f' vs {c.control}' if c.kind == 'head-to-head' else ''}: {c.verdict}"
            for c in data.comparisons
        )
    return data.verdict.outcome


def _decision(decision: Decision | None, status: str) -> str:
    if decision is None:
        return status if status in ("approved", "rejected") else "pending"
    reason = f": {decision.reason}" if decision.reason else ""
    return f"{decision.action.removesuffix('e')}ed {decision.at:%Y-%m-%d}{reason}"


def overview(reports_dir: Path) -> list[RunRow]:
    """Every run under reports_dir, oldest first; raises review.Refused if the decisions ledger is corrupt."""
    ledger = {d.run_id: d for d in review.decisions(reports_dir / review.LEDGER)}
    rows = []
    for folder in runs.all_folders(reports_dir):
        try:
            info = runs.load(folder)
        except runs.CorruptRun:
            rows.append(RunRow(run_id=folder.name, idea="", status="corrupt run.json", metric="", gain="",
                               conclusion="", decision=""))  # fmt: skip
            continue
        metric, c = _comparison(folder, info)
        gain = ""
        if c is not None:
            gain = f"{signed(c.difference)} (p={fmt_p(c.p_value)}, {c.n_seeds} seeds)"
        rows.append(
            RunRow(
                run_id=info.run_id,
                idea=info.idea or f"{info.kind} of {info.task or 'a script'}",
                status=runs.shown_status(info),
                metric=metric,
                gain=gain,
                conclusion=_conclusion(folder),
                decision=_decision(ledger.get(info.run_id), info.status),
            )
        )
    return rows
