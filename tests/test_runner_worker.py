"""`research-loop worker`: joining a run from another machine's copy of its folder, and refusing other code."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from io import BytesIO
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from faults import SCRIPT, Lab, tickets
from optuna.trial import TrialState
from typer.testing import CliRunner

from agent import runs
from agent.cli import app
from agent.schemas import RunInfo
from experiments import runner, worker
from experiments import storage as storages


def _run_folder(reports: Path, run_id: str, storage: str) -> tuple[Path, Lab]:
    folder = runs.create(reports, RunInfo(run_id=run_id, kind="study", storage=storage))
    return folder, Lab(folder, storage or str(folder / storages.JOURNAL_FILE))


def _worker_pids(study: optuna.Study) -> set[int]:
    return {
        int(t.system_attrs["worker"].rpartition(":")[2]) for t in study.trials if "worker" in t.system_attrs
    }


def _pids_logged(log: Path) -> set[int]:
    """Worker processes that ran at least one trial, from their closing lines ("worker PID: ran N trials")."""
    lines = log.read_text().splitlines() if log.is_file() else []
    return {int(line.split()[1].rstrip(":")) for line in lines if " ran " in line and " ran 0 " not in line}


def _dashboard_studies(url: str) -> list[str]:
    """What optuna-dashboard lists for a storage, through its own WSGI app and storage parsing."""
    from optuna_dashboard import wsgi

    environ: dict = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET", "wsgi.input": BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi(url)(environ, lambda s, headers, exc=None: status.append(s)))
    assert status[0].startswith("200"), status
    return [s["study_name"] for s in json.loads(body)["study_summaries"]]


def test_a_second_machine_joins_a_running_study_from_a_copy_of_the_run_folder(
    tmp_path, postgres_url, monkeypatch
):
    run_id = f"r-{uuid.uuid4().hex[:12]}"
    folder, lab = _run_folder(tmp_path / "here", run_id, postgres_url)
    name = lab.create(tickets(40, sleep_s=0.1), name=f"{run_id}-tune")
    elsewhere = (
        tmp_path / "elsewhere" / run_id
    )  # the other machine: the project, and a copy of the run folder
    shutil.copytree(folder, elsewhere)
    coordinator = threading.Thread(target=runner.execute, args=(postgres_url, name, lab.workspace))
    coordinator.start()
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(elsewhere.parent))
    result = CliRunner().invoke(app, ["worker", run_id, "--wait", "0"])
    coordinator.join(timeout=300)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name=name, storage=storages.open_storage(postgres_url))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 40
    here, there = _pids_logged(folder / "workers.log"), _pids_logged(elsewhere / "workers.log")
    assert here and there and here | there == _worker_pids(study), "both machines' workers ran trials"
    assert name in _dashboard_studies(postgres_url)


def test_the_worker_command_refuses_a_copy_whose_code_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    folder, lab = _run_folder(tmp_path / "reports", "r1", "")
    lab.create(tickets(3), name="r1-tune")
    with (lab.workspace / SCRIPT.name).open("a") as f:
        f.write("\n# edited on this machine only\n")
    result = CliRunner().invoke(app, ["worker", "r1", "--wait", "0"])
    assert result.exit_code == 2
    assert "no folder in" in result.output and "holds the code study 'r1-tune' runs" in result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert not (folder / "workers.log").exists(), "no worker was started"


def test_a_worker_with_other_code_stops_the_study_with_its_reason(tmp_path):
    lab = Lab(tmp_path, str(tmp_path / storages.JOURNAL_FILE))
    name = lab.create(tickets(2))
    other = tmp_path / "other"
    shutil.copytree(lab.workspace, other)
    (other / SCRIPT.name).write_text(
        (other / SCRIPT.name).read_text().replace("sleep_s = 0.05", "sleep_s = 0.5")
    )
    with pytest.raises(runner.RunnerError, match=r"holds different code .* copy the run's workspace folder"):
        runner.execute(lab.url, name, other)
    assert {t.state for t in lab.trials(name)} == {TrialState.WAITING}, "nothing ran, nothing was lost"


def test_the_worker_command_leaves_when_nothing_is_waiting_and_the_dashboard_reads_the_journal(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    folder, lab = _run_folder(tmp_path / "reports", "r2", "")
    lab.run(tickets(2), name=lab.create(tickets(2), name="r2-baseline"))
    result = CliRunner().invoke(app, ["worker", "r2", "--wait", "0"])
    assert result.exit_code == 0, result.output
    assert "done: 0 studies" in result.output
    assert _dashboard_studies(str(folder / storages.JOURNAL_FILE)) == ["r2-baseline"]


def test_the_recorder_stores_results_in_order_and_raises_a_failed_write():
    stored: list[int] = []
    recorder = worker.Recorder()
    for i in range(20):
        recorder.record(lambda i=i: stored.append(i))

    def storage_gone() -> None:
        raise storages.StorageUnavailable("database went away")

    recorder.record(storage_gone)
    with pytest.raises(storages.StorageUnavailable, match="went away"):
        recorder.close()
    assert stored == list(range(20))


def test_ticket_queues_of_two_workers_take_every_ticket_once_and_find_retries_queued_later(tmp_path):
    study = optuna.create_study(storage=storages.open_storage(str(tmp_path / "s.journal")))
    for seed in range(5):
        study.enqueue_trial({}, user_attrs={"ticket": {"seed": seed}})
    first, second = worker.Tickets(study, 0, 2), worker.Tickets(study, 1, 2)
    taken = [first.pop().number, second.pop().number, first.pop().number, second.pop().number]
    assert taken == [0, 1, 2, 3], "workers started together take alternate tickets"
    assert first.pop().number == 4
    assert second.pop() is None, "a ticket the other worker took is skipped"
    study.enqueue_trial({}, user_attrs={"ticket": {"seed": 9}})
    retry = second.pop()
    assert retry.number == 5 and retry.user_attrs["ticket"]["seed"] == 9
    assert first.pop() is None
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 6


def test_the_recorder_waits_for_a_write_before_the_next_suggestion():
    recorder, stored = worker.Recorder(), threading.Event()

    def slow_write() -> None:
        threading.Event().wait(0.2)
        stored.set()

    recorder.record(slow_write)
    recorder.wait()
    assert stored.is_set()
    recorder.close()
