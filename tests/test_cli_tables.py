"""`tasks`, `list` and `show` piped and with --json: every name whole on one line, and pure JSON on stdout."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agent import runs
from agent.cli import app, tables
from agent.code import coder
from agent.schemas import CheckResult, CodePatch, RunInfo
from experiments import registry

ROOT = Path(__file__).resolve().parents[1]
TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


def hermetic_env(reports: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_LOOP_") and k not in TERMINAL_ENV
    }
    env["RESEARCH_LOOP_CONFIG"] = str(reports.parent / "absent.toml")
    env["RESEARCH_LOOP_REPORTS_DIR"] = str(reports)
    return env


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A reports dir holding one finished `study` run (tabular-mlp, 2 trials, 2 seeds), made once."""
    reports = tmp_path_factory.mktemp("tables") / "reports"
    with pytest.MonkeyPatch.context() as mp:
        for name in TERMINAL_ENV:
            mp.delenv(name, raising=False)
        for name, value in hermetic_env(reports).items():
            mp.setenv(name, value)
        mp.chdir(reports.parent)
        result = CliRunner().invoke(
            app,
            [
                "study",
                "--task",
                "tabular-mlp",
                "--trials",
                "2",
                "--seeds",
                "2",
                "--workers",
                "2",
                "--device",
                "cpu",
            ],
        )
        assert result.exit_code == 0, result.output
        yield reports


