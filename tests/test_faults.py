"""Faults on real worker processes: signals, hangs, crashes, memory, and a database server going away.

Each scenario lives in tests/faults.py (bench/reliability.py counts the same ones); here each is asserted on.
"""

from __future__ import annotations

import faults
import pytest
from conftest import unavailable
from faults import Lab
from optuna.trial import TrialState

from experiments import sandbox
from experiments import storage as storages


def _workers(trials) -> set[str]:
    return {t.system_attrs["worker"] for t in trials if "worker" in t.system_attrs}


@pytest.fixture
def journal_lab(tmp_path) -> Lab:
    return Lab(tmp_path, str(tmp_path / storages.JOURNAL_FILE))


@pytest.fixture
def postgres_lab(tmp_path, postgres_url) -> Lab:
    return Lab(tmp_path, postgres_url)


@pytest.mark.parametrize("lab", ["journal_lab", "postgres_lab"])
def test_four_workers_finish_exactly_the_two_hundred_trials_asked_for(lab, request):
    outcome = faults.many_workers(request.getfixturevalue(lab), workers=4, trials=50 * 4)
    assert outcome.problems() == []
    assert len(outcome.trials) == 200 and outcome.finished == 200
    assert sorted(t.number for t in outcome.trials) == list(range(200))
    assert len(_workers(outcome.trials)) == 4, "all four workers should have taken tickets"


def test_a_worker_killed_mid_trial_has_its_trial_failed_and_retried(journal_lab):
    outcome = faults.worker_killed(journal_lab)
    assert outcome.problems() == []
    first, retry = outcome.attempts()[2]
    assert (
        first.state == TrialState.FAIL
        and first.user_attrs["error"] == "worker process died (killed by SIGKILL)"
    )
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["failed_trial"] == first.number
    assert retry.params == first.params, "the retry must run the same configuration"
    assert len(outcome.trials) == 7 and outcome.finished == 6


def test_a_worker_lost_on_another_machine_is_found_by_its_heartbeat(tmp_path, postgres_url):
    outcome = faults.heartbeat_lost(Lab(tmp_path, postgres_url))
    assert outcome.problems() == []
    first, retry = outcome.attempts()[0]
    assert (
        first.state == TrialState.FAIL and "error" not in first.user_attrs
    )  # failed by Optuna's heartbeat check
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["retry_history"] == [first.number]
    assert retry.system_attrs["worker"] != first.system_attrs["worker"]


def test_a_python_hang_is_stopped_by_the_alarm_and_the_worker_goes_on(journal_lab):
    outcome = faults.python_hang(journal_lab)
    assert outcome.problems() == []
    hung = outcome.final(0)
    assert hung.user_attrs["error"].startswith("TrialTimeout: trial timed out after 1 s")
    assert len(outcome.attempts()[0]) == 1, "a hang is not retried"
    assert len(_workers(outcome.trials)) == 1, "the same worker ran the trials after the hang"


def test_a_native_hang_is_stopped_by_killing_its_boxed_child_and_the_worker_goes_on(journal_lab):
    outcome = faults.native_hang(journal_lab)
    assert outcome.problems() == []
    hung = outcome.final(0)
    assert hung.user_attrs["error"] == (
        "TrialTimeout: trial timed out after 1 s; its process did not stop and was killed"
    )
    assert len(outcome.attempts()[0]) == 1, "a hang is not retried"
    assert len(_workers(outcome.trials)) == 1, "the same worker ran the trials after the hang"


def test_a_trial_exhausting_memory_fails_alone(journal_lab):
    outcome = faults.out_of_memory(journal_lab)
    assert outcome.problems() == []
    assert outcome.final(0).user_attrs["error"] == "memory limit 256 MB exceeded"
    assert len(_workers(outcome.trials)) == 1, "the worker survived its trial's MemoryError"


def test_a_hostile_trial_under_bubblewrap_reads_no_key_writes_nothing_outside_and_connects_nowhere(
    journal_lab,
):
    if sandbox.find_bwrap()[0] is None:
        unavailable(f"bubblewrap does not run here ({sandbox.find_bwrap()[1]}); apt-get install bubblewrap")
    outcome = faults.hostile_code(journal_lab)
    assert outcome.problems() == [], outcome.final(0).user_attrs.get("error")
    assert outcome.notes["markers_outside"] == 0


def test_trials_that_crash_the_interpreter_fail_only_themselves(journal_lab):
    outcome = faults.interpreter_crash(journal_lab)
    assert outcome.problems() == []
    for seed, signal_name in ((0, "SIGABRT"), (1, "SIGSEGV")):
        tries = outcome.attempts()[seed]
        assert len(tries) == 1, "a crash is the trial's own: its worker records it and is not lost"
        assert tries[0].user_attrs["error"] == f"trial process died (killed by {signal_name})"
    assert outcome.final(2).state == outcome.final(3).state == TrialState.COMPLETE
    assert len(_workers(outcome.trials)) <= 2, "no worker was replaced"


def test_a_database_server_restarted_mid_study_is_waited_for(tmp_path, private_postgres):
    outcome = faults.storage_restart(Lab(tmp_path, private_postgres.url), private_postgres)
    assert outcome.notes["complete_when_stopped"] < 40, "the server must go down mid-study"
    assert outcome.problems() == []
    assert outcome.finished == 40 and len(outcome.trials) >= 40
    failed = {t.user_attrs.get("error") for t in outcome.trials if t.state == TrialState.FAIL}
    # no worker died of the outage; the one failure allowed is a ticket whose claim was lost with the connection
    assert failed <= {"taken by a worker that never started it"}
