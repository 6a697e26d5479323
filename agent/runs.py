"""Run folders: one per run under the reports directory, holding every artifact the run produced.

A run folder is written stage by stage (run.json says which stage finished last), so an interrupted run can be
resumed and a reviewer can trace every number back to the storage inside it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from agent.schemas import RunInfo

RUN_FILE = "run.json"
LOG_FILE = "run.log"
# How often a driving process refreshes run.json's heartbeat, and how old one may be before a run driven from
# another machine counts as interrupted (on this machine the process itself is asked).
HEARTBEAT = timedelta(seconds=30)
STALE = timedelta(minutes=10)
LIVE = ("created", "running")


class RunNotFound(LookupError):
    pass


class CorruptRun(ValueError):
    pass


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def new_run_id(label: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return f"{stamp}-{_slug(label)}"


def create(reports_dir: Path, info: RunInfo) -> Path:
    folder = reports_dir / info.run_id
    folder.mkdir(parents=True, exist_ok=False)
    save(folder, info)
    return folder


def write_atomic(path: Path, text: str) -> None:
    """Write a run artifact whole or not at all: a kill mid-write never leaves it half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save(folder: Path, info: RunInfo) -> None:
    write_atomic(folder / RUN_FILE, info.model_dump_json(indent=2))


def load(folder: Path) -> RunInfo:
    path = folder / RUN_FILE
    if not path.is_file():
        raise RunNotFound(f"{folder} is not a run folder (no {RUN_FILE})")
    try:
        return RunInfo.model_validate_json(path.read_text())
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRun(f"{path} is corrupted ({type(exc).__name__}); the run cannot be read") from exc


def resolve(reports_dir: Path, run: str) -> Path:
    """A run given as a folder path, a run id, or a unique prefix of one."""
    direct = Path(run)
    if (direct / RUN_FILE).is_file():
        return direct
    if (reports_dir / run / RUN_FILE).is_file():
        return reports_dir / run
    matches = [p for p in all_folders(reports_dir) if p.name.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RunNotFound(f"{run!r} matches {len(matches)} runs; give more of the id")
    raise RunNotFound(f"no run {run!r} under {reports_dir} (see `research-loop list`)")


def all_folders(reports_dir: Path) -> list[Path]:
    if not reports_dir.is_dir():
        return []
    return sorted(p for p in reports_dir.iterdir() if (p / RUN_FILE).is_file())


def discard(folder: Path) -> None:
    """Remove a run folder that never got past its first stage, so a bad start leaves nothing behind."""
    shutil.rmtree(folder, ignore_errors=True)


def claim(info: RunInfo) -> None:
    """Mark this process as the one driving the run, so `list` and `resume` can tell if it died."""
    info.owner = f"{socket.gethostname()}:{os.getpid()}"
    info.heartbeat = datetime.now(UTC)


def beat(folder: Path, info: RunInfo) -> None:
    """Refresh the heartbeat, at most every HEARTBEAT, from the progress callbacks of a long stage."""
    now = datetime.now(UTC)
    if info.heartbeat is None or now - info.heartbeat >= HEARTBEAT:
        info.heartbeat = now
        save(folder, info)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_alive(info: RunInfo) -> bool | None:
    """Whether the process that drives a live run is still there: asked directly on this machine, judged by
    the heartbeat's age elsewhere; None when run.json names no owner (a folder from an older version)."""
    if info.owner is None:
        return None
    host, _, pid = info.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return _pid_alive(int(pid))
    return info.heartbeat is not None and datetime.now(UTC) - info.heartbeat < STALE


def shown_status(info: RunInfo) -> str:
    """The status to show: a live run whose driving process died is `interrupted`, whatever run.json says."""
    return "interrupted" if info.status in LIVE and driver_alive(info) is False else info.status


@contextmanager
def library_warnings(folder: Path) -> Iterator[Path]:
    """While a run is driven, the libraries' warnings (Optuna's UserWarning on too few trials for importances,
    its log messages) go to the run folder's run.log: they are about the run and belong beside it, while the
    terminal keeps the tool's own lines."""
    path = folder / LOG_FILE
    optuna_log = logging.getLogger("optuna")
    with path.open("a") as log, warnings.catch_warnings():
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        kept, optuna_log.handlers = optuna_log.handlers, [handler]
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
        try:
            yield path
        finally:
            optuna_log.handlers = kept