@pytest.fixture
def env(reports: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in hermetic_env(reports).items():
        monkeypatch.setenv(name, value)
    for name in TERMINAL_ENV:
        monkeypatch.delenv(name, raising=False)
    return reports


def study_run(reports: Path) -> Path:
    (folder,) = [f for f in runs.all_folders(reports) if runs.load(f).kind == "study"]
    return folder


def piped(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process with stdout a pipe, as in `research-loop ... | cat`, and a narrow COLUMNS."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "40"},
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=120,
    )


def test_tasks_piped_keeps_every_task_name_whole_on_one_line(tmp_path):
    proc = piped("tasks", env=hermetic_env(tmp_path / "reports"))
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.splitlines()
    assert header.split("\t") == ["task", "data", "metric", "defaults"]
    # the child process knows only the built-in tasks; this one may hold scripts other tests registered
    built_in = [n for n in registry.names() if not n.startswith("script:")]
    assert [line.split("\t")[0] for line in lines] == built_in
    for line, name in zip(lines, built_in, strict=True):
        task = registry.get(name)
        cells = line.split("\t")
        assert cells[1:3] == [task.data, f"{task.metric.name} ({task.metric.direction})"]
        assert all(f"{k}={v}" in cells[3] for k, v in task.defaults.items())


def test_tasks_in_a_narrow_terminal_never_cuts_a_task_name(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(
        tables, "console", Console(file=screen, force_terminal=True, width=70, color_system=None)
    )
    result = CliRunner().invoke(app, ["tasks"])
    assert result.exit_code == 0, result.output
    text = screen.getvalue()
    assert "┃ task" in text  # the rich table, not the piped form
    for name in registry.names():
        assert name in text, f"{name!r} cut across lines:\n{text}"


def test_tasks_json_is_pure_json_listing_every_registered_task_with_its_metric():
    result = CliRunner().invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0 and result.stderr == "", result.output
    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=result.stdout, capture_output=True, text=True, check=False
    )
    assert tool.returncode == 0, tool.stderr
    listed = json.loads(result.stdout)
    assert [t["name"] for t in listed] == registry.names()
    for entry in listed:
        task = registry.get(entry["name"])
        assert entry == {
            "name": task.name,
            "description": task.description,
            "data": task.data,
            "model": task.model,
            "metric": {"name": task.metric.name, "direction": task.metric.direction},
            "defaults": task.defaults,
        }


def test_list_json_names_the_finished_run_with_its_folder(env):
    folder = study_run(env)
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    (row,) = [r for r in listed if r["run_id"] == folder.name]
    assert row["status"] == "finished" and row["metric"].startswith("accuracy")
    assert row["gain"] and row["conclusion"]  # the study compared on the held-out split
    assert Path(row["folder"]) == folder
    assert set(row) == {"run_id", "idea", "status", "metric", "gain", "conclusion", "decision", "folder"}


def test_list_piped_keeps_the_run_id_whole_on_one_line(env):
    folder = study_run(env)
    result = CliRunner().invoke(app, ["list"])  # CliRunner's stdout is not a terminal either
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["run", "idea", "status"]
    rows = [line.split("\t") for line in lines]
    assert folder.name in [r[0] for r in rows]
    assert all(len(r) == 7 for r in rows)


def test_list_json_with_no_runs_is_an_empty_list(tmp_path, monkeypatch):
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("RESEARCH_LOOP_CONFIG", str(tmp_path / "absent.toml"))
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_show_json_on_a_study_run_without_a_patch_says_so_in_one_line_and_fails(env):
    folder = study_run(env)
    result = CliRunner().invoke(app, ["show", folder.name, "--json"])
    assert result.exit_code != 0
    assert result.stdout == ""  # nothing a JSON reader could mistake for a patch
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds no patch" in lines[0] and "Traceback" not in result.output


def make_patched_run(reports: Path, final: bool) -> tuple[Path, coder.PatchRecord]:
    info = RunInfo(run_id=runs.new_run_id(f"patched {final}"), kind="run", status="awaiting_approval")
    folder = runs.create(reports, info)
    proposed = CodePatch(
        diff="--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-epochs = 20\n+epochs = 40\n",
        rationale="train longer [bold]now[/]",
        files={"train.py": "epochs = 40\n"},
        checks=[
            CheckResult(name="compiles", passed=True),
            CheckResult(name="preflight", passed=False, detail="x"),
        ],
        sha256="abc",
    )
    done = proposed.model_copy(update={"diff": proposed.diff + "+lr = 0.1\n", "sha256": "def"})
    record = coder.PatchRecord(
        script="train.py",
        target=reports.parent / "src" / "train.py",
        original="epochs = 20\n",
        original_sha256="0" * 64,
        metric="mse",
        patch=proposed,
        final=done if final else None,
        final_params={"lr": 0.1} if final else {},
    )
    coder.save_record(folder, record)
    return folder, record


@pytest.mark.parametrize("final", [True, False])
def test_show_json_prints_the_patch_as_patch_json_holds_it_with_its_checks(env, final):
    folder, record = make_patched_run(env, final)
    result = CliRunner().invoke(app, ["show", folder.name, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = (record.final or record.patch).model_dump(mode="json")
    assert shown["patch"] == expected
    assert shown["patch"]["checks"][1] == {"name": "preflight", "passed": False, "detail": "x"}
    assert shown["patch"]["rationale"] == "train longer [bold]now[/]"  # raw text, never rendered markup
    assert shown["stage"] == ("final" if final else "proposed")
    assert shown["run_id"] == folder.name and shown["target"] == str(record.target)
    assert shown["final_params"] == record.final_params


def test_a_run_whose_process_died_lists_as_interrupted_and_a_live_one_cannot_be_resumed(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("RESEARCH_LOOP_CONFIG", str(tmp_path / "absent.toml"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    folders = {}
    for name, pid in (("dead", dead.pid), ("alive", os.getpid())):
        info = RunInfo(run_id=runs.new_run_id(name), kind="run", status="running", stage="round 1")
        runs.claim(info)
        info.owner = f"{socket.gethostname()}:{pid}"
        folders[name] = runs.create(tmp_path / "reports", info)
    listed = {
        r["run_id"]: r["status"] for r in json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout)
    }
    assert listed == {folders["dead"].name: "interrupted", folders["alive"].name: "running"}
    refused = CliRunner().invoke(app, ["resume", folders["alive"].name])
    assert refused.exit_code == 2 and "is still running (process" in refused.stderr
