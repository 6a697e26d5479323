"""`python -m agent.cli`: the same app as the `research-loop` command."""

from agent.cli.main import app

app()
