"""Everything the command line prints: the consoles, refusals, tables, JSON, and a study's or
report's summary, so every command reads the same in a terminal and in a pipe."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent import config
from agent.plan import serving
from agent.report import render as reporting
from experiments.records import StudyResult

# piped or redirected output is read by programs and pasted from: rich must not break its lines at 80 columns,
# or a path or a command splits mid-word; a terminal wraps long lines itself
console = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
PIPED_EVERY_S = 30.0


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
    console.print(f"results: [bold]{folder / 'results.json'}[/]", highlight=False, soft_wrap=True)


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
    console.print(f"report: [bold]{markdown}[/]  (HTML: {html})", highlight=False, soft_wrap=True)


def print_prompt(messages: Sequence[Any], schema: str, settings: config.Settings) -> None:
    """A prompt as a model would get it, then its size: what `plan --show-prompt` prints (plain text, so the
    prompt's own brackets are never read as markup)."""
    for message in messages:
        typer.echo(f"----- {message.type} -----\n{message.content}\n")
    chars = sum(len(m.content) for m in messages)
    tokens = serving.prompt_tokens(messages)
    typer.echo(
        f"----- size -----\n{chars} characters in {len(messages)} messages, about {tokens} tokens "
        f"({serving.CHARS_PER_TOKEN} characters a token, measured with Qwen2.5-Coder's tokenizer); the schema "
        f"sent beside them (a tool's parameters or a response format): {len(schema)} characters, about "
        f"{serving.estimate_tokens(schema)} tokens; room kept for the answer: {settings.llm_answer_tokens} "
        "tokens (llm_answer_tokens)"
    )


@contextmanager
def waiting_for(what: str) -> Iterator[Callable[[float, int], None]]:
    """A progress line while a model answers: a spinner on stderr in a terminal, else a line every 30 s, so
    a slow local model is seen to be working and stdout keeps only the result."""
    if err.is_terminal:
        with err.status(f"waiting for {what}") as status:
            yield lambda s, n: status.update(f"waiting for {what}: {s:.0f} s, {n} tokens so far")
        return
    said = [0.0]

    def line(seconds: float, tokens: int) -> None:
        if seconds - said[0] >= PIPED_EVERY_S:
            said[0] = seconds
            err.print(f"still waiting for {what}: {seconds:.0f} s, {tokens} tokens so far", highlight=False)

    yield line
