"""A report lint: every count, range, phase, round, data set, status and path that plan.md, report.md,
report.html and report.json state, checked against what the run stored (run.json, results.json).

`lint(folder)` returns one line per sentence that contradicts the stored run; the tests of each run shape
assert it returns none, and tests/test_report_lint.py that a planted stale sentence is caught.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import agent
from agent import runs
from agent.loop.arms import MATCHED
from agent.report import render as reporting
from agent.results import RunResult
from experiments import registry
from experiments.records import StudyResult

TEXTS = ("plan.md", reporting.MARKDOWN, reporting.HTML, reporting.DATA)


def _rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the rows of the markdown table whose header line starts with `heading` (the rule left out)."""
    if heading not in text:
        return []
    rows = []
    for line in text.split(heading, 1)[1].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows[1:]


def lint(folder: Path) -> list[str]:
    info = runs.load(folder)
    texts = {name: (folder / name).read_text() for name in TEXTS if (folder / name).is_file()}
    raw = json.loads((folder / "results.json").read_text())
    results = RunResult.model_validate(raw) if info.kind == "run" else StudyResult.model_validate(raw)
    report = texts[reporting.MARKDOWN]
    out = []
    stored = json.loads(texts[reporting.DATA])["status"]
    if stored != info.status:
        out.append(f"report.json says status {stored!r}, the run is {info.status!r}")
    here = [
        str(folder.resolve()),
        str(folder.resolve().parent),
        str(Path(agent.__file__).resolve().parents[1]),
    ]
    for name, text in texts.items():
        out += [f"{name} carries the absolute path {root}" for root in here if root in text]
    studies = (
        [(r.round, r.phase, s) for r in results.rounds for s in r.studies]
        if isinstance(results, RunResult)
        else [(1, "optimise", results)]
    )
    seeds = {len({r.seed for r in results.baseline if r.seed is not None})}
    if isinstance(results, RunResult):
        seeds |= {results.seeds_used, results.plan.budget.seeds}
    for name in ("plan.md", reporting.MARKDOWN):
        for n in re.findall(r"\b(\d+) seeds\b", texts.get(name, "")):
            if int(n) not in seeds:
                out.append(f"{name} says {n} seeds; the run used {sorted(seeds)}")
    line = next((x for x in report.splitlines() if x.startswith("Search space: ")), "")
    for _, phase, study in studies:
        if phase != MATCHED:
            out += [
                f"report.md's Search space does not state {p.name} {p.describe()}, which a study searched"
                for p in study.search_space
                if f"`{p.name}` {p.describe()}" not in line and f"{p.describe()} from round" not in line
            ]
    searched = {p.name for _, phase, s in studies if phase != MATCHED for p in s.search_space}
    baseline = next((r.params for r in results.baseline if r.params), {})
    for row in _rows(report, "| Hyperparameter | Baseline | Candidate | Searched |"):
        name = row[0].strip("`")
        if row[3] == "no" and name in searched:
            out.append(f"report.md marks {name} not searched; a study searched it")
        if name in baseline and row[1] != reporting._value(baseline[name]):
            out.append(f"report.md's baseline {name} is {row[1]}; its runs used {baseline[name]}")
    if isinstance(results, RunResult):
        out += _plan_lint(results, texts, report)
    return out


def _plan_lint(results: RunResult, texts: dict[str, str], report: str) -> list[str]:
    """What a loop run's plan says about its budget, phases, rounds, arms and data set."""
    plan, budget, out = results.plan, results.plan.budget, []
    ran = [r for r in results.rounds if r.phase != MATCHED]
    for name in ("plan.md", reporting.MARKDOWN):
        text = texts.get(name, "")
        for n in re.findall(r"- Trials: (\d+) per", text):
            if int(n) != budget.trials:
                out.append(f"{name} says {n} trials per arm or strategy; the budget was {budget.trials}")
        for n in re.findall(r"tuning trials in all\), in (\d+) rounds?", text):
            if int(n) != budget.rounds:
                out.append(f"{name} says {n} rounds; the run's budget was {budget.rounds}")
        for n in re.findall(r"\b(\d+) trials (?:of|each)\b", text):
            if int(n) != budget.trials:
                out.append(f"{name} says {n} trials of search; the budget was {budget.trials}")
        for row in _rows(text, "| # | Phase | Data | Trials | What |"):
            if int(row[3]) > 0 and row[1] not in {r.phase for r in ran}:
                out.append(f"{name} shows a {row[1]} phase with {row[3]} trials that never ran")
    for n in re.findall(r"^- Round (\d+) \(", report, re.M):
        if int(n) > len(ran):
            out.append(f"report.md names round {n}; {len(ran)} round(s) searched")
    dataset = plan.conditions.get("dataset")
    repro = next((x for x in report.splitlines() if x.startswith("| Data set | ")), "")
    if dataset is not None and not repro.startswith(f"| Data set | {dataset}"):
        out.append(f"report.md's Data set row is not {dataset}: {repro}")
    default = registry.get(plan.task).data if plan.task in registry.TASKS else None
    if dataset is not None and default and default in plan.objective:
        out.append(f"the Objective names {default}; the runs trained on {dataset}")
    if plan.arms:
        names = tuple(f"{a.name}: " for a in plan.arms)
        for heading in ("| Strategy | Trials |", "| Strategy | Trial |"):
            out += [
                f"report.md row {row[0]!r} under {heading!r} names no arm"
                for row in _rows(report, heading)
                if not row[0].startswith(names)
            ]
    for arm in re.findall(r"research-loop approve \S+ --arm (\S+?)`", report):
        if arm not in results.arm_variants:
            out.append(f"report.md offers arm {arm}, which has no variant")
    return out
