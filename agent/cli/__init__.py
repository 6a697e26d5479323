"""The command line: `research-loop` and its commands, grouped by stage.

- `main`: the typer app and its commands
"""

from agent.cli.main import app

__all__ = ["app"]
