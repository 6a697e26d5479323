"""Storage details the fault tests lean on: redaction, which errors are waited out, the journal's lock."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from experiments import storage as storages


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:s3cret@db:5432/optuna", "postgresql://alice:***@db:5432/optuna"),
        ("postgresql://alice:p@ss@db/optuna", "postgresql://alice:***@db/optuna"),
        (
            "postgresql://db/optuna?sslmode=require&password=s3cret",
            "postgresql://db/optuna?sslmode=require&password=***",
        ),
        ("postgresql://alice@db/optuna", "postgresql://alice@db/optuna"),
        ("/runs/x/study.journal", "/runs/x/study.journal"),
    ],
)
def test_redact_removes_every_password_and_keeps_the_rest(url, shown):
    assert storages.redact(url) == shown


def _wrapped(cause: Exception) -> StorageInternalError:
    try:
        raise StorageInternalError("An exception is raised during the commit.") from cause
    except StorageInternalError as exc:
        return exc


@pytest.mark.parametrize(
    ("message", "waited_out"),
    [
        ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', True),
        ("server closed the connection unexpectedly", True),
        ("the database system is starting up", True),
        ('password authentication failed for user "alice"', False),
        ('database "nope" does not exist', False),
    ],
)
def test_dropped_connections_are_waited_out_and_refusals_are_not(message, waited_out):
    error = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message))
    assert storages.transient(error) is waited_out
    assert storages.transient(_wrapped(error)) is waited_out
    assert not storages.transient(
        _wrapped(sqlalchemy.exc.DataError("INSERT", {}, Exception("value too long")))
    )


def test_an_unreachable_server_is_reported_in_one_line_after_the_wait():
    started = time.monotonic()
    with pytest.raises(storages.StorageUnavailable) as caught:
        storages.open_storage("postgresql://alice:s3cret@127.0.0.1:9/db", wait_s=1)
    assert 1 <= time.monotonic() - started < 10
    message = str(caught.value)
    assert "unreachable (retried for 1 s)" in message and "s3cret" not in message and "\n" not in message


def test_the_journal_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    journal = str(tmp_path / storages.JOURNAL_FILE)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from experiments.storage import FlockLock; "
         f"FlockLock({journal!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    lock = storages.FlockLock(journal)
    started = time.monotonic()
    assert lock.acquire() and time.monotonic() - started < 1
    lock.release()
