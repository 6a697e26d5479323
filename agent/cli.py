"""The research-loop command line. The only module that prints to the terminal."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from experiments import registry

app = typer.Typer(
    name="research-loop",
    help="Turn a research idea into a tuned, verified and reviewable code change.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: how every refusal ends."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def main() -> None:
    """research-loop: idea -> plan -> patch -> Optuna studies -> report -> your approval.

    Every number in a report comes from a trial stored in the run's Optuna storage.
    """


@app.command()
def tasks() -> None:
    """List the registered tasks: script, data, metric and its direction, default hyperparameters."""
    table = Table(title="research-loop tasks")
    for column in ("task", "data", "metric", "defaults"):
        table.add_column(column, overflow="fold")
    for name in registry.names():
        task = registry.get(name)
        defaults = ", ".join(f"{k}={v}" for k, v in task.defaults.items())
        table.add_row(name, task.data, f"{task.metric.name} ({task.metric.direction})", defaults)
    console.print(table)
