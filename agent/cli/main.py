"""The research-loop command line: the typer app, its callback, and every command registered in the order
`research-loop --help` lists them; the commands themselves live in run, study and review."""

from __future__ import annotations

import typer

from agent.cli import review, run, study

app = typer.Typer(
    name="research-loop",
    help="Turn a research idea into a tuned, verified and reviewable code change.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """research-loop: idea -> plan -> patch -> Optuna studies -> report -> your approval.

    Every number in a report comes from a trial stored in the run's Optuna storage.
    """


app.command()(run.tasks)
app.command()(run.plan)
app.command()(study.study)
app.command()(run.run)
app.command()(run.resume)
app.command()(run.report)
app.command("list")(review.list_runs)
app.command()(study.worker)
app.command()(review.approve)
app.command()(review.reject)
app.command()(review.show)
app.command()(review.serve)
app.command()(review.export)


if __name__ == "__main__":
    app()
