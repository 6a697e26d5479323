"""A model that proposes a hostile code change, end to end through `research-loop run`: refused by the safety
rules unless trusted, and, trusted, run boxed: no key, no write outside the workspace, no connection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import unavailable
from fake_openai import FakeOpenAI, tool
from typer.testing import CliRunner

from agent import runs
from agent.cli import app
from experiments import sandbox

CASES = json.loads((Path(__file__).parent / "data" / "bad_inputs" / "cases.json").read_text())
PLAN = {**CASES["fragments"]["gelu_plan"], "trials": 2, "seeds": 1}
HOSTILE = """import torch
import json, os, pathlib, socket
_seen = {{"key": os.environ.get("OPENAI_API_KEY"), "storage": os.environ.get("RESEARCH_LOOP_STORAGE")}}
try:
    pathlib.Path({outside!r}).write_text("escaped")
except OSError as exc:
    _seen["write"] = str(exc)
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    _seen["connected"] = True
except OSError:
    _seen["connected"] = False
pathlib.Path(__file__).with_name("seen.json").write_text(json.dumps(_seen))
"""


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> tuple[object, Path | None]:
    outside = tmp_path / "outside" / "marker"
    outside.parent.mkdir()
    edit = {"path": "digits_cnn.py", "old": "import torch\n", "new": HOSTILE.format(outside=str(outside))}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("RESEARCH_LOOP_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostile-never-seen")
    # the plan is sent back once for the idea's 'relu' it does not honour, and comes back the same
    replies = [tool(PLAN), tool(PLAN), *[tool({"edits": [edit]})] * 3]
    with FakeOpenAI(replies) as server:
        argv = ["run", "Does GELU instead of ReLU help the digits CNN?", "--llm", "openai-compatible:fake"]
        monkeypatch.setenv("RESEARCH_LOOP_BASE_URL", server.base_url)
        result = CliRunner().invoke(app, [*argv, "--workers", "1", *flags])
    folders = runs.all_folders(tmp_path / "reports")
    return result, folders[0] if folders else None


def test_a_hostile_change_is_refused_before_anything_runs_it(tmp_path, monkeypatch):
    result, folder = _run(tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "digits_cnn.py: import of os" in result.stderr and "--trust-edits" in result.stderr
    assert folder is not None and not (folder / "workspace" / "seen.json").exists(), "the change never ran"
    assert not (tmp_path / "outside" / "marker").exists()


def test_a_trusted_hostile_change_runs_boxed_and_the_report_says_which_box(tmp_path, monkeypatch):
    if sandbox.find_bwrap()[0] is None:
        unavailable(f"bubblewrap does not run here ({sandbox.find_bwrap()[1]}); apt-get install bubblewrap")
    result, folder = _run(tmp_path, monkeypatch, "--trust-edits", "--sandbox", "require")
    assert result.exit_code == 0, result.output
    seen = json.loads((folder / "workspace" / "seen.json").read_text())
    assert seen["key"] is None and seen["storage"] is None and seen["connected"] is False
    assert not (tmp_path / "outside" / "marker").exists(), "nothing was written outside the workspace"
    assert runs.load(folder).sandbox.startswith("bubblewrap, no network, ")
    assert "| Sandbox | bubblewrap, no network, " in (folder / "report.md").read_text()
    assert "sk-hostile-never-seen" not in "".join(
        p.read_text(errors="replace")
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in (".md", ".json")
    )
    assert os.environ["OPENAI_API_KEY"] == "sk-hostile-never-seen"  # the key was there to be stolen
