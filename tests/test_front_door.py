"""`research-loop run ... | cat`: every path and command whole on one line, library warnings in the run's log
file instead of the terminal, and a Reproducibility command that parses and re-runs when pasted."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from report_lint import lint

from agent import runs
from agent.cli import app
from agent.report import render as reporting

IDEA = "Does dropout help a small MLP on the breast cancer table? (it's 'quick')"


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """A real small run with stdout and stderr piped, under a reports path longer than a terminal line."""
    reports = tmp_path_factory.mktemp("front") / ("a-reports-folder-whose-name-is-longer-than-a-line-" * 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_LOOP_") and k != "COLUMNS"}
    env |= {
        "RESEARCH_LOOP_REPORTS_DIR": str(reports),
        "RESEARCH_LOOP_CONFIG": str(reports.parent / "none.toml"),
    }
    cmd = [sys.executable, "-m", "agent.cli", "run", IDEA, "--trials", "2", "--seeds", "2", "--rounds", "1",
           "--workers", "2", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=reports.parent, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done, runs.all_folders(reports)[0]


def test_the_reproducibility_command_reruns_when_pasted_into_a_shell(piped):
    """The command as the report prints it, pasted into bash from the folder the run started in."""
    _, folder = piped
    command = json.loads((folder / reporting.DATA).read_text())["repro"]["command"]
    reports = folder.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_LOOP_") and k != "COLUMNS"}
    env |= {
        "RESEARCH_LOOP_REPORTS_DIR": str(reports),
        "RESEARCH_LOOP_CONFIG": str(reports.parent / "none.toml"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # where research-loop is
    }
    again = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, cwd=reports.parent, timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = next(f for f in runs.all_folders(reports) if f != folder)
    assert json.loads((rerun / reporting.DATA).read_text())["repro"]["command"] == command


def test_a_piped_run_keeps_every_path_and_command_on_one_line(piped):
    done, folder = piped
    lines = done.stdout.splitlines()
    assert len(str(folder)) > 120
    for whole in (
        f"run folder: {folder}",
        f"report: {folder / reporting.MARKDOWN}",
        f"research-loop approve {folder.name}",
        f"research-loop reject {folder.name} --reason '...'",
    ):
        assert any(whole in line for line in lines), f"{whole!r} is broken across lines"


def test_library_warnings_go_to_the_run_log_not_the_terminal(piped):
    done, folder = piped
    assert "Warning" not in done.stdout + done.stderr
    assert (folder / runs.LOG_FILE).is_file()


def test_the_reproducibility_command_parses_as_pasted(piped):
    _, folder = piped
    command = json.loads((folder / reporting.DATA).read_text())["repro"]["command"]
    program, *args = shlex.split(command)
    assert program == "research-loop" and args[:2] == ["run", IDEA]
    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    run.make_context("run", args[1:])  # a UsageError here: the pasted command would fail
    with pytest.raises(Exception, match="unexpected extra argument"):  # typer vendors its own click
        run.make_context("run", command.split()[2:])


def test_a_run_with_overrides_states_only_what_it_ran(piped):
    _, folder = piped
    assert lint(folder) == []
    assert "explore" not in (folder / "plan.md").read_text(), "one round leaves no round to explore in"
