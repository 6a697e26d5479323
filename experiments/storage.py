"""Optuna storages: a journal file by default, SQLite or PostgreSQL by URL; checked before a run starts.

One rule for all of them: a trial whose worker died is failed and retried, never left RUNNING. RDB storages get
that from Optuna's heartbeats; journal files from the coordinator, which knows its workers' process ids.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

JOURNAL_FILE = "study.journal"
HEARTBEAT_S = 5
GRACE_S = 20
MAX_RETRY = 2


class StorageUnavailable(RuntimeError):
    pass


def is_rdb(url: str) -> bool:
    return "://" in url


def redact(url: str) -> str:
    """A storage URL with any password removed, safe for reports, logs and study attributes."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def retry_callback() -> RetryFailedTrialCallback:
    return RetryFailedTrialCallback(max_retry=MAX_RETRY)


def open_storage(url: str) -> BaseStorage:
    """Open (and create) the storage at `url`: a journal file path, or an SQLAlchemy URL."""
    if not is_rdb(url):
        path = Path(url)
        if not path.parent.is_dir():
            raise StorageUnavailable(f"journal storage {url}: folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql")):
        raise StorageUnavailable(
            f"unsupported storage URL {redact(url)!r}: use a journal file path, sqlite:///file.db "
            "or postgresql://user@host/db"
        )
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 5}
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            failed_trial_callback=retry_callback(),
        )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageUnavailable(f"cannot open storage {redact(url)}: {reason}") from exc


def check(url: str) -> None:
    """Fail fast, before any run folder exists, when the storage cannot be reached."""
    if is_rdb(url):
        storage = open_storage(url)
        if isinstance(storage, RDBStorage):
            storage.engine.dispose()


def study_names(url: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(open_storage(url), include_best_trial=False)]
