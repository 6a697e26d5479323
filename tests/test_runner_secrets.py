"""Planted secrets (a database password, API keys) never reach a run's files, its studies, or `ps`."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from pathlib import Path

import optuna
from fake_openai import FakeOpenAI, tool
from typer.testing import CliRunner

from agent.cli import app
from experiments import storage as storages

PG_SECRET = f"pg-{uuid.uuid4().hex}"
KEY_SECRETS = {"OPENAI_API_KEY": f"sk-{uuid.uuid4().hex}", "RESEARCH_LOOP_API_KEY": f"sk-{uuid.uuid4().hex}"}
SECRETS = [PG_SECRET, *KEY_SECRETS.values()]
SCRIPT = Path(__file__).parent / "data" / "cheap_train.py"


def _with_password(url: str) -> str:
    """The test server's URL with a password in it (trust authentication lets it in whatever it is)."""
    scheme, _, rest = url.partition("://")
    user, _, host = rest.rpartition("@")
    return f"{scheme}://{user.partition(':')[0] or 'postgres'}:{PG_SECRET}@{host}"


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _watch_command_lines(found: list[str], stop: threading.Event) -> None:
    """What `ps` would show while the run goes on: every process's command line."""
    while not stop.wait(0.1):
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                found += _leaks(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue


def _study_attrs(url: str, run_id: str) -> str:
    storage = storages.open_storage(url)
    dumped = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name.startswith(run_id):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            dumped.append(json.dumps([study.user_attrs, storage.get_study_system_attrs(study._study_id)]))
            dumped += [json.dumps([t.user_attrs, t.system_attrs], default=str) for t in study.trials]
    assert dumped, "the run stored its studies in the database"
    return "\n".join(dumped)


def test_no_planted_secret_reaches_the_run_folder_the_studies_or_ps(tmp_path, monkeypatch, postgres_url):
    for name, value in KEY_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("RESEARCH_LOOP_CONFIG", str(tmp_path / "absent.toml"))
    script = shutil.copy2(SCRIPT, tmp_path / "train.py")
    url = _with_password(postgres_url)
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_command_lines, args=(seen, stop), daemon=True)
    watcher.start()
    idea = "Tune the learning rate and dropout of my training script under a 4-trial budget"
    args = ["run", idea, "--script", str(script), "--trials", "4", "--seeds", "2", "--rounds", "1"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--storage", url])
    stop.set()
    watcher.join()
    assert result.exit_code == 0, result.output
    [folder] = (tmp_path / "reports").iterdir()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {"run.json", "plan.json", "report.md", "workers.log", "results.json"} <= {p.name for p in files}
    leaked = {str(p.relative_to(folder)): _leaks(p.read_bytes().decode(errors="replace")) for p in files}
    assert {k: v for k, v in leaked.items() if v} == {}
    assert _leaks(_study_attrs(postgres_url, folder.name)) == []
    assert _leaks(result.output) == []
    assert seen == [], "a secret showed in a process's command line"


def test_the_api_key_goes_to_the_llm_server_and_nowhere_else(tmp_path, monkeypatch):
    for name, value in KEY_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("RESEARCH_LOOP_CONFIG", str(tmp_path / "absent.toml"))
    plan = {"task": "digits-cnn", "search_space": [{"name": "dropout", "low": 0.0, "high": 0.5}]}
    with FakeOpenAI([tool(plan)]) as server:
        monkeypatch.setenv("RESEARCH_LOOP_BASE_URL", server.base_url)
        result = CliRunner().invoke(
            app, ["plan", "Does dropout help the digits CNN?", "--llm", "openai:gpt-4o"]
        )
    assert result.exit_code == 0, result.output
    assert server.headers[0]["authorization"] == f"Bearer {KEY_SECRETS['RESEARCH_LOOP_API_KEY']}"
    [folder] = (tmp_path / "reports").iterdir()
    for path in folder.rglob("*"):
        assert _leaks(path.read_text()) == [], path.name
    assert _leaks(result.output) == []
