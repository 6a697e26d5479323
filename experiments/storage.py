"""Optuna storages: a journal file by default, SQLite or PostgreSQL by URL; checked before a run starts.

One rule for all of them: a trial whose worker died is failed and retried, never left RUNNING. RDB storages get
that from Optuna's heartbeats (`retry` is their stale-trial callback); journal files from the coordinator, which
knows its workers' process ids and calls the same `retry`.

A database server that restarts or drops connections mid-study is ridden out: every RDB call is retried with
back-off for up to RECONNECT_S seconds before the worker or coordinator gives up with one clear error.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.trial import FrozenTrial, TrialState

JOURNAL_FILE = "study.journal"
HEARTBEAT_S = 5
GRACE_S = 20
MAX_RETRY = 2
RECONNECT_S = 60.0
RDB_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://", "mysql")
# OperationalErrors that no amount of waiting fixes: the server answered, and said no.
PERMANENT = ("authentication failed", "does not exist", "no password supplied", "permission denied")


class StorageUnavailable(RuntimeError):
    pass


def is_rdb(url: str) -> bool:
    return "://" in url


def redact(url: str) -> str:
    """A storage URL with any password removed, safe for reports, logs and study attributes: the one in the
    user part (up to the last @ before the path, as SQLAlchemy reads it) and a `password=` query parameter."""
    url = re.sub(r"(://[^:/@]+):[^/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Re-enqueue a trial whose worker died, as a fresh ticket with the same values (bounded retries).

    Only the ticket and the fixed values travel: the dead worker's own attributes (its host:pid, its error)
    stay with the failed trial, so the retry is never mistaken for the dead worker's trial.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        return
    fixed = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={"ticket": trial.user_attrs.get("ticket", {})},
            system_attrs={"fixed_params": fixed, "retry_history": history, "failed_trial": trial.number},
        )
    )


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def transient(exc: BaseException) -> bool:
    """A refused or dropped connection (server restarting, network blip), not a wrong password or bad query."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sqlalchemy.exc.PendingRollbackError):  # a transaction whose connection was dropped
        return True
    if not isinstance(cause, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return False
    return not any(s in str(cause).lower() for s in PERMANENT)


def patiently(
    call: Callable[[], Any], url: str, wait_s: float, reset: Callable[[], None] | None = None
) -> Any:
    """Call, retrying transient storage errors with back-off for up to wait_s seconds; `reset` runs before
    each retry, to drop state the failure may have left broken."""
    deadline, delay = time.monotonic() + wait_s, 0.1
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            if reset is not None:
                reset()
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f" (retried for {wait_s:.0f} s)" if wait_s > 0 else ""
                raise StorageUnavailable(
                    f"storage {redact(url)} unreachable{waited}: {_reason(exc)}"
                ) from exc
            time.sleep(min(delay, left))
            delay = min(2 * delay, 2.0)


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDBStorage whose every call rides out a restarting server (see `patiently`).

    Before a retry the thread's session is thrown away: a connection dropped mid-transaction can leave it
    refusing every later statement ("Can't reconnect until invalid transaction is rolled back").
    """

    reconnect_s: float = RECONNECT_S


def _patient(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return patiently(
            lambda: method(self, *args, **kwargs), self.url, self.reconnect_s, self.remove_session
        )

    return call


def _opens_a_session(member: object) -> bool:
    """RDBStorage's methods that run in a session of their own, so a retry starts clean. The others either
    delegate to these or work inside someone else's session, where a retry (which drops the thread's session)
    would pull the session from under its owner."""
    return inspect.isfunction(member) and "_create_scoped_session(" in inspect.getsource(member)


for _name, _member in list(vars(RDBStorage).items()):
    if _opens_a_session(_member):
        setattr(ResilientRDBStorage, _name, _patient(_member))


class FlockLock(BaseJournalFileLock):
    """The journal's write lock as an flock, which the kernel drops when its holder dies: a worker killed
    while appending never leaves the journal locked (Optuna's lock file waits out a 30 s grace period)."""

    def __init__(self, path: str) -> None:
        self._path = path + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Heartbeats and stale-trial callbacks are marked experimental in Optuna; that is not news to a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str, wait_s: float = 0) -> BaseStorage:
    """Open (and create) the storage at `url`: a journal file path, or an SQLAlchemy URL.

    wait_s > 0 waits that long for a database server that is not up yet (a worker started during a restart);
    0 fails at once, for the checks before a run, where a wrong URL should be said right away.
    """
    if not is_rdb(url):
        return _open_journal(Path(url))
    if not url.startswith(RDB_SCHEMES):
        raise StorageUnavailable(
            f"unsupported storage URL {redact(url)!r}: use a journal file path, sqlite:///file.db "
            "or postgresql://user@host/db"
        )
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 5}

    def connect() -> RDBStorage:
        with _quiet():
            return ResilientRDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry,
            )

    try:
        return patiently(connect, url, wait_s)
    except StorageUnavailable:
        raise
    except Exception as exc:
        raise StorageUnavailable(f"cannot open storage {redact(url)}: {_reason(exc)}") from exc


def _open_journal(path: Path) -> JournalStorage:
    if not path.parent.is_dir():
        raise StorageUnavailable(f"journal storage {path}: folder {path.parent} does not exist")
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=FlockLock(str(path))))
    except Exception as exc:  # Optuna replays the whole journal here; any failure means it cannot be read
        raise StorageUnavailable(
            f"journal storage {path} cannot be read ({type(exc).__name__}: {_reason(exc)}); "
            "restore it from a backup or start a new run"
        ) from exc


def is_shared(storage: BaseStorage) -> bool:
    """An RDB storage (which many hosts may share, and whose workers send heartbeats), also when Optuna has
    wrapped it in its trial cache, as every loaded study's storage is."""
    return isinstance(storage, RDBStorage) or isinstance(getattr(storage, "_backend", None), RDBStorage)


def fail_stale(study: optuna.Study) -> None:
    """Fail (and retry) RDB trials whose worker stopped sending heartbeats, wherever it ran."""
    with _quiet():
        optuna.storages.fail_stale_trials(study)


def check(url: str) -> None:
    """Fail fast, before any run folder exists, when the storage cannot be reached or read.

    A journal file that does not exist yet is not created here: a refused command leaves nothing behind.
    """
    if is_rdb(url):
        storage = open_storage(url)
        if isinstance(storage, RDBStorage):
            storage.engine.dispose()
    elif Path(url).exists() or not Path(url).parent.is_dir():
        open_storage(url)


def study_names(storage: BaseStorage) -> list[str]:
    """The storage's study names, without loading summaries (which costs seconds on a shared database)."""
    return optuna.study.get_all_study_names(storage)
