"""The command line: `research-loop` and its commands, grouped by stage.

- `main`: the typer app, its callback, and the registration of every command
- `review`: list, show, approve, reject, serve and export: reading and deciding on runs
- `run`: tasks, plan, run, resume and report, with the task and storage checks
- `live`: the live view of a run in progress, and driving a run to its end under it
- `study`: study and worker, the commands that run Optuna studies directly
- `tables`: everything printed: the consoles, refusals, tables, JSON and summaries
"""

from agent.cli.main import app

__all__ = ["app"]
