"""Everything the command line prints: the consoles, refusals, tables, JSON, and a study's or
report's summary, so every command reads the same in a terminal and in a pipe."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent import config
from agent.report import render as reporting
from experiments.records import StudyResult

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: how every refusal ends."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(code)


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], whole: Sequence[str] = ()
) -> None:
    """Every table the CLI prints goes through here, so each reads the same in a terminal and in a pipe.

    In a terminal: a rich table whose first column (the name you type back) and the WHOLE columns never wrap,
    the rest folding to fit the window. Piped or redirected: plain tab-separated lines, a header first, then
    one line per row with every cell whole, whatever the width (tabs and line breaks inside a cell become
    spaces), for `grep`, `sort` and `cut -f`. Cells are plain text, never rich markup.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    if console.is_terminal:
        table = Table(title=title)
        for i, column in enumerate(columns):
            table.add_column(column, overflow="fold", no_wrap=i == 0 or column in whole)
        for row in rows:
            table.add_row(*map(escape, row))
        console.print(table)
        return
    for row in (list(columns), *rows):
        typer.echo("\t".join(re.sub(r"[\t\r\n]+", " ", cell) for cell in row))


def print_json(value: Any) -> None:
    """Machine-readable output: pure JSON on stdout and nothing else (no markup, no extra lines)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def print_study_summary(result: StudyResult, folder: Path) -> None:
    counts = result.counts()
    metric = f"{result.metric.name} ({result.metric.direction})"
    console.print(
        f"trials: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed"
        f"   wall time {result.cost.wall_s:.1f} s",
        highlight=False,
    )
    if result.best is None:
        console.print("[red]no trial completed: nothing to compare[/]")
    else:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in result.best.params.items())
        console.print(
            f"best validation {metric}: {result.best.value:.4f} (trial {result.best.number}: {params})"
        )
    base = [r.value for r in result.baseline if r.value is not None]
    if base:
        console.print(
            f"baseline validation {metric}: {sum(base) / len(base):.4f} mean over {len(base)} seeds"
        )
    console.print(f"results: [bold]{folder / 'results.json'}[/]", highlight=False)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_report(folder: Path, settings: config.Settings) -> None:
    """Render a run's report and say where it is and what it concluded; a report that fails a check is refused."""
    try:
        made = reporting.render(folder, settings)
    except reporting.ReportError as exc:
        fail(f"no report for {folder.name}: {exc}")
    print_conclusion(Path(made.data), made.markdown, made.html)


def print_conclusion(data: Path, markdown: Path | str, html: Path | str | None) -> None:
    """The report's computed conclusion, so the terminal never says something the report does not."""
    report = reporting.load_data(data)
    for c in report.comparisons:
        console.print(f"answer: [bold]{c.verdict}[/]  {escape(c.statement)}", highlight=False)
    outcome = report.verdict
    against = " (the patch's arm against the untuned defaults)" if report.candidate_arm else ""
    console.print(
        f"conclusion{against}: [bold]{outcome.outcome}[/]  {escape(outcome.summary)}", highlight=False
    )
    console.print(f"report: [bold]{markdown}[/]  (HTML: {html})", highlight=False)
