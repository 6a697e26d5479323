"""Run folders: one per run under the reports directory, holding every artifact the run produced.

A run folder is written stage by stage (run.json says which stage finished last), so an interrupted run can be
resumed and a reviewer can trace every number back to the storage inside it.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from agent.schemas import RunInfo

RUN_FILE = "run.json"


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
